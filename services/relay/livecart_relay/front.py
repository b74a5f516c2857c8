"""One relay per core: a front process and `workers` forwarding processes behind it.

Python forwards on one core per process, and one live-shopping room can have more viewers
than a core serves, so rooms are not sharded: every worker carries every room, and the
front spreads the viewers.

- **Pipes.** `OpenPipe` on the front opens the room's pipe on every worker (their gRPC on
  loopback) and answers with one UDP port of its own, a `Tee`. Each datagram from ingest is
  copied to every worker's pipe; the workers' feedback (PLI, NACK, BYE) goes back to
  ingest from the tee's port, so ingest sees one relay.
- **Viewers.** ``POST /whep/{room}`` goes to the worker with the fewest viewers the front
  has sent it (the next one if that one answers 503); the worker's ``Location`` comes back
  as ``/whep/{room}/{worker}.{session}``, so a ``DELETE`` reaches the worker that holds
  the session. Signalling only passes through the front: media flows between the viewer
  and its worker.
- **Workers** are ``python -m livecart_relay`` with ``LIVECART_WORKERS=1`` and private
  loopback ports. One that exits is started again, and the room pipes the front holds are
  opened on it again. Its viewers reconnect (the player page retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import httpx
from fastapi import FastAPI, Request, Response
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from livecart.relay.v1 import relay_service_pb2 as pb
from livecart.relay.v1 import relay_service_pb2_grpc as pb_grpc
from livecart_core.auth import Principal, TokenAuthority, grpc_principal
from livecart_core.errors import ConfigError, NotFound
from livecart_core.localinfra import free_port
from livecart_core.rpc import create_channel
from livecart_media import whipwhep
from livecart_media.errors import Unavailable
from livecart_media.pipe import may_own
from livecart_media.ports import PortRange
from livecart_media.whipwhep import RoomKey
from livecart_relay import metrics as relay_metrics
from livecart_relay.settings import RelaySettings

logger = logging.getLogger(__name__)

Address = tuple[str, int]
_PASSED_HEADERS = ("content-type", "retry-after", "link", "allow")


@dataclass(eq=False)
class Worker:
    """One forwarding process and how to reach it."""

    index: int
    http_port: int
    grpc_port: int
    process: asyncio.subprocess.Process | None = None
    viewers: int = 0
    stub: pb_grpc.RelayServiceStub | None = None
    channel: grpc.aio.Channel | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


class Tee(asyncio.DatagramProtocol):
    """A room's pipe port on the front: ingest's datagrams to every worker, their feedback
    back to ingest. The first address to send RTP of one of `payload_types` owns it, as on a
    worker; anything else is counted in `dropped`."""

    def __init__(self, payload_types: Iterable[int]) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.targets: dict[int, Address] = {}  # worker index: its pipe address
        self.source: Address | None = None
        self.dropped = 0
        self._payload_types = frozenset(payload_types)
        self._from_workers: set[Address] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def error_received(self, exc: Exception) -> None:
        logger.debug("tee socket error: %s", exc)

    def set_target(self, index: int, address: Address) -> None:
        self.targets[index] = address
        self._from_workers = set(self.targets.values())

    def datagram_received(self, data: bytes, addr: Address) -> None:
        transport = self.transport
        if transport is None:
            return
        if addr in self._from_workers:
            if self.source is not None:
                transport.sendto(data, self.source)
            return
        if self.source is None and may_own(data, self._payload_types):
            self.source = addr
        elif addr != self.source:
            self.dropped += 1
            return
        for target in self.targets.values():
            transport.sendto(data, target)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass(eq=False)
class FrontPipe:
    """A pipe the front holds: the request that opened it, for workers started later."""

    request: pb.OpenPipeRequest
    metadata: tuple[tuple[str, str], ...]
    tee: Tee
    pipe_ids: dict[int, str] = field(default_factory=dict)


class WorkerMetrics(Collector):
    """The workers' relay metrics (``livecart_relay_*``) on the front's ``/metrics``, each
    sample labelled ``worker``: Prometheus scrapes one port per pod. Read from the workers
    every few seconds in the background, never while a scrape waits."""

    def __init__(self) -> None:
        self.families: dict[int, list[Metric]] = {}

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for index, families in sorted(self.families.items()):
            for family in families:
                out = merged.get(family.name)
                if out is None:
                    out = merged[family.name] = Metric(
                        family.name, family.documentation, family.type
                    )
                for sample in family.samples:
                    labels = {**sample.labels, "worker": str(index)}
                    out.samples.append(sample._replace(labels=labels))
        yield from merged.values()


class Front:
    """The workers, and the pipes and viewer sessions the front routes to them."""

    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self.workers = [Worker(i, free_port(), free_port()) for i in range(settings.workers)]
        self.pipe_ports = PortRange.from_settings(
            settings.pipe_port_min, settings.pipe_port_max, "PIPE_PORT"
        )
        self.ice_ports = PortRange.from_settings(
            settings.ice_port_min, settings.ice_port_max, "ICE_PORT"
        )
        if self.ice_ports is not None and len(self.ice_ports) < settings.workers:
            raise ConfigError(
                f"LIVECART_ICE_PORT_MIN..LIVECART_ICE_PORT_MAX has {len(self.ice_ports)} ports, "
                f"fewer than LIVECART_WORKERS={settings.workers}: each worker needs a slice"
            )
        self.pipes: dict[tuple[str, str, str], FrontPipe] = {}  # tenant, room, stream id
        self.http = httpx.AsyncClient(timeout=15.0)
        self._watch: asyncio.Task[None] | None = None
        self._scrape: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.metrics = WorkerMetrics()

    async def start(self) -> None:
        await asyncio.gather(*(self._spawn(worker) for worker in self.workers))
        self._watch = asyncio.create_task(self._restart_exited())
        # The front forwards nothing itself: its own relay families would only say zero.
        for collector in relay_metrics.COLLECTORS:
            REGISTRY.unregister(collector)
        REGISTRY.register(self.metrics)
        self._scrape = asyncio.create_task(self._scrape_workers())

    async def stop(self) -> None:
        for task in (self._watch, self._scrape):
            if task is not None:
                task.cancel()
        REGISTRY.unregister(self.metrics)
        for collector in relay_metrics.COLLECTORS:
            REGISTRY.register(collector)
        for pipe in self.pipes.values():
            pipe.tee.close()
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.terminate()
        for worker in self.workers:
            if worker.process is not None:
                try:
                    await asyncio.wait_for(worker.process.wait(), 15)
                except TimeoutError:
                    worker.process.kill()
            if worker.channel is not None:
                await worker.channel.close()
        await self.http.aclose()

    async def _spawn(self, worker: Worker) -> None:
        env = {
            **os.environ,
            "LIVECART_WORKERS": "1",
            "LIVECART_HTTP_HOST": "127.0.0.1",
            "LIVECART_HTTP_PORT": str(worker.http_port),
            "LIVECART_GRPC_HOST": "127.0.0.1",
            "LIVECART_GRPC_PORT": str(worker.grpc_port),
            "LIVECART_PIPE_HOST": "127.0.0.1",
            # The front's tee holds the pipe range; a worker's pipes are on loopback only.
            "LIVECART_PIPE_PORT_MIN": "0",
            "LIVECART_PIPE_PORT_MAX": "0",
        }
        if self.ice_ports is not None:
            ice = self.ice_ports.slice(worker.index, len(self.workers))
            env |= {"LIVECART_ICE_PORT_MIN": str(ice.first), "LIVECART_ICE_PORT_MAX": str(ice.last)}
        worker.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "livecart_relay", env=env
        )
        worker.viewers = 0
        for _ in range(600):
            if worker.process.returncode is not None:
                raise RuntimeError(f"relay worker {worker.index} exited at start")
            with contextlib.suppress(httpx.TransportError):
                if (await self.http.get(f"{worker.url}/healthz")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError(f"relay worker {worker.index} did not start in 30 s")
        if worker.channel is not None:
            await worker.channel.close()
        worker.channel = create_channel(f"127.0.0.1:{worker.grpc_port}", deadline_s=5.0)
        worker.stub = pb_grpc.RelayServiceStub(worker.channel)
        logger.info("relay worker %d serving on port %d", worker.index, worker.http_port)

    async def _restart_exited(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            for worker in self.workers:
                process = worker.process
                if process is None or process.returncode is None:
                    continue
                logger.error(
                    "relay worker %d exited (%s); starting it again",
                    worker.index,
                    process.returncode,
                )
                try:
                    await self._spawn(worker)
                    for pipe in list(self.pipes.values()):
                        await self._open_on(worker, pipe)
                except Exception:
                    logger.exception("restarting relay worker %d failed", worker.index)

    async def _scrape_workers(self, every_s: float = 5.0) -> None:
        while True:
            for worker in self.workers:
                try:
                    text = (await self.http.get(f"{worker.url}/metrics")).text
                    self.metrics.families[worker.index] = [
                        family
                        for family in text_string_to_metric_families(text)
                        if family.name.startswith("livecart_relay_")
                    ]
                except httpx.TransportError:
                    continue  # restarting: its last figures stand until it answers
                except Exception:  # a half-written answer must not end the scraping
                    logger.warning(
                        "cannot read relay worker %d's metrics", worker.index, exc_info=True
                    )
            await asyncio.sleep(every_s)

    # Pipes ---------------------------------------------------------------------------

    async def open_pipe(
        self, request: pb.OpenPipeRequest, metadata: tuple[tuple[str, str], ...], tenant: str
    ) -> pb.OpenPipeResponse:
        async with self._lock:
            key = (tenant, request.room_id, request.stream_id)
            pipe = self.pipes.get(key)
            if pipe is None:
                loop = asyncio.get_running_loop()
                payload_types = [stream.payload_type for stream in request.streams]
                _, tee = await loop.create_datagram_endpoint(
                    lambda: Tee(payload_types), **self._pipe_bind()
                )
                pipe = FrontPipe(request, metadata, tee)
                try:
                    await asyncio.gather(*(self._open_on(w, pipe) for w in self.workers))
                except BaseException:
                    tee.close()
                    await self._close_on_workers(pipe, ended=False)
                    raise
                self.pipes[key] = pipe
                # Taken over or replaced on the workers: the front forgets the old pipes.
                for other_key, other in list(self.pipes.items()):
                    if other_key[:2] == key[:2] and other is not pipe:
                        other.tee.close()
                        del self.pipes[other_key]
            assert pipe.tee.transport is not None
            host, port = pipe.tee.transport.get_extra_info("sockname")[:2]
            return pb.OpenPipeResponse(pipe_id=_front_pipe_id(key), host=host, port=port)

    def _pipe_bind(self) -> dict[str, Any]:
        host = self.settings.pipe_host
        if self.pipe_ports is None:
            return {"local_addr": (host, 0)}
        try:
            return {"sock": self.pipe_ports.bind_udp(host)}
        except OSError as exc:
            raise Unavailable(
                f"this relay has no free pipe port ({exc})", retry_after_s=5
            ) from None

    async def close_pipe(self, tenant: str, request: pb.ClosePipeRequest) -> None:
        async with self._lock:
            for key, pipe in list(self.pipes.items()):
                if key[:2] == (tenant, request.room_id) and _front_pipe_id(key) == request.pipe_id:
                    del self.pipes[key]
                    pipe.tee.close()
                    await self._close_on_workers(pipe, ended=request.ended)

    async def _open_on(self, worker: Worker, pipe: FrontPipe) -> None:
        assert worker.stub is not None
        reply = await worker.stub.OpenPipe(pipe.request, metadata=pipe.metadata)
        pipe.pipe_ids[worker.index] = reply.pipe_id
        pipe.tee.set_target(worker.index, (reply.host, reply.port))

    async def _close_on_workers(self, pipe: FrontPipe, *, ended: bool) -> None:
        for worker in self.workers:
            pipe_id = pipe.pipe_ids.get(worker.index)
            if worker.stub is None or pipe_id is None:
                continue
            request = pb.ClosePipeRequest(
                room_id=pipe.request.room_id, pipe_id=pipe_id, ended=ended
            )
            try:
                await worker.stub.ClosePipe(request, metadata=pipe.metadata)
            except grpc.aio.AioRpcError as exc:
                logger.warning("closing a pipe on worker %d failed: %s", worker.index, exc)

    # Viewers -------------------------------------------------------------------------

    async def subscribe(self, room: str, offer: str, request: Request) -> Response:
        body = offer.encode()
        headers = _forwarded_headers(request)
        refusal: httpx.Response | None = None
        for worker in sorted(self.workers, key=lambda w: w.viewers):
            try:
                answer = await self.http.post(
                    f"{worker.url}/whep/{room}", content=body, headers=headers
                )
            except httpx.TransportError:
                continue
            if answer.status_code == 201:
                worker.viewers += 1
                session = answer.headers["location"].rsplit("/", 1)[-1]
                response = _passed(answer)
                response.headers["Location"] = f"/whep/{room}/{worker.index}.{session}"
                return response
            refusal = answer
            # Full (503) or without the room yet (404: a worker just restarted, its pipes
            # being opened again): another worker may take the viewer. Other refusals are
            # about the request and would be the same everywhere.
            if answer.status_code not in (404, 503):
                break
        if refusal is None:
            raise Unavailable("no relay worker is reachable", retry_after_s=2)
        return _passed(refusal)

    async def unsubscribe(self, room: str, session: str, request: Request) -> Response:
        index, _, inner = session.partition(".")
        if not index.isdigit() or int(index) >= len(self.workers) or not inner:
            raise NotFound("no such WHEP session")
        worker = self.workers[int(index)]
        try:
            answer = await self.http.delete(
                f"{worker.url}/whep/{room}/{inner}", headers=_forwarded_headers(request)
            )
        except httpx.TransportError:
            raise NotFound("no such WHEP session") from None
        if answer.status_code == 204:
            worker.viewers = max(0, worker.viewers - 1)
        return _passed(answer)


def _front_pipe_id(key: tuple[str, str, str]) -> str:
    return f"front:{key[2]}"


def _forwarded_headers(request: Request) -> dict[str, str]:
    return {
        name: value
        for name, value in request.headers.items()
        if name in ("authorization", "content-type")
    }


def _passed(answer: httpx.Response) -> Response:
    headers = {k: v for k, v in answer.headers.items() if k in _PASSED_HEADERS}
    return Response(answer.content, status_code=answer.status_code, headers=headers)


class FrontServicer(pb_grpc.RelayServiceServicer):
    """RelayService on the front: the same checks as a worker's, then every worker."""

    def __init__(self, front: Front, tokens: TokenAuthority) -> None:
        self.front = front
        self.tokens = tokens

    async def OpenPipe(self, request: pb.OpenPipeRequest, context: Any) -> pb.OpenPipeResponse:
        caller = grpc_principal(self.tokens, context.invocation_metadata(), "publish")
        metadata = _authorization(context)
        try:
            return await self.front.open_pipe(request, metadata, caller.tenant_id)
        except grpc.aio.AioRpcError as exc:  # a worker's refusal is the front's
            await context.abort(exc.code(), exc.details())
            raise AssertionError("unreachable") from None

    async def ClosePipe(self, request: pb.ClosePipeRequest, context: Any) -> pb.ClosePipeResponse:
        caller = grpc_principal(self.tokens, context.invocation_metadata(), "publish")
        await self.front.close_pipe(caller.tenant_id, request)
        return pb.ClosePipeResponse()


def _authorization(context: Any) -> tuple[tuple[str, str], ...]:
    for name, value in context.invocation_metadata() or ():
        if name == "authorization":
            return (("authorization", value if isinstance(value, str) else value.decode()),)
    return ()


def install_front(
    app: FastAPI, front: Front, tokens: TokenAuthority, cors_origins: Sequence[str]
) -> None:
    """WHEP on the front, the same contract as a worker's (`livecart_relay.whep`)."""

    async def start(key: RoomKey, caller: Principal, request: Request) -> Response:
        # Checked here as on a worker: the front must not buffer a body of any size.
        return await front.subscribe(key.room, await whipwhep.read_sdp(request), request)

    async def stop(key: RoomKey, caller: Principal, session: str, request: Request) -> Response:
        return await front.unsubscribe(key.room, session, request)

    app.include_router(whipwhep.session_routes("whep", "play", tokens, start, stop))
    whipwhep.install_cors(app, cors_origins)
