import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChatEvent(_message.Message):
    __slots__ = ("event_id", "tenant_id", "room_id", "sent_at", "comment", "likes", "system", "moderation")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    LIKES_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    MODERATION_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    tenant_id: str
    room_id: str
    sent_at: _timestamp_pb2.Timestamp
    comment: Comment
    likes: Likes
    system: SystemEvent
    moderation: Moderation
    def __init__(self, event_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., room_id: _Optional[str] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., comment: _Optional[_Union[Comment, _Mapping]] = ..., likes: _Optional[_Union[Likes, _Mapping]] = ..., system: _Optional[_Union[SystemEvent, _Mapping]] = ..., moderation: _Optional[_Union[Moderation, _Mapping]] = ...) -> None: ...

class Likes(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class SystemEvent(_message.Message):
    __slots__ = ("kind", "data_json", "source")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    data_json: str
    source: str
    def __init__(self, kind: _Optional[str] = ..., data_json: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class Moderation(_message.Message):
    __slots__ = ("action", "by_user_id", "target_user_id", "duration_s", "interval_s", "pinned_seq", "pinned")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    BY_USER_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_USER_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    PINNED_SEQ_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    action: str
    by_user_id: str
    target_user_id: str
    duration_s: int
    interval_s: int
    pinned_seq: int
    pinned: Comment
    def __init__(self, action: _Optional[str] = ..., by_user_id: _Optional[str] = ..., target_user_id: _Optional[str] = ..., duration_s: _Optional[int] = ..., interval_s: _Optional[int] = ..., pinned_seq: _Optional[int] = ..., pinned: _Optional[_Union[Comment, _Mapping]] = ...) -> None: ...

class Comment(_message.Message):
    __slots__ = ("user_id", "display_name", "text")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    display_name: str
    text: str
    def __init__(self, user_id: _Optional[str] = ..., display_name: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...
