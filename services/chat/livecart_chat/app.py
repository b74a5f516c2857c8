"""Wiring of the chat service: the viewers' WebSocket server beside the runtime's HTTP and
gRPC, this node's read of ``chat.messages``, and the consumer groups every node joins."""

from __future__ import annotations

from livecart.chat.v1.chat_service_pb2_grpc import add_ChatServiceServicer_to_server
from livecart_chat.api import SERVICE_NAME, ChatServicer, history_routes
from livecart_chat.blocked_words import KeywordStore, moderation_routes
from livecart_chat.bridge import COMMERCE_TOPIC, CommerceBridge
from livecart_chat.buying import Checkout
from livecart_chat.events import TOPIC
from livecart_chat.history import History
from livecart_chat.moderation import KeywordFilter, Moderator, RateLimiter
from livecart_chat.node import ChatNode
from livecart_chat.server import ChatServer
from livecart_chat.settings import ChatSettings
from livecart_core.service import Service, ServiceDefinition


async def setup(service: Service) -> None:
    settings = service.settings
    assert isinstance(settings, ChatSettings) and service.database is not None
    pool = service.database.pool
    history = History(pool)
    keywords = KeywordFilter()
    store = KeywordStore(pool, keywords, interval_s=settings.keyword_poll_s)
    await store.refresh()
    moderator = Moderator(
        keywords, RateLimiter(burst=settings.comment_burst, per_s=settings.comment_rate_per_s)
    )
    node = ChatNode(settings, service.bus, history)
    await node.join()
    checkout = Checkout(settings.commerce_grpc_address, timeout_s=settings.reserve_timeout_s)
    server = ChatServer(settings, node, service.tokens, moderator, checkout)
    await server.start()
    service.on_stop(checkout.close)
    service.on_stop(server.stop)
    service.on_stop(node.stop)
    await service.bus.subscribe(TOPIC, "chat-history", history.write)
    await service.bus.subscribe(COMMERCE_TOPIC, "chat-commerce", CommerceBridge(service.bus).handle)
    service.run_in_background("fan-out", node.run)
    service.run_in_background("blocked-words", store.run)
    service.http_app.include_router(history_routes(history, service.tokens))
    service.http_app.include_router(moderation_routes(pool, service.tokens))
    add_ChatServiceServicer_to_server(
        ChatServicer(service.bus, history, service.tokens), service.grpc_server
    )
    service.endpoints["ws"] = server.port


SERVICE = ServiceDefinition(
    name="chat",
    package="livecart_chat",
    settings=ChatSettings,
    uses_database=True,
    uses_auth=True,
    grpc_services=(SERVICE_NAME,),
    setup=setup,
)
