"""Chat over REST and gRPC for tenants and services: a room's history, system events."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from livecart.chat.v1 import chat_service_pb2 as pb
from livecart.chat.v1 import chat_service_pb2_grpc as pb_grpc
from livecart_chat import events
from livecart_chat.history import History
from livecart_core.auth import Principal, TokenAuthority, grpc_principal, require
from livecart_core.bus import EventBus
from livecart_core.errors import InvalidArgument
from livecart_core.rules import RoomId, Seq

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ChatService"].full_name
KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_DATA = 8192


class HistoryPage(BaseModel):
    events: list[dict[str, Any]] = Field(description="as the WebSocket protocol shows them")
    last_seq: int = Field(description="pass as after_seq for the next page; 0 when empty")


def history_routes(history: History, tokens: TokenAuthority) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["chat"])
    viewer = Depends(require(tokens, "play"))

    @router.get("/rooms/{room_id}/history", summary="A room's events, oldest first (replay)")
    async def get_history(
        room_id: RoomId,
        after_seq: Annotated[Seq, Query()] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        caller: Principal = viewer,
    ) -> HistoryPage:
        rows = await history.after(caller.tenant_id, room_id, after_seq, limit)
        return HistoryPage(
            events=[json.loads(shown) for _, shown in rows], last_seq=rows[-1][0] if rows else 0
        )

    return router


class ChatServicer(pb_grpc.ChatServiceServicer):
    def __init__(self, bus: EventBus, history: History, tokens: TokenAuthority) -> None:
        self.bus = bus
        self.history = history
        self.tokens = tokens

    async def PostSystemEvent(
        self, request: pb.PostSystemEventRequest, context: Any
    ) -> pb.PostSystemEventResponse:
        room = request.room_id
        caller = grpc_principal(
            self.tokens, context.invocation_metadata(), "chat:system", room=room
        )
        if not KIND.match(request.kind):
            raise InvalidArgument("kind is lower_snake_case, 1 to 64 characters")
        if len(request.data_json.encode()) > MAX_DATA:
            raise InvalidArgument(f"data_json is at most {MAX_DATA} bytes")
        try:
            data = json.loads(request.data_json or "{}")
        except ValueError:
            raise InvalidArgument("data_json is not valid JSON") from None
        except RecursionError:
            raise InvalidArgument("data_json is nested too deeply") from None
        if not isinstance(data, dict):
            raise InvalidArgument("data_json must be a JSON object")
        event = events.system(caller.tenant_id, room, request.kind, data, caller.subject, None)
        await self.bus.publish(events.TOPIC, events.room_key(caller.tenant_id, room), event)
        return pb.PostSystemEventResponse(event_id=event.event_id)

    async def GetHistory(
        self, request: pb.GetHistoryRequest, context: Any
    ) -> pb.GetHistoryResponse:
        room = request.room_id
        caller = grpc_principal(self.tokens, context.invocation_metadata(), "play", room=room)
        if request.after_seq < 0:
            raise InvalidArgument("after_seq must be 0 or more")
        limit = request.limit or 100
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit is 1 to 1000")
        rows = await self.history.after(caller.tenant_id, room, request.after_seq, limit)
        return pb.GetHistoryResponse(
            events_json=[shown for _, shown in rows], last_seq=rows[-1][0] if rows else 0
        )
