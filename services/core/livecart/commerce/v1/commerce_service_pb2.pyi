import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
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
    __slots__ = ("order_id", "unit_price_minor", "currency", "expires_at", "buyer_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    BUYER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    unit_price_minor: int
    currency: str
    expires_at: _timestamp_pb2.Timestamp
    buyer_id: str
    def __init__(self, order_id: _Optional[str] = ..., unit_price_minor: _Optional[int] = ..., currency: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., buyer_id: _Optional[str] = ...) -> None: ...

class ReserveFlashSaleBatchRequest(_message.Message):
    __slots__ = ("reservations",)
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    reservations: _containers.RepeatedCompositeFieldContainer[BuyerReservation]
    def __init__(self, reservations: _Optional[_Iterable[_Union[BuyerReservation, _Mapping]]] = ...) -> None: ...

class BuyerReservation(_message.Message):
    __slots__ = ("token", "request")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    token: str
    request: ReserveFlashSaleRequest
    def __init__(self, token: _Optional[str] = ..., request: _Optional[_Union[ReserveFlashSaleRequest, _Mapping]] = ...) -> None: ...

class ReserveFlashSaleBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ReservationResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ReservationResult, _Mapping]]] = ...) -> None: ...

class ReservationResult(_message.Message):
    __slots__ = ("order", "refusal")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    order: ReserveFlashSaleResponse
    refusal: Refusal
    def __init__(self, order: _Optional[_Union[ReserveFlashSaleResponse, _Mapping]] = ..., refusal: _Optional[_Union[Refusal, _Mapping]] = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ("code", "message", "http_status")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    http_status: int
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., http_status: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("id", "sku_id", "sale_price_minor", "currency", "quantity", "remaining", "per_user_limit", "starts_at", "ends_at", "payment_timeout_s")
    ID_FIELD_NUMBER: _ClassVar[int]
    SKU_ID_FIELD_NUMBER: _ClassVar[int]
    SALE_PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    PER_USER_LIMIT_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    id: str
    sku_id: str
    sale_price_minor: int
    currency: str
    quantity: int
    remaining: int
    per_user_limit: int
    starts_at: _timestamp_pb2.Timestamp
    ends_at: _timestamp_pb2.Timestamp
    payment_timeout_s: int
    def __init__(self, id: _Optional[str] = ..., sku_id: _Optional[str] = ..., sale_price_minor: _Optional[int] = ..., currency: _Optional[str] = ..., quantity: _Optional[int] = ..., remaining: _Optional[int] = ..., per_user_limit: _Optional[int] = ..., starts_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ends_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payment_timeout_s: _Optional[int] = ...) -> None: ...

class GetProductRequest(_message.Message):
    __slots__ = ("product_id",)
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    def __init__(self, product_id: _Optional[str] = ...) -> None: ...

class GetProductResponse(_message.Message):
    __slots__ = ("product",)
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    product: Product
    def __init__(self, product: _Optional[_Union[Product, _Mapping]] = ...) -> None: ...

class GetPinnedProductRequest(_message.Message):
    __slots__ = ("room_id",)
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    def __init__(self, room_id: _Optional[str] = ...) -> None: ...

class GetPinnedProductResponse(_message.Message):
    __slots__ = ("pinned", "product", "pinned_at")
    PINNED_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    PINNED_AT_FIELD_NUMBER: _ClassVar[int]
    pinned: bool
    product: Product
    pinned_at: _timestamp_pb2.Timestamp
    def __init__(self, pinned: _Optional[bool] = ..., product: _Optional[_Union[Product, _Mapping]] = ..., pinned_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Product(_message.Message):
    __slots__ = ("id", "title", "description", "images", "skus", "shipping", "returns", "faq")
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SKUS_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_FIELD_NUMBER: _ClassVar[int]
    RETURNS_FIELD_NUMBER: _ClassVar[int]
    FAQ_FIELD_NUMBER: _ClassVar[int]
    id: str
    title: str
    description: str
    images: _containers.RepeatedScalarFieldContainer[str]
    skus: _containers.RepeatedCompositeFieldContainer[Sku]
    shipping: Shipping
    returns: Returns
    faq: _containers.RepeatedCompositeFieldContainer[Faq]
    def __init__(self, id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., images: _Optional[_Iterable[str]] = ..., skus: _Optional[_Iterable[_Union[Sku, _Mapping]]] = ..., shipping: _Optional[_Union[Shipping, _Mapping]] = ..., returns: _Optional[_Union[Returns, _Mapping]] = ..., faq: _Optional[_Iterable[_Union[Faq, _Mapping]]] = ...) -> None: ...

class Sku(_message.Message):
    __slots__ = ("id", "price_minor", "currency", "stock", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    STOCK_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    price_minor: int
    currency: str
    stock: int
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., price_minor: _Optional[int] = ..., currency: _Optional[str] = ..., stock: _Optional[int] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Shipping(_message.Message):
    __slots__ = ("ships_from", "min_days", "max_days", "fee_minor")
    SHIPS_FROM_FIELD_NUMBER: _ClassVar[int]
    MIN_DAYS_FIELD_NUMBER: _ClassVar[int]
    MAX_DAYS_FIELD_NUMBER: _ClassVar[int]
    FEE_MINOR_FIELD_NUMBER: _ClassVar[int]
    ships_from: str
    min_days: int
    max_days: int
    fee_minor: int
    def __init__(self, ships_from: _Optional[str] = ..., min_days: _Optional[int] = ..., max_days: _Optional[int] = ..., fee_minor: _Optional[int] = ...) -> None: ...

class Returns(_message.Message):
    __slots__ = ("window_days", "free", "conditions")
    WINDOW_DAYS_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    window_days: int
    free: bool
    conditions: str
    def __init__(self, window_days: _Optional[int] = ..., free: _Optional[bool] = ..., conditions: _Optional[str] = ...) -> None: ...

class Faq(_message.Message):
    __slots__ = ("question", "answer")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    question: str
    answer: str
    def __init__(self, question: _Optional[str] = ..., answer: _Optional[str] = ...) -> None: ...
