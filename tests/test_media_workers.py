"""A relay on several cores: a front process and two forwarding workers behind one HTTP and
one gRPC port; a publisher through ingest, viewers spread across the workers, a worker
killed and started again."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from livecart.relay.v1 import relay_service_pb2 as relay_pb
from livecart.relay.v1 import relay_service_pb2_grpc as relay_grpc
from livecart_core.auth import TokenAuthority
from livecart_core.testing import TEST_AUTH_SECRET, ServiceProcess
from livecart_media import webrtc
from livecart_media.testing import Publisher, Viewer, bearer, until

pytestmark = pytest.mark.timeout(180)

TOKENS = TokenAuthority(TEST_AUTH_SECRET)
ROOM = "big-sale"
LOOPBACK = '["127.0.0.1"]'
ICE_PORTS = range(45100, 45140)
PIPE_PORTS = range(45150, 45160)
INGEST_ICE_PORTS = range(45160, 45170)


def candidate_ports(sdp: str) -> set[int]:
    # a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
    return {int(line.split()[5]) for line in sdp.splitlines() if line.startswith("a=candidate:")}


@pytest.fixture(autouse=True, scope="module")
def loopback_only() -> Iterator[None]:
    with webrtc.pinned_host_addresses(["127.0.0.1"]):
        yield


@pytest.fixture(scope="module")
def relay() -> Iterator[ServiceProcess]:
    env = {
        "LIVECART_BUS": "memory",
        "LIVECART_ICE_HOST_ADDRESSES": LOOPBACK,
        "LIVECART_WORKERS": "2",
        "LIVECART_ICE_PORT_MIN": str(ICE_PORTS[0]),  # two workers: a slice of 20 each
        "LIVECART_ICE_PORT_MAX": str(ICE_PORTS[-1]),
        "LIVECART_PIPE_PORT_MIN": str(PIPE_PORTS[0]),
        "LIVECART_PIPE_PORT_MAX": str(PIPE_PORTS[-1]),
    }
    # A front and two workers start one after another: slow on a loaded 2-core machine.
    process = ServiceProcess("livecart_relay", env).start(timeout_s=120)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def ingest(relay: ServiceProcess) -> Iterator[ServiceProcess]:
    env = {
        "LIVECART_BUS": "memory",
        "LIVECART_RELAY_GRPC_ADDRESS": f"127.0.0.1:{relay.grpc_port}",
        "LIVECART_ICE_HOST_ADDRESSES": LOOPBACK,
        "LIVECART_ICE_PORT_MIN": str(INGEST_ICE_PORTS[0]),
        "LIVECART_ICE_PORT_MAX": str(INGEST_ICE_PORTS[-1]),
    }
    with ServiceProcess("livecart_ingest", env) as process:
        yield process


@pytest.fixture
async def peers() -> AsyncIterator[list[Publisher | Viewer]]:
    made: list[Publisher | Viewer] = []
    yield made
    for one in made:
        await one.close()


def worker_pids(front_pid: int) -> list[int]:
    children = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == front_pid:
            children.append(int(pid))
    return children


async def test_a_pipe_listens_in_the_pipe_port_range(relay: ServiceProcess) -> None:
    room = "ranged"
    publish = TOKENS.issue("shop", "merchant", ("publish",), room=room)
    metadata = (("authorization", f"Bearer {publish}"),)
    video = relay_pb.PipeStream(
        kind="video", payload_type=96, mime_type="video/VP8", clock_rate=90000
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{relay.grpc_port}") as channel:
        stub = relay_grpc.RelayServiceStub(channel)
        request = relay_pb.OpenPipeRequest(room_id=room, stream_id="s1", streams=[video])
        for _ in range(60):  # a worker may still be starting
            try:
                pipe = await stub.OpenPipe(request, metadata=metadata, timeout=10)
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                await asyncio.sleep(0.5)
        assert pipe.port in PIPE_PORTS, pipe
        closing = relay_pb.ClosePipeRequest(room_id=room, pipe_id=pipe.pipe_id, ended=True)
        await stub.ClosePipe(closing, metadata=metadata)


async def test_viewers_spread_over_workers_and_survive_a_worker_restart(
    relay: ServiceProcess, ingest: ServiceProcess, peers: list[Publisher | Viewer]
) -> None:
    publish = TOKENS.issue("shop", "merchant", ("publish",), room=ROOM)
    play = TOKENS.issue("shop", "viewer", ("play",), room=ROOM)
    async with httpx.AsyncClient(timeout=20) as http:
        publisher = Publisher()
        peers.append(publisher)
        live = await publisher.post(http, f"{ingest.url}/whip/{ROOM}", publish)
        assert live.status_code == 201, live.text
        assert candidate_ports(live.text) <= set(INGEST_ICE_PORTS), live.text

        viewers, locations = [], []
        for _ in range(4):
            viewer = Viewer()
            peers.append(viewer)
            answer = await viewer.post(http, f"{relay.url}/whep/{ROOM}", play)
            assert answer.status_code == 201, answer.text
            viewers.append(viewer)
            locations.append(answer.headers["location"])
            # Each worker binds its viewers in its own slice of the ICE port range.
            worker = int(answer.headers["location"].rsplit("/", 1)[1].split(".")[0])
            ports = candidate_ports(answer.text)
            assert ports and ports <= set(ICE_PORTS[20 * worker : 20 * worker + 20]), answer.text
        # The front sends each new viewer to the worker with the fewest.
        assert sorted(loc.rsplit("/", 1)[1].split(".")[0] for loc in locations) == [
            "0",
            "0",
            "1",
            "1",
        ]
        for viewer in viewers:
            await until(viewer.has(video=30, audio=50), "every viewer on either worker to decode")

        # The front's /metrics carries each worker's relay metrics.
        async def viewers_by_worker() -> dict[str, float]:
            text = (await http.get(f"{relay.url}/metrics")).text
            return {
                sample.labels["worker"]: sample.value
                for family in text_string_to_metric_families(text)
                if family.name == "livecart_relay_viewers"
                for sample in family.samples
            }

        for _ in range(100):
            if await viewers_by_worker() == {"0": 2.0, "1": 2.0}:
                break
            await asyncio.sleep(0.1)
        assert await viewers_by_worker() == {"0": 2.0, "1": 2.0}

        left = await http.delete(relay.url + locations[0], headers=bearer(play))
        assert left.status_code == 204, left.text
        await until(lambda: viewers[0].pc.connectionState == "closed", "the viewer to be closed")
        unknown = await http.delete(f"{relay.url}/whep/{ROOM}/9.nope", headers=bearer(play))
        assert unknown.status_code == 404

        # A worker dies: the front starts it again and opens the room's pipe on it.
        assert relay.process is not None
        pids = worker_pids(relay.process.pid)
        assert len(pids) == 2, pids
        os.kill(pids[0], signal.SIGKILL)
        await until(
            lambda: len(set(worker_pids(relay.process.pid)) - {pids[0]}) == 2,  # type: ignore[union-attr]
            "the front to start the worker again",
            timeout_s=30,
        )
        # The killed worker's viewers stop; the other worker's carry on.
        groups: dict[str, list[Viewer]] = {}
        for viewer, location in zip(viewers[1:], locations[1:], strict=True):
            groups.setdefault(location.rsplit("/", 1)[1].split(".")[0], []).append(viewer)
        before = {id(v): v.video_frames for v in viewers}

        def one_group_carries_on() -> bool:
            return any(
                all(v.video_frames >= before[id(v)] + 20 for v in group)
                for group in groups.values()
            )

        await until(one_group_carries_on, "the other worker's viewers to carry on")
        for _ in range(2):  # one of these lands on the restarted worker
            late = Viewer()
            peers.append(late)
            answer = await late.post(http, f"{relay.url}/whep/{ROOM}", play)
            assert answer.status_code == 201, answer.text
            await until(
                late.has(video=20), "a new viewer to decode after the restart", timeout_s=30
            )


def post_all_then_read(port: int, path: str, token: str, body: bytes) -> bytes:
    """A plain HTTP/1.1 client that sends all of `body` before it reads: the status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: relay\r\nContent-Type: application/sdp\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        connection.sendall(head.encode() + body)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while b"\r\n" not in answer:
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer.split(b"\r\n")[0]


async def test_a_huge_offer_to_the_front_is_answered_413_every_time(relay: ServiceProcess) -> None:
    play = TOKENS.issue("shop", "viewer", ("play",), room=ROOM)
    body = b"v=0\r\n" + b"a=x\r\n" * (2 * 1024 * 1024)  # about 10 MB
    port = int(relay.url.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    for _ in range(6):
        status = await loop.run_in_executor(
            None, post_all_then_read, port, f"/whep/{ROOM}", play, body
        )
        assert status.startswith(b"HTTP/1.1 413"), status
    async with httpx.AsyncClient(timeout=20) as http:
        declared = await http.post(
            f"{relay.url}/whep/{ROOM}",
            content=body,
            headers={"Content-Type": "application/sdp", **bearer(play)},
        )
    assert declared.status_code == 413 and declared.json()["error"] == "payload_too_large"


def test_an_ice_port_range_too_small_to_slice_stops_start_up() -> None:
    env = {
        "LIVECART_BUS": "memory",
        "LIVECART_ICE_HOST_ADDRESSES": LOOPBACK,
        "LIVECART_WORKERS": "2",
        "LIVECART_ICE_PORT_MIN": "45190",
        "LIVECART_ICE_PORT_MAX": "45190",
    }
    with pytest.raises(AssertionError) as caught:
        ServiceProcess("livecart_relay", env).start()
    assert "LIVECART_ICE_PORT_MIN" in str(caught.value)
    assert "LIVECART_WORKERS=2" in str(caught.value)
