"""The relay's own Prometheus metrics (the runtime's HTTP/gRPC ones come too)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROOMS = Gauge("livecart_relay_rooms", "Rooms this relay process forwards")
VIEWERS = Gauge("livecart_relay_viewers", "WHEP viewers connected to this relay process")
PIPES = Gauge("livecart_relay_pipes", "Live ingest pipes into this relay process")
PIPE_PACKETS = Counter("livecart_relay_pipe_packets_total", "RTP packets received on pipes")
PIPE_DROPPED = Counter(
    "livecart_relay_pipe_dropped_total", "Datagrams on pipe ports that were not usable RTP/RTCP"
)
PLATFORM_LATENCY = Histogram(
    "livecart_relay_platform_latency_seconds",
    "From a video frame's last packet entering ingest to leaving the relay toward its last "
    "subscriber",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0),
)
VIEWER_CLOSES = Counter(
    "livecart_relay_viewer_closes_total",
    "Viewers the relay closed, by reason",
    ["reason"],
)
KEYFRAME_WAITS = Counter(
    "livecart_relay_viewer_keyframe_waits_total",
    "New viewers that found no cached keyframe to start on and waited for a new one",
)

COLLECTORS = (
    ROOMS,
    VIEWERS,
    PIPES,
    PIPE_PACKETS,
    PIPE_DROPPED,
    PLATFORM_LATENCY,
    VIEWER_CLOSES,
    KEYFRAME_WAITS,
)
