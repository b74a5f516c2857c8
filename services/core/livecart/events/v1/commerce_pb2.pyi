import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CommerceEvent(_message.Message):
    __slots__ = ("event_id", "tenant_id", "occurred_at", "order_reserved", "order_expired", "order_paid", "red_packet_created", "red_packet_grabbed", "product_pinned")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    ORDER_RESERVED_FIELD_NUMBER: _ClassVar[int]
    ORDER_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    ORDER_PAID_FIELD_NUMBER: _ClassVar[int]
    RED_PACKET_CREATED_FIELD_NUMBER: _ClassVar[int]
    RED_PACKET_GRABBED_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_PINNED_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    tenant_id: str
    occurred_at: _timestamp_pb2.Timestamp
    order_reserved: OrderReserved
    order_expired: OrderExpired
    order_paid: OrderPaid
    red_packet_created: RedPacketCreated
    red_packet_grabbed: RedPacketGrabbed
    product_pinned: ProductPinned
    def __init__(self, event_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., order_reserved: _Optional[_Union[OrderReserved, _Mapping]] = ..., order_expired: _Optional[_Union[OrderExpired, _Mapping]] = ..., order_paid: _Optional[_Union[OrderPaid, _Mapping]] = ..., red_packet_created: _Optional[_Union[RedPacketCreated, _Mapping]] = ..., red_packet_grabbed: _Optional[_Union[RedPacketGrabbed, _Mapping]] = ..., product_pinned: _Optional[_Union[ProductPinned, _Mapping]] = ...) -> None: ...

class OrderReserved(_message.Message):
    __slots__ = ("order_id", "user_id", "sku_id", "flash_sale_id", "quantity", "unit_price_minor", "currency", "expires_at")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_ID_FIELD_NUMBER: _ClassVar[int]
    FLASH_SALE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    user_id: str
    sku_id: str
    flash_sale_id: str
    quantity: int
    unit_price_minor: int
    currency: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, order_id: _Optional[str] = ..., user_id: _Optional[str] = ..., sku_id: _Optional[str] = ..., flash_sale_id: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_price_minor: _Optional[int] = ..., currency: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class OrderExpired(_message.Message):
    __slots__ = ("order_id", "user_id", "sku_id", "flash_sale_id", "quantity")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_ID_FIELD_NUMBER: _ClassVar[int]
    FLASH_SALE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    user_id: str
    sku_id: str
    flash_sale_id: str
    quantity: int
    def __init__(self, order_id: _Optional[str] = ..., user_id: _Optional[str] = ..., sku_id: _Optional[str] = ..., flash_sale_id: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

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
