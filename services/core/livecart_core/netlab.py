"""Impaired networks for tests and benches: namespaces, veth links, random loss and delay.

The kernel on our machines has no `netem`, so an `impaired_link` is built from parts that
are there (root, `ip` and `nft` needed; `make netlab` installs them):

    this namespace           emulator namespace                       far namespace
    near (10.b.c.1) <-veth-> n [bridge: hold each frame] f <-veth-> far (10.b.c.2)
                             ^ drop p % out                  ^ drop p % in

- Loss: nftables in the emulator namespace drops a random share of the frames the bridge
  writes towards each side (UDP only by default, so signalling over TCP is only slowed);
  neither end's sockets see an error, as on a real lossy path.
- Delay: `DelayBridge` forwards Ethernet frames between two veth ends with AF_PACKET
  sockets, holding each for the one-way delay (plus jitter, never reordering). It sits
  below IP, so ICE, DTLS and TCP see an ordinary link. It runs in its own process
  (`python -m livecart_core.netlab bridge ...`): it never competes with the code under
  test for the GIL, and it exits when its parent dies.

Names carry the creating process id, so parallel runs never collide and `sweep()` (called
on every `impaired_link`) removes what a killed run left behind. Stdlib only.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import errno
import os
import random
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

PREFIX = "lcnet"
_NAME = re.compile(rf"^{PREFIX}-(\d+)-[0-9a-f]+-\w+$")
_CLONE_NEWNET = 0x40000000
_SOL_PACKET = 263
_PACKET_VNET_HDR = 15  # frames carry a virtio_net_hdr: GSO and checksum offload survive
_PACKET_IGNORE_OUTGOING = 23
_PACKET_OUTGOING = 4
_ETH_P_ALL = 0x0003
_FRAME_MAX = 65536 + 10  # a GSO frame and its virtio_net_hdr


class NetlabError(RuntimeError):
    """A namespace, link or rule could not be set up; the message has the command's output."""


def unavailable() -> str | None:
    """Why this machine cannot build a lab (not root, `ip` or `nft` missing), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (make netlab)"
    return None


def _run(argv: Sequence[str], stdin: str | None = None) -> str:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NetlabError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@dataclass(frozen=True)
class Namespace:
    """A named network namespace (`ip netns`)."""

    name: str

    def command(self, *argv: str) -> list[str]:
        """`argv` as a command line that runs inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, stdin: str | None = None) -> str:
        """Run a command inside; its stdout. Raises NetlabError if it fails."""
        return _run(self.command(*argv), stdin)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Move the calling thread (only it) into this namespace for the block: sockets
        it opens there stay there."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)

    def call(self, function: Callable[..., T], *args: object) -> T:
        """Run `function(*args)` in a thread inside this namespace; its result or exception."""
        outcome: list[T] = []
        failure: list[BaseException] = []

        def inside() -> None:
            try:
                with self.entered():
                    outcome.append(function(*args))
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=inside, name=f"netns-{self.name}")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]
        return outcome[0]


def _unique(label: str) -> str:
    return f"{PREFIX}-{os.getpid()}-{secrets.token_hex(3)}-{label}"


@contextlib.contextmanager
def namespace(label: str = "ns") -> Iterator[Namespace]:
    """A fresh namespace with `lo` up, deleted (with its interfaces) after the block."""
    ns = Namespace(_unique(label))
    _run(["ip", "netns", "add", ns.name])
    try:
        _run(["ip", "-n", ns.name, "link", "set", "lo", "up"])
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, check=False)


def sweep() -> list[str]:
    """Delete the namespaces of runs whose process is gone; the names deleted."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    deleted = []
    for line in listing.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NAME.match(name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            deleted.append(name)
    return deleted


def set_loss(ns: Namespace, loss_pct: dict[str, float], udp_only: bool = True) -> None:
    """Drop a random share of what leaves each named interface of `ns` (interface → %).

    nftables `numgen random` on the netdev egress hook: the sender sees no error (an
    output-hook drop would fail its sendto with EPERM) and frames written by a packet
    socket are dropped too. Replaces what an earlier call set. Resolution 0.01 %.
    """
    table = f"{PREFIX}_loss"
    match = "meta l4proto udp " if udp_only else ""
    chains = []
    for interface, pct in loss_pct.items():
        if not 0 <= pct <= 100:
            raise ValueError(f"loss must be within 0-100 %, not {pct}")
        chains.append(
            f"chain to_{interface} {{\n"
            f"type filter hook egress device {interface} priority 0;\n"
            f"{match}numgen random mod 10000 < {round(pct * 100)} drop\n}}"
        )
    script = [f"table netdev {table}", f"delete table netdev {table}"]
    script.append(f"table netdev {table} {{\n" + "\n".join(chains) + "\n}")
    ns.run("nft", "-f", "-", stdin="\n".join(script) + "\n")


@dataclass(frozen=True)
class Impairment:
    """What a link does to traffic: loss per direction (seen from the far end) and delay."""

    loss_in_pct: float = 0.0
    """Dropped on the way to the far namespace."""
    loss_out_pct: float = 0.0
    """Dropped on the way from the far namespace."""
    delay_ms: float = 0.0
    """One way, each direction: the round trip adds twice this."""
    jitter_ms: float = 0.0
    """Each frame's delay varies by up to this much either way (order is kept)."""
    udp_only: bool = True


@dataclass(frozen=True)
class Link:
    """An `impaired_link`: this namespace's end and the far namespace's."""

    near_address: str
    far_address: str
    far: Namespace
    near_interface: str


@contextlib.contextmanager
def impaired_link(impairment: Impairment) -> Iterator[Link]:
    """A point-to-point /30 between this namespace and a new one, impaired as asked.

    Everything (namespaces, veths, the bridge process) is gone after the block, also when
    it raises. Raises NetlabError if the lab cannot be built (see `unavailable`).
    """
    reason = unavailable()
    if reason is not None:
        raise NetlabError(reason)
    sweep()
    tag = secrets.token_hex(3)
    near, emu_near, emu_far, far_if = (f"lc{tag}{end}" for end in "nmgf")
    near_address, far_address = _free_subnet()
    with contextlib.ExitStack() as stack:
        emu = stack.enter_context(namespace("emu"))
        far = stack.enter_context(namespace("far"))
        # The near end lives here; deleting the emulator namespace takes its peer and it.
        _run(
            ["ip", "link", "add", near, "type", "veth", "peer", "name", emu_near, "netns", emu.name]
        )
        stack.callback(subprocess.run, ["ip", "link", "del", near], capture_output=True)
        far_veth = ["type", "veth", "peer", "name", far_if, "netns", far.name]
        _run(["ip", "-n", emu.name, "link", "add", emu_far, *far_veth])
        # No IPv6 chatter (router solicitations, DAD) through the bridge or on our end.
        _disable_ipv6(near)
        emu.call(_disable_ipv6, emu_near)
        emu.call(_disable_ipv6, emu_far)
        far.call(_disable_ipv6, far_if)
        _run(["ip", "addr", "add", f"{near_address}/30", "dev", near])
        _run(["ip", "link", "set", near, "up"])
        _run(["ip", "-n", far.name, "addr", "add", f"{far_address}/30", "dev", far_if])
        _run(["ip", "-n", far.name, "link", "set", far_if, "up"])
        for end in (emu_near, emu_far):
            _run(["ip", "-n", emu.name, "link", "set", end, "up", "promisc", "on"])
        if impairment.loss_in_pct or impairment.loss_out_pct:
            loss = {emu_far: impairment.loss_in_pct, emu_near: impairment.loss_out_pct}
            set_loss(emu, loss, impairment.udp_only)
        bridge = subprocess.Popen(
            emu.command(
                sys.executable,
                "-m",
                "livecart_core.netlab",
                "bridge",
                emu_near,
                emu_far,
                "--delay-ms",
                str(impairment.delay_ms),
                "--jitter-ms",
                str(impairment.jitter_ms),
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        stack.callback(_stop, bridge)
        assert bridge.stdout is not None
        if bridge.stdout.readline().strip() != "ready":
            raise NetlabError(f"the delay bridge did not start (exit {bridge.wait()})")
        yield Link(near_address, far_address, far, near)


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _disable_ipv6(interface: str) -> None:
    with open(f"/proc/sys/net/ipv6/conf/{interface}/disable_ipv6", "w") as knob:
        knob.write("1")


def _free_subnet() -> tuple[str, str]:
    # A /30 in 10.200-249.x.y that no route here covers yet.
    routes = _run(["ip", "-4", "route", "show", "table", "all"])
    for _ in range(100):
        b, c, d = random.randint(200, 249), random.randint(0, 255), random.randrange(0, 256, 4)
        if f"10.{b}.{c}." not in routes and f"10.{b}.0.0/16" not in routes:
            return f"10.{b}.{c}.{d + 1}", f"10.{b}.{c}.{d + 2}"
    raise NetlabError("no free 10.200-249.x.y/30 subnet")


class DelayBridge:
    """Forwards frames between two interfaces of this namespace, each held for a delay.

    One thread, one selector over both AF_PACKET sockets, one FIFO per direction: a
    frame's due time is its arrival plus the delay (± jitter), never before the frame
    ahead of it. With PACKET_VNET_HDR the kernel's offload metadata (GSO size, partial
    checksums) travels with each frame, so TCP segments larger than the MTU and UDP
    with checksums left to the NIC arrive intact.
    """

    def __init__(self, first: str, second: str, delay_s: float, jitter_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.jitter_s = jitter_s
        self.forwarded = 0
        self._sockets = (_packet_socket(first), _packet_socket(second))
        self._queues: tuple[collections.deque[tuple[float, bytes]], ...] = (
            collections.deque(),
            collections.deque(),
        )
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self, alive: Callable[[], bool] = lambda: True) -> None:
        """Forward until `stop()`, or until `alive()` (checked each second) is false."""
        selector = selectors.DefaultSelector()
        for index, sock in enumerate(self._sockets):
            selector.register(sock, selectors.EVENT_READ, index)
        checked = time.monotonic()
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if now - checked > 1.0:
                    if not alive():
                        return
                    checked = now
                heads = [queue[0][0] for queue in self._queues if queue]
                timeout = max(0.0, min(heads) - now) if heads else 0.2
                for key, _ in selector.select(min(timeout, 0.2)):
                    self._receive(key.data)
                self._send_due(time.monotonic())
        finally:
            selector.close()
            for sock in self._sockets:
                sock.close()

    def _receive(self, index: int) -> None:
        sock, queue = self._sockets[index], self._queues[index]
        while True:
            try:
                frame, address = sock.recvfrom(_FRAME_MAX)
            except BlockingIOError:
                return
            if address[2] == _PACKET_OUTGOING:
                continue
            due = time.monotonic() + self.delay_s
            if self.jitter_s:
                due += random.uniform(-self.jitter_s, self.jitter_s)
            if queue and due < queue[-1][0]:
                due = queue[-1][0]
            queue.append((due, frame))

    def _send_due(self, now: float) -> None:
        for index, queue in enumerate(self._queues):
            out = self._sockets[1 - index]
            while queue and queue[0][0] <= now:
                frame = queue.popleft()[1]
                try:
                    out.send(frame)
                    self.forwarded += 1
                except OSError as exc:
                    if exc.errno not in (errno.ENOBUFS, errno.EAGAIN, errno.EMSGSIZE):
                        raise  # the interface is gone: the lab is being taken down


def _packet_socket(interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    sock.setsockopt(_SOL_PACKET, _PACKET_VNET_HDR, 1)
    with contextlib.suppress(OSError):  # kernels before 4.20: the address check covers it
        sock.setsockopt(_SOL_PACKET, _PACKET_IGNORE_OUTGOING, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind((interface, _ETH_P_ALL))
    sock.setblocking(False)
    return sock


def _bridge_main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m livecart_core.netlab bridge")
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    bridge = DelayBridge(args.first, args.second, args.delay_ms / 1000, args.jitter_ms / 1000)
    signal.signal(signal.SIGTERM, lambda *_: bridge.stop())
    parent = os.getppid()
    print("ready", flush=True)
    bridge.run(alive=lambda: os.getppid() == parent)


if __name__ == "__main__":
    if sys.argv[1:2] != ["bridge"]:
        sys.exit("usage: python -m livecart_core.netlab bridge FIRST SECOND [--delay-ms MS]")
    _bridge_main(sys.argv[2:])
