"""The Prometheus metrics every service shares (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "livecart_http_requests_total",
    "HTTP requests handled",
    ["service", "method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "livecart_http_request_seconds", "HTTP request duration", ["service", "method", "route"]
)
GRPC_HANDLED = Counter(
    "livecart_grpc_server_handled_total", "gRPC calls handled", ["service", "method", "code"]
)
GRPC_SECONDS = Histogram(
    "livecart_grpc_server_handling_seconds", "gRPC call duration", ["service", "method"]
)
BUS_PUBLISHED = Counter("livecart_bus_published_total", "Events published", ["backend", "topic"])
BUS_HANDLED = Counter(
    "livecart_bus_handled_total", "Events handled and committed", ["backend", "topic", "group"]
)
BUS_HANDLER_FAILURES = Counter(
    "livecart_bus_handler_failures_total",
    "Handler attempts that raised (the event is retried)",
    ["backend", "topic", "group"],
)
BUS_DEAD_LETTERS = Counter(
    "livecart_bus_dead_letters_total",
    "Events that can never be handled, published to <topic>.dead-letter and committed",
    ["backend", "topic", "group"],
)
SERVICE_READY = Gauge("livecart_service_ready", "1 when the service is ready", ["service"])
DEPENDENCY_UP = Gauge(
    "livecart_dependency_up",
    "1 when a dependency (database, bus) or background loop answers its check; 0 while degraded",
    ["service", "dependency"],
)
BACKGROUND_FAILURES = Counter(
    "livecart_background_failures_total",
    "Rounds of background work that failed and are retried",
    ["service", "task"],
)
BACKGROUND_RETRYING = Gauge(
    "livecart_background_retrying",
    "1 while a background loop's last round failed (it retries with backoff)",
    ["service", "task"],
)
DEPENDENCY_UNAVAILABLE = Counter(
    "livecart_dependency_unavailable_total",
    "Requests answered 503 (HTTP) or UNAVAILABLE (gRPC) because a dependency was down",
    ["service", "protocol"],
)
