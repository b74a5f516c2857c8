import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReserveFlashSaleRequest(_message.Message):
    __slots__ = ("flash_sale_id", "quantity", "idempotency_key")
    FLASH_SALE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    flash_sale_id: str
    quantity: int
    idempotency_key: str
    def __init__(self, flash_sale_id: _Optional[str] = ..., quantity: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ReserveFlashSaleResponse(_message.Message):
    __slots__ = ("order_id", "unit_price_minor", "currency", "expires_at")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    unit_price_minor: int
    currency: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, order_id: _Optional[str] = ..., unit_price_minor: _Optional[int] = ..., currency: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetFlashSaleRequest(_message.Message):
    __slots__ = ("flash_sale_id",)
    FLASH_SALE_ID_FIELD_NUMBER: _ClassVar[int]
    flash_sale_id: str
    def __init__(self, flash_sale_id: _Optional[str] = ...) -> None: ...

class GetFlashSaleResponse(_message.Message):
    __slots__ = ("flash_sale",)
    FLASH_SALE_FIELD_NUMBER: _ClassVar[int]
    flash_sale: FlashSale
    def __init__(self, flash_sale: _Optional[_Union[FlashSale, _Mapping]] = ...) -> None: ...

class FlashSale(_message.Message):
    __slots__ = ("id", "sku_id", "sale_price_minor", "currency", "quantity", "remaining", "per_user_limit", "starts_at", "ends_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    SKU_ID_FIELD_NUMBER: _ClassVar[int]
    SALE_PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    PER_USER_LIMIT_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    sku_id: str
    sale_price_minor: int
    currency: str
    quantity: int
    remaining: int
    per_user_limit: int
    starts_at: _timestamp_pb2.Timestamp
    ends_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., sku_id: _Optional[str] = ..., sale_price_minor: _Optional[int] = ..., currency: _Optional[str] = ..., quantity: _Optional[int] = ..., remaining: _Optional[int] = ..., per_user_limit: _Optional[int] = ..., starts_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ends_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
