"""The chat service's own Prometheus metrics (the runtime's HTTP/gRPC/bus ones come too)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

VIEWERS = Gauge("livecart_chat_viewers", "WebSocket viewers connected to this node")
ROOMS = Gauge("livecart_chat_rooms", "Rooms this node keeps history and state for")
FRAMES = Counter("livecart_chat_frames_sent_total", "Batch frames written to viewers")
MESSAGES = Counter(
    "livecart_chat_messages_total",
    "Client messages by outcome (ok or the refusal code)",
    ["outcome"],
)
DROPPED = Counter(
    "livecart_chat_comments_sampled_out_total", "Comments left out of a room's batch under load"
)
SLOW_CLOSES = Counter(
    "livecart_chat_slow_viewer_closes_total", "Viewers closed (4408) for staying behind"
)
