import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StreamState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_STATE_UNSPECIFIED: _ClassVar[StreamState]
    STREAM_STATE_STARTED: _ClassVar[StreamState]
    STREAM_STATE_STOPPED: _ClassVar[StreamState]
    STREAM_STATE_FAILED: _ClassVar[StreamState]
STREAM_STATE_UNSPECIFIED: StreamState
STREAM_STATE_STARTED: StreamState
STREAM_STATE_STOPPED: StreamState
STREAM_STATE_FAILED: StreamState

class StreamLifecycle(_message.Message):
    __slots__ = ("room_id", "stream_id", "edge", "state", "occurred_at", "reason", "tenant_id", "publisher")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    EDGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    stream_id: str
    edge: str
    state: StreamState
    occurred_at: _timestamp_pb2.Timestamp
    reason: str
    tenant_id: str
    publisher: str
    def __init__(self, room_id: _Optional[str] = ..., stream_id: _Optional[str] = ..., edge: _Optional[str] = ..., state: _Optional[_Union[StreamState, str]] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., tenant_id: _Optional[str] = ..., publisher: _Optional[str] = ...) -> None: ...
