"""`livecart.relay.v1.RelayService`: ingest opens and closes a room's RTP pipe here.

The caller's token (scope ``publish``; ``publish:takeover`` to replace another publisher)
decides the tenant and may name the room. Every field is checked before a port opens:
bad input answers INVALID_ARGUMENT with the reason.
"""

from __future__ import annotations

from typing import Any

from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from livecart.relay.v1 import relay_service_pb2 as pb
from livecart.relay.v1 import relay_service_pb2_grpc as pb_grpc
from livecart_core.auth import TokenAuthority, grpc_principal
from livecart_core.errors import InvalidArgument
from livecart_media.webrtc import SUPPORTED_MIMES, ForwardedStream, Kind
from livecart_media.whipwhep import room_key
from livecart_relay.rooms import MediaRooms

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RelayService"].full_name
PUBLISH, TAKEOVER = "publish", "publish:takeover"


class RelayServicer(pb_grpc.RelayServiceServicer):
    def __init__(self, rooms: MediaRooms, tokens: TokenAuthority) -> None:
        self.rooms = rooms
        self.tokens = tokens

    async def OpenPipe(self, request: pb.OpenPipeRequest, context: Any) -> pb.OpenPipeResponse:
        caller = grpc_principal(self.tokens, context.invocation_metadata(), PUBLISH)
        key = room_key(caller, request.room_id)
        if not 1 <= len(request.stream_id) <= 100:
            raise InvalidArgument("stream_id must be 1 to 100 characters")
        if request.takeover:
            caller.require(TAKEOVER)
        if not 0 <= request.ingest_time_extension_id <= 14:
            raise InvalidArgument("ingest_time_extension_id must be 0 (none) or 1..14")
        pipe_id, (host, port) = await self.rooms.open_pipe(
            key,
            stream_id=request.stream_id,
            subject=caller.subject,
            streams=_streams(request.streams),
            takeover=request.takeover,
            ingest_time_extension_id=request.ingest_time_extension_id,
        )
        return pb.OpenPipeResponse(pipe_id=pipe_id, host=host, port=port)

    async def ClosePipe(self, request: pb.ClosePipeRequest, context: Any) -> pb.ClosePipeResponse:
        caller = grpc_principal(self.tokens, context.invocation_metadata(), PUBLISH)
        key = room_key(caller, request.room_id)
        if not request.pipe_id:
            raise InvalidArgument("pipe_id is required")
        await self.rooms.close_pipe(key, request.pipe_id, ended=request.ended)
        return pb.ClosePipeResponse()


def _streams(declared: Any) -> dict[int, ForwardedStream]:
    if not 1 <= len(declared) <= 2:
        raise InvalidArgument("a pipe carries one audio and/or one video stream")
    streams: dict[int, ForwardedStream] = {}
    kinds: set[str] = set()
    for stream in declared:
        kind, mime = stream.kind, stream.mime_type.lower()
        if kind not in ("audio", "video") or kind in kinds:
            raise InvalidArgument("each stream's kind is 'audio' or 'video', once each")
        if mime not in SUPPORTED_MIMES or not mime.startswith(kind):
            raise InvalidArgument(
                f"{kind} codec {stream.mime_type!r} is not one of {', '.join(SUPPORTED_MIMES)}"
            )
        if not 0 <= stream.payload_type <= 127 or 64 <= stream.payload_type <= 95:
            # 64..95 would read as RTCP on a muxed port (RFC 5761 §4).
            raise InvalidArgument("payload_type must be 0..63 or 96..127")
        if stream.payload_type in streams:
            raise InvalidArgument("each stream needs its own payload_type")
        if not 1000 <= stream.clock_rate <= 192000:
            raise InvalidArgument("clock_rate must be 1000..192000 Hz")
        codec = RTCRtpCodecParameters(
            mimeType=stream.mime_type,
            clockRate=stream.clock_rate,
            channels=stream.channels or None,
            payloadType=stream.payload_type,
            parameters=_fmtp(stream.fmtp),
        )
        k: Kind = "video" if kind == "video" else "audio"
        streams[stream.payload_type] = ForwardedStream(k, codec)
        kinds.add(kind)
    return streams


def _fmtp(text: str) -> dict[str, str | int | None]:
    if len(text) > 1000:
        raise InvalidArgument("fmtp is at most 1000 characters")
    parameters: dict[str, str | int | None] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, sep, value = item.partition("=")
        parameters[name.strip()] = value.strip() if sep else None
    return parameters
