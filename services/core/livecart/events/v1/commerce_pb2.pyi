import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CommerceEvent(_message.Message):
    __slots__ = ("event_id", "tenant_id", "occurred_at", "order_reserved", "order_expired", "order_paid", "red_packet_created", "red_packet_grabbed", "product_pinned", "order_cancelled", "order_refunded", "lottery_opened", "lottery_drawn")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    ORDER_RESERVED_FIELD_NUMBER: _ClassVar[int]
    ORDER_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    ORDER_PAID_FIELD_NUMBER: _ClassVar[int]
    RED_PACKET_CREATED_FIELD_NUMBER: _ClassVar[int]
    RED_PACKET_GRABBED_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_PINNED_FIELD_NUMBER: _ClassVar[int]
    ORDER_CANCELLED_FIELD_NUMBER: _ClassVar[int]
    ORDER_REFUNDED_FIELD_NUMBER: _ClassVar[int]
    LOTTERY_OPENED_FIELD_NUMBER: _ClassVar[int]
    LOTTERY_DRAWN_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    tenant_id: str
    occurred_at: _timestamp_pb2.Timestamp
    order_reserved: OrderReserved
    order_expired: OrderExpired
    order_paid: OrderPaid
    red_packet_created: RedPacketCreated
    red_packet_grabbed: RedPacketGrabbed
    product_pinned: ProductPinned
    order_cancelled: OrderCancelled
    order_refunded: OrderRefunded
    lottery_opened: LotteryOpened
    lottery_drawn: LotteryDrawn
    def __init__(self, event_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., order_reserved: _Optional[_Union[OrderReserved, _Mapping]] = ..., order_expired: _Optional[_Union[OrderExpired, _Mapping]] = ..., order_paid: _Optional[_Union[OrderPaid, _Mapping]] = ..., red_packet_created: _Optional[_Union[RedPacketCreated, _Mapping]] = ..., red_packet_grabbed: _Optional[_Union[RedPacketGrabbed, _Mapping]] = ..., product_pinned: _Optional[_Union[ProductPinned, _Mapping]] = ..., order_cancelled: _Optional[_Union[OrderCancelled, _Mapping]] = ..., order_refunded: _Optional[_Union[OrderRefunded, _Mapping]] = ..., lottery_opened: _Optional[_Union[LotteryOpened, _Mapping]] = ..., lottery_drawn: _Optional[_Union[LotteryDrawn, _Mapping]] = ...) -> None: ...

class OrderReserved(_message.Message):
    __slots__ = ("order_id", "user_id", "sku_id", "flash_sale_id", "quantity", "unit_price_minor", "currency", "expires_at", "lines", "total_minor")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_ID_FIELD_NUMBER: _ClassVar[int]
    FLASH_SALE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MINOR_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    user_id: str
    sku_id: str
    flash_sale_id: str
    quantity: int
    unit_price_minor: int
    currency: str
    expires_at: _timestamp_pb2.Timestamp
    lines: _containers.RepeatedCompositeFieldContainer[OrderLine]
    total_minor: int
    def __init__(self, order_id: _Optional[str] = ..., user_id: _Optional[str] = ..., sku_id: _Optional[str] = ..., flash_sale_id: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_price_minor: _Optional[int] = ..., currency: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lines: _Optional[_Iterable[_Union[OrderLine, _Mapping]]] = ..., total_minor: _Optional[int] = ...) -> None: ...

class OrderLine(_message.Message):
    __slots__ = ("sku_id", "quantity", "unit_price_minor")
    SKU_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    sku_id: str
    quantity: int
    unit_price_minor: int
    def __init__(self, sku_id: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_price_minor: _Optional[int] = ...) -> None: ...

class OrderExpired(_message.Message):
    __slots__ = ("order_id", "user_id", "sku_id", "flash_sale_id", "quantity", "lines")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_ID_FIELD_NUMBER: _ClassVar[int]
    FLASH_SALE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    user_id: str
    sku_id: str
    flash_sale_id: str
    quantity: int
    lines: _containers.RepeatedCompositeFieldContainer[OrderLine]
    def __init__(self, order_id: _Optional[str] = ..., user_id: _Optional[str] = ..., sku_id: _Optional[str] = ..., flash_sale_id: _Optional[str] = ..., quantity: _Optional[int] = ..., lines: _Optional[_Iterable[_Union[OrderLine, _Mapping]]] = ...) -> None: ...

class OrderCancelled(_message.Message):
    __slots__ = ("order_id", "user_id", "cancelled_by", "lines", "flash_sale_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_BY_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    FLASH_SALE_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    user_id: str
    cancelled_by: str
    lines: _containers.RepeatedCompositeFieldContainer[OrderLine]
    flash_sale_id: str
    def __init__(self, order_id: _Optional[str] = ..., user_id: _Optional[str] = ..., cancelled_by: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[OrderLine, _Mapping]]] = ..., flash_sale_id: _Optional[str] = ...) -> None: ...

class OrderRefunded(_message.Message):
    __slots__ = ("order_id", "user_id", "amount_minor", "currency", "provider_reference", "restocked")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    RESTOCKED_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    user_id: str
    amount_minor: int
    currency: str
    provider_reference: str
    restocked: bool
    def __init__(self, order_id: _Optional[str] = ..., user_id: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., provider_reference: _Optional[str] = ..., restocked: _Optional[bool] = ...) -> None: ...

class OrderPaid(_message.Message):
    __slots__ = ("order_id", "user_id", "amount_minor", "currency", "provider_reference")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    user_id: str
    amount_minor: int
    currency: str
    provider_reference: str
    def __init__(self, order_id: _Optional[str] = ..., user_id: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., provider_reference: _Optional[str] = ...) -> None: ...

class RedPacketCreated(_message.Message):
    __slots__ = ("red_packet_id", "room_id", "total_minor", "currency", "shares")
    RED_PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    red_packet_id: str
    room_id: str
    total_minor: int
    currency: str
    shares: int
    def __init__(self, red_packet_id: _Optional[str] = ..., room_id: _Optional[str] = ..., total_minor: _Optional[int] = ..., currency: _Optional[str] = ..., shares: _Optional[int] = ...) -> None: ...

class RedPacketGrabbed(_message.Message):
    __slots__ = ("red_packet_id", "room_id", "user_id", "amount_minor", "currency", "shares_left")
    RED_PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    SHARES_LEFT_FIELD_NUMBER: _ClassVar[int]
    red_packet_id: str
    room_id: str
    user_id: str
    amount_minor: int
    currency: str
    shares_left: int
    def __init__(self, red_packet_id: _Optional[str] = ..., room_id: _Optional[str] = ..., user_id: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., shares_left: _Optional[int] = ...) -> None: ...

class ProductPinned(_message.Message):
    __slots__ = ("room_id", "product_id", "title", "price_from_minor", "currency")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FROM_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    product_id: str
    title: str
    price_from_minor: int
    currency: str
    def __init__(self, room_id: _Optional[str] = ..., product_id: _Optional[str] = ..., title: _Optional[str] = ..., price_from_minor: _Optional[int] = ..., currency: _Optional[str] = ...) -> None: ...

class LotteryOpened(_message.Message):
    __slots__ = ("lottery_id", "room_id", "keyword", "prize_sku_id", "winners", "opens_at", "closes_at", "seed_sha256")
    LOTTERY_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    KEYWORD_FIELD_NUMBER: _ClassVar[int]
    PRIZE_SKU_ID_FIELD_NUMBER: _ClassVar[int]
    WINNERS_FIELD_NUMBER: _ClassVar[int]
    OPENS_AT_FIELD_NUMBER: _ClassVar[int]
    CLOSES_AT_FIELD_NUMBER: _ClassVar[int]
    SEED_SHA256_FIELD_NUMBER: _ClassVar[int]
    lottery_id: str
    room_id: str
    keyword: str
    prize_sku_id: str
    winners: int
    opens_at: _timestamp_pb2.Timestamp
    closes_at: _timestamp_pb2.Timestamp
    seed_sha256: str
    def __init__(self, lottery_id: _Optional[str] = ..., room_id: _Optional[str] = ..., keyword: _Optional[str] = ..., prize_sku_id: _Optional[str] = ..., winners: _Optional[int] = ..., opens_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., closes_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., seed_sha256: _Optional[str] = ...) -> None: ...

class LotteryDrawn(_message.Message):
    __slots__ = ("lottery_id", "room_id", "seed", "entrants_sha256", "entrants", "winner_user_ids", "prize_order_ids", "algorithm")
    LOTTERY_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ENTRANTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    ENTRANTS_FIELD_NUMBER: _ClassVar[int]
    WINNER_USER_IDS_FIELD_NUMBER: _ClassVar[int]
    PRIZE_ORDER_IDS_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    lottery_id: str
    room_id: str
    seed: str
    entrants_sha256: str
    entrants: int
    winner_user_ids: _containers.RepeatedScalarFieldContainer[str]
    prize_order_ids: _containers.RepeatedScalarFieldContainer[str]
    algorithm: str
    def __init__(self, lottery_id: _Optional[str] = ..., room_id: _Optional[str] = ..., seed: _Optional[str] = ..., entrants_sha256: _Optional[str] = ..., entrants: _Optional[int] = ..., winner_user_ids: _Optional[_Iterable[str]] = ..., prize_order_ids: _Optional[_Iterable[str]] = ..., algorithm: _Optional[str] = ...) -> None: ...
