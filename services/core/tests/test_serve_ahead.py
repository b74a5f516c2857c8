"""A layer a service serves ahead of its FastAPI app answers what it takes and passes the rest."""

from __future__ import annotations

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from livecart_core.service import Service, ServiceDefinition
from livecart_core.settings import ServiceSettings


def front(app: ASGIApp) -> ASGIApp:
    async def layer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/front":
            await app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"answered ahead"})

    return layer


async def serve_front(service: Service) -> None:
    service.serve_ahead(front)


async def test_a_layer_ahead_answers_first_and_passes_the_rest_on() -> None:
    definition = ServiceDefinition(
        name="fronted", package="livecart_core", settings=ServiceSettings, setup=serve_front
    )
    settings = ServiceSettings(
        bus="memory", http_host="127.0.0.1", http_port=0, grpc_host="127.0.0.1", grpc_port=0
    )
    service = Service(definition, settings)
    await service.start()
    try:
        assert service.http is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http.port}") as client:
            assert (await client.get("/front")).text == "answered ahead"
            health = await client.get("/healthz")
            assert health.status_code == 200 and health.json()["service"] == "fronted"
            missing = await client.get("/nowhere")
            assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    finally:
        await service.stop()
