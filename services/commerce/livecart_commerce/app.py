"""Wiring of the commerce service."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from pydantic import SecretStr

from livecart.commerce.v1.commerce_service_pb2_grpc import add_CommerceServiceServicer_to_server
from livecart_commerce.api import routes
from livecart_commerce.buy import BuyPath
from livecart_commerce.expiry import ExpirySweeper
from livecart_commerce.flash_sale import FlashSaleEngine
from livecart_commerce.grpc_api import SERVICE_NAME, CommerceServicer
from livecart_commerce.lottery import CHAT_TOPIC, LotteryDrawer, chat_entries, lottery_routes
from livecart_commerce.outbox import OutboxRelay
from livecart_commerce.payments import Payments, SimulatedProvider
from livecart_commerce.red_packets import red_packet_routes
from livecart_commerce.settings import CommerceSettings
from livecart_core.service import Service, ServiceDefinition


async def setup(service: Service) -> None:
    """The REST API, and the background work every commerce process runs: the outbox relay
    and its pruning, the expiry sweep, the lottery drawer and lottery entry from chat."""
    assert service.database is not None
    settings = service.settings
    assert isinstance(settings, CommerceSettings)
    pool = service.database.pool
    relay = OutboxRelay(
        pool, service.bus, idle_s=settings.outbox_idle_s, retention_s=settings.outbox_retention_s
    )
    sweeper = ExpirySweeper(pool, interval_s=settings.expiry_interval_s)
    engine = FlashSaleEngine(
        pool,
        coalesce=settings.flash_sale_coalesce,
        payment_timeout_s=settings.payment_timeout_s,
    )
    webhook_key = (
        settings.payment_webhook_secret or settings.auth_secret or SecretStr("")
    ).get_secret_value()
    key = hmac.new(webhook_key.encode(), b"livecart-payment-webhook", hashlib.sha256).digest()
    provider = SimulatedProvider(lambda: _own_webhook_url(service), key)
    payments = Payments(pool, provider, key)
    service.http_app.include_router(
        routes(
            pool,
            engine,
            service.tokens,
            payments,
            payment_timeout=timedelta(seconds=settings.payment_timeout_s),
        )
    )
    # The buy button's requests skip the framework (see buy.py).
    service.serve_ahead(lambda app: BuyPath(app, engine, service.tokens, service.name))
    add_CommerceServiceServicer_to_server(
        CommerceServicer(pool, engine, service.tokens), service.grpc_server
    )
    service.http_app.include_router(red_packet_routes(pool, service.tokens))
    service.http_app.include_router(lottery_routes(pool, service.tokens))
    service.repeat_in_background("outbox-relay", relay.round, idle_s=relay.idle_s)
    service.repeat_in_background("outbox-prune", relay.prune_round, idle_s=relay.prune_interval_s)
    service.repeat_in_background("expiry-sweep", sweeper.round, idle_s=sweeper.interval_s)
    drawer = LotteryDrawer(pool, delay_s=settings.lottery_draw_delay_s)
    service.repeat_in_background("lottery-drawer", drawer.round, idle_s=drawer.interval_s)
    await service.bus.subscribe(CHAT_TOPIC, "commerce-lottery", chat_entries(pool))


def _own_webhook_url(service: Service) -> str:
    """This process's webhook URL (its port is known only once it listens)."""
    assert service.http is not None
    host = service.settings.http_host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{host}:{service.http.port}/v1/payments/webhook"


SERVICE = ServiceDefinition(
    name="commerce",
    package="livecart_commerce",
    settings=CommerceSettings,
    uses_database=True,
    uses_auth=True,
    grpc_services=(SERVICE_NAME,),
    setup=setup,
)
