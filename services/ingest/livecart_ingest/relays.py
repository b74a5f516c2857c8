"""The relays a room's pipe is opened on: every relay of this edge.

`LIVECART_RELAY_GRPC_ADDRESS` is one or more ``host:port`` (comma-separated); each host is
resolved to all its addresses, so a Kubernetes headless Service names every relay pod. Each
room is piped to each relay (a copy of each packet per relay: cheap for ingest, and any
relay can then serve any viewer). Resolved again every time a pipe is opened and while a
stream runs, so relays that join later get the rooms that are live.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import grpc

from livecart.relay.v1.relay_service_pb2_grpc import RelayServiceStub
from livecart_core.rpc import create_channel

logger = logging.getLogger(__name__)


class Relays:
    def __init__(self, addresses: str, *, deadline_s: float = 5.0) -> None:
        self.addresses = [a.strip() for a in addresses.split(",") if a.strip()]
        if not self.addresses:
            raise ValueError("at least one relay address (host:port) is needed")
        self._deadline_s = deadline_s
        self._channels: dict[str, tuple[grpc.aio.Channel, RelayServiceStub]] = {}

    async def targets(self) -> list[str]:
        """Every relay, as ``ip:port`` (IPv6 in brackets), in a stable order."""
        loop = asyncio.get_running_loop()
        found: list[str] = []
        for address in self.addresses:
            host, _, port = address.rpartition(":")
            host = host.strip("[]")
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                logger.warning("cannot resolve relay %s: %s", address, exc)
                continue
            for family, _, _, _, sockaddr in infos:
                ip = str(sockaddr[0])
                target = f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"
                if target not in found:
                    found.append(target)
        return sorted(found)

    def stub(self, target: str) -> RelayServiceStub:
        known = self._channels.get(target)
        if known is None:
            channel = create_channel(target, deadline_s=self._deadline_s)
            known = self._channels[target] = (channel, RelayServiceStub(channel))
        return known[1]

    async def close(self) -> None:
        for channel, _ in self._channels.values():
            await channel.close()
        self._channels.clear()
