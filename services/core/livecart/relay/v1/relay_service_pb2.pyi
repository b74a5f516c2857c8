from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PipeStream(_message.Message):
    __slots__ = ("kind", "payload_type", "mime_type", "clock_rate", "channels", "fmtp")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_TYPE_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    CLOCK_RATE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    FMTP_FIELD_NUMBER: _ClassVar[int]
    kind: str
    payload_type: int
    mime_type: str
    clock_rate: int
    channels: int
    fmtp: str
    def __init__(self, kind: _Optional[str] = ..., payload_type: _Optional[int] = ..., mime_type: _Optional[str] = ..., clock_rate: _Optional[int] = ..., channels: _Optional[int] = ..., fmtp: _Optional[str] = ...) -> None: ...

class OpenPipeRequest(_message.Message):
    __slots__ = ("room_id", "stream_id", "streams", "takeover", "ingest_time_extension_id")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    TAKEOVER_FIELD_NUMBER: _ClassVar[int]
    INGEST_TIME_EXTENSION_ID_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    stream_id: str
    streams: _containers.RepeatedCompositeFieldContainer[PipeStream]
    takeover: bool
    ingest_time_extension_id: int
    def __init__(self, room_id: _Optional[str] = ..., stream_id: _Optional[str] = ..., streams: _Optional[_Iterable[_Union[PipeStream, _Mapping]]] = ..., takeover: _Optional[bool] = ..., ingest_time_extension_id: _Optional[int] = ...) -> None: ...

class OpenPipeResponse(_message.Message):
    __slots__ = ("pipe_id", "host", "port")
    PIPE_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    pipe_id: str
    host: str
    port: int
    def __init__(self, pipe_id: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class ClosePipeRequest(_message.Message):
    __slots__ = ("room_id", "pipe_id", "ended")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    PIPE_ID_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    pipe_id: str
    ended: bool
    def __init__(self, room_id: _Optional[str] = ..., pipe_id: _Optional[str] = ..., ended: _Optional[bool] = ...) -> None: ...

class ClosePipeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
