"""Configured UDP port ranges: where ICE host candidates and relay pipes listen.

Firewalls, Kubernetes Services (hostPort or a NodePort range) and TURN-less deployments
must know which ports to open, so a process binds inside its range rather than wherever
the OS picks. A relay with several workers gives each a disjoint slice (`PortRange.slice`).
"""

from __future__ import annotations

import itertools
import socket
from dataclasses import dataclass, field

from livecart_core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class PortRange:
    """The ports `first` to `last`, both included."""

    first: int
    last: int
    _turns: itertools.count[int] = field(
        default_factory=itertools.count, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not 1 <= self.first <= self.last <= 65535:
            raise ValueError(f"not a port range: {self.first}-{self.last}")

    @classmethod
    def from_settings(cls, low: int, high: int, name: str) -> PortRange | None:
        """The range LIVECART_{name}_MIN..MAX says, or None when both are 0 (the OS picks);
        ConfigError naming both settings otherwise."""
        if low == high == 0:
            return None
        try:
            return cls(low, high)
        except ValueError:
            raise ConfigError(
                f"LIVECART_{name}_MIN and LIVECART_{name}_MAX must be 1 <= min <= max <= 65535 "
                f"(or both 0), not {low} and {high}"
            ) from None

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def slice(self, index: int, count: int) -> PortRange:
        """The `index`-th of `count` equal, disjoint parts (the remainder goes unused)."""
        size = len(self) // count
        if size < 1:
            raise ValueError(f"{len(self)} ports cannot be split {count} ways")
        first = self.first + index * size
        return PortRange(first, first + size - 1)

    def bind_udp(self, host: str) -> socket.socket:
        """A non-blocking UDP socket bound to `host` on a free port of the range.

        Each call starts one port further on, so ports just released are tried last.
        Raises OSError when every port is taken."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        start = next(self._turns) % len(self)
        for offset in range(len(self)):
            port = self.first + (start + offset) % len(self)
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            return sock
        raise OSError(f"no free UDP port on {host} in {self.first}-{self.last}")
