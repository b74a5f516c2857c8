import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChatEvent(_message.Message):
    __slots__ = ("event_id", "tenant_id", "room_id", "sent_at", "comment")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    tenant_id: str
    room_id: str
    sent_at: _timestamp_pb2.Timestamp
    comment: Comment
    def __init__(self, event_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., room_id: _Optional[str] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., comment: _Optional[_Union[Comment, _Mapping]] = ...) -> None: ...

class Comment(_message.Message):
    __slots__ = ("user_id", "display_name", "text")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    display_name: str
    text: str
    def __init__(self, user_id: _Optional[str] = ..., display_name: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...
