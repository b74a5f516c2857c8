from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class PostSystemEventRequest(_message.Message):
    __slots__ = ("room_id", "kind", "data_json")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    kind: str
    data_json: str
    def __init__(self, room_id: _Optional[str] = ..., kind: _Optional[str] = ..., data_json: _Optional[str] = ...) -> None: ...

class PostSystemEventResponse(_message.Message):
    __slots__ = ("event_id",)
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    def __init__(self, event_id: _Optional[str] = ...) -> None: ...

class GetHistoryRequest(_message.Message):
    __slots__ = ("room_id", "after_seq", "limit")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    after_seq: int
    limit: int
    def __init__(self, room_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class GetHistoryResponse(_message.Message):
    __slots__ = ("events_json", "last_seq")
    EVENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    events_json: _containers.RepeatedScalarFieldContainer[str]
    last_seq: int
    def __init__(self, events_json: _Optional[_Iterable[str]] = ..., last_seq: _Optional[int] = ...) -> None: ...
