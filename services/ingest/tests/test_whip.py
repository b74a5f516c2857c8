"""The media path as deployed: an aiortc publisher → ingest (WHIP) → RTP/UDP pipe → relay →
aiortc viewers (WHEP), each service its own process, lifecycle events on a real Kafka."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import grpc
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiortc.rtcrtpsender import RTCRtpSender

from livecart.events.v1.stream_lifecycle_pb2 import StreamLifecycle, StreamState
from livecart.relay.v1 import relay_service_pb2 as relay_pb
from livecart.relay.v1 import relay_service_pb2_grpc as relay_grpc
from livecart_core.auth import TokenAuthority
from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.testing import TEST_AUTH_SECRET, ServiceProcess, free_port
from livecart_media import webrtc
from livecart_media.rtp import rtcp
from livecart_media.testing import Publisher, Viewer, bearer, until

pytestmark = pytest.mark.timeout(180)

TENANT = "shop-1"
TOKENS = TokenAuthority(TEST_AUTH_SECRET)
LOOPBACK = '["127.0.0.1"]'
STUN = "stun:stun.example.net:3478"


def publish_token(room: str, subject: str = "merchant-1", *extra: str) -> str:
    return TOKENS.issue(TENANT, subject, ("publish", *extra), room=room)


def play_token(room: str) -> str:
    return TOKENS.issue(TENANT, "viewer-1", ("play",), room=room)


@pytest.fixture(autouse=True, scope="module")
def loopback_only() -> Iterator[None]:
    with webrtc.pinned_host_addresses(["127.0.0.1"]):  # the test's own peers
        yield


@pytest.fixture(scope="module")
def relay() -> Iterator[ServiceProcess]:
    env = {
        "LIVECART_BUS": "memory",
        "LIVECART_ICE_HOST_ADDRESSES": LOOPBACK,
        "LIVECART_PIPE_TIMEOUT_S": "3",
        "LIVECART_PUBLISHER_GRACE_S": "20",
    }
    with ServiceProcess("livecart_relay", env) as process:
        yield process


@pytest.fixture(scope="module")
def ingest(relay: ServiceProcess, kafka_broker: KafkaBroker) -> Iterator[ServiceProcess]:
    env = {
        "LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "LIVECART_RELAY_GRPC_ADDRESS": f"127.0.0.1:{relay.grpc_port}",
        "LIVECART_ICE_HOST_ADDRESSES": LOOPBACK,
        "LIVECART_ICE_SERVERS": f'["{STUN}"]',
        "LIVECART_EDGE": "test-edge",
    }
    with ServiceProcess("livecart_ingest", env) as process:
        yield process


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=20) as client:
        yield client


@pytest.fixture
async def peers() -> AsyncIterator[list[Publisher | Viewer]]:
    made: list[Publisher | Viewer] = []
    yield made
    for one in made:
        await one.close()


class Lifecycle:
    """Every StreamLifecycle event on the bus, from the beginning."""

    def __init__(self, bootstrap: str) -> None:
        self.events: list[StreamLifecycle] = []
        self._consumer = AIOKafkaConsumer(
            "stream.lifecycle", bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Lifecycle:
        await self._consumer.start()
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await self._consumer.stop()

    async def _read(self) -> None:
        async for record in self._consumer:
            assert record.value is not None
            self.events.append(StreamLifecycle.FromString(record.value))

    def states(self, room: str) -> list[tuple[StreamState, str]]:
        return [(e.state, e.reason) for e in self.events if e.room_id == room]


async def until_reports(viewer: Viewer) -> None:
    """Until the viewer has had a sender report for audio and for video, each carrying
    wall-clock time within 2 s of now (the publisher's clock, mapped by the relay)."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        stats = await viewer.pc.getStats()
        reports = {
            s.kind: s for s in stats.values() if s.type == "remote-outbound-rtp" and s.packetsSent
        }
        if reports.keys() == {"audio", "video"}:
            now = datetime.now(UTC)
            assert all(abs((now - r.remoteTimestamp).total_seconds()) < 2 for r in reports.values())
            return
        assert asyncio.get_running_loop().time() < deadline, f"sender reports: {reports}"
        await asyncio.sleep(0.2)


async def go_live(
    http: httpx.AsyncClient, ingest: ServiceProcess, room: str, token: str
) -> tuple[Publisher, httpx.Response]:
    publisher = Publisher()
    response = await publisher.post(http, f"{ingest.url}/whip/{room}", token)
    return publisher, response


async def test_a_publisher_reaches_viewers_survives_a_reconnect_and_ends(
    http: httpx.AsyncClient,
    ingest: ServiceProcess,
    relay: ServiceProcess,
    kafka_broker: KafkaBroker,
    peers: list[Publisher | Viewer],
) -> None:
    room = "e2e"
    async with Lifecycle(kafka_broker.bootstrap) as lifecycle:
        publisher, response = await go_live(http, ingest, room, publish_token(room))
        peers.append(publisher)
        assert response.status_code == 201, response.text
        assert response.headers["content-type"] == "application/sdp"
        assert response.headers["location"].startswith(f"/whip/{room}/")
        assert f'<{STUN}>; rel="ice-server"' in response.headers["link"]

        viewers = [Viewer() for _ in range(3)]
        peers.extend(viewers)
        for viewer in viewers:
            answer = await viewer.post(http, f"{relay.url}/whep/{room}", play_token(room))
            assert answer.status_code == 201, answer.text
        for viewer in viewers:
            await until(viewer.has(video=30, audio=50), "decoded video and audio at each viewer")
        assert all(viewer.sizes == {(320, 240)} for viewer in viewers)
        # Sender reports reach the viewers, mapped from the publisher's clock (A/V sync).
        for viewer in viewers:
            await until_reports(viewer)
        await until(
            lambda: (StreamState.STREAM_STATE_STARTED, "") in lifecycle.states(room),
            "stream.started on the bus",
        )
        started = next(e for e in lifecycle.events if e.room_id == room)
        assert (started.tenant_id, started.edge, started.publisher) == (
            TENANT,
            "test-edge",
            "merchant-1",
        )

        # The publisher's connection drops without a DELETE; it comes back as a new session.
        await publisher.close()
        await until(
            lambda: (
                (StreamState.STREAM_STATE_FAILED, "publisher connection lost")
                in lifecycle.states(room)
            ),
            "stream.failed for the lost publisher",
        )
        before = [viewer.video_frames for viewer in viewers]
        returning, response = await go_live(http, ingest, room, publish_token(room))
        peers.append(returning)
        assert response.status_code == 201, response.text
        for viewer, count in zip(viewers, before, strict=True):
            await until(viewer.has(video=count + 30), "the same viewers to see the new publisher")

        deleted = await http.delete(
            ingest.url + response.headers["location"], headers=bearer(publish_token(room))
        )
        assert deleted.status_code == 204, deleted.text
        await until(
            lambda: (StreamState.STREAM_STATE_STOPPED, "") in lifecycle.states(room),
            "stream.stopped on the bus",
        )
        # The stream is over: the relay closed the room and its viewers.
        for viewer in viewers:
            await until(lambda v=viewer: v.pc.connectionState == "closed", "viewers closed")  # type: ignore[misc]
        late = Viewer()
        peers.append(late)
        gone = await late.post(http, f"{relay.url}/whep/{room}", play_token(room))
        assert gone.status_code == 404, gone.text


async def test_one_publisher_per_room_unless_the_token_allows_takeover(
    http: httpx.AsyncClient, ingest: ServiceProcess, peers: list[Publisher | Viewer]
) -> None:
    room = "contested"
    first, response = await go_live(http, ingest, room, publish_token(room, "merchant-a"))
    peers.append(first)
    assert response.status_code == 201, response.text
    first_session = response.headers["location"]

    rival, refused = await go_live(http, ingest, room, publish_token(room, "merchant-b"))
    peers.append(rival)
    assert refused.status_code == 409, refused.text
    assert "publish:takeover" in refused.json()["message"]

    host = publish_token(room, "merchant-b", "publish:takeover")
    taker, taken = await go_live(http, ingest, room, host)
    peers.append(taker)
    assert taken.status_code == 201, taken.text
    # The first session is gone: its DELETE finds nothing.
    stale = await http.delete(
        ingest.url + first_session, headers=bearer(publish_token(room, "merchant-a"))
    )
    assert stale.status_code == 404, stale.text


async def test_bad_whip_requests_get_clear_answers(
    http: httpx.AsyncClient, ingest: ServiceProcess
) -> None:
    room = "bad-input"
    url = f"{ingest.url}/whip/{room}"
    sdp = {"Content-Type": "application/sdp"}
    offer = await Publisher().offer()

    async def post(headers: dict[str, str], body: str | bytes = offer) -> httpx.Response:
        return await http.post(url, content=body, headers={**sdp, **headers})

    assert (await post({})).status_code == 401
    assert (await post(bearer("not-a-token"))).status_code == 401
    assert (await post(bearer(play_token(room)))).status_code == 403
    assert (await post(bearer(publish_token("another-room")))).status_code == 403
    good = bearer(publish_token(room))
    not_sdp = await http.post(url, content=offer, headers={**good, "Content-Type": "text/plain"})
    assert not_sdp.status_code == 400 and "application/sdp" in not_sdp.json()["message"]
    assert (await post(good, "hello")).status_code == 400
    assert (await post(good, "v=0\r\nm=video 9 nonsense\r\n")).status_code == 400
    assert (await post(good, "v=0\r\n" + "a=x\r\n" * 20000)).status_code == 413
    unbound = bearer(TOKENS.issue(TENANT, "merchant-1", ("publish",)))  # any room's token
    bad_room = await http.post(
        f"{ingest.url}/whip/no%20spaces", content=offer, headers={**sdp, **unbound}
    )
    assert bad_room.status_code == 400

    pcmu_only = Publisher()
    for transceiver in pcmu_only.pc.getTransceivers():
        if transceiver.kind == "audio":
            codecs = RTCRtpSender.getCapabilities("audio").codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType == "audio/PCMU"])
        else:
            transceiver.direction = "inactive"
    unsupported = await post(good, await pcmu_only.offer())
    await pcmu_only.close()
    assert unsupported.status_code == 406, unsupported.text
    assert "video/vp8" in unsupported.json()["message"]

    patch = await http.patch(f"{url}/some-session", headers=good)
    assert patch.status_code == 405 and patch.headers["allow"] == "DELETE, OPTIONS"
    missing = await http.delete(f"{url}/no-such-session", headers=good)
    assert missing.status_code == 404

    preflight = await http.options(
        url,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    cross = await http.post(url, content="x", headers={**sdp, "Origin": "https://shop.example"})
    assert "location" in cross.headers["access-control-expose-headers"].lower()


async def test_ingest_answers_503_when_full_or_when_the_relay_is_down(
    http: httpx.AsyncClient, kafka_broker: KafkaBroker
) -> None:
    room = "unavailable"
    offer = await Publisher().offer()
    headers = {"Content-Type": "application/sdp", **bearer(publish_token(room))}
    nowhere = socket.socket()
    nowhere.bind(("127.0.0.1", 0))  # a port nothing listens on
    dead_relay = f"127.0.0.1:{nowhere.getsockname()[1]}"
    for extra in ({"LIVECART_MAX_PUBLISHERS": "0"}, {}):
        env = {
            "LIVECART_BUS": "memory",
            "LIVECART_RELAY_GRPC_ADDRESS": dead_relay,
            "LIVECART_ICE_HOST_ADDRESSES": LOOPBACK,
            **extra,
        }
        with ServiceProcess("livecart_ingest", env) as process:
            response = await http.post(f"{process.url}/whip/{room}", content=offer, headers=headers)
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) >= 1
    nowhere.close()


async def test_the_pipe_api_checks_its_input_and_shrugs_off_garbage(
    http: httpx.AsyncClient, relay: ServiceProcess
) -> None:
    room = "piped"
    video = relay_pb.PipeStream(
        kind="video", payload_type=96, mime_type="video/VP8", clock_rate=90000
    )

    async with grpc.aio.insecure_channel(f"127.0.0.1:{relay.grpc_port}") as channel:
        stub = relay_grpc.RelayServiceStub(channel)

        async def open_pipe(token: str | None, **fields: object) -> relay_pb.OpenPipeResponse:
            request = relay_pb.OpenPipeRequest(
                **{"room_id": room, "stream_id": "s1", "streams": [video], **fields}  # type: ignore[arg-type]
            )
            metadata = () if token is None else (("authorization", f"Bearer {token}"),)
            return await stub.OpenPipe(request, metadata=metadata)

        async def refused(token: str | None, **fields: object) -> grpc.StatusCode:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await open_pipe(token, **fields)
            return caught.value.code()

        publish = publish_token(room)
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        assert await refused(None) == grpc.StatusCode.UNAUTHENTICATED
        assert await refused(play_token(room)) == grpc.StatusCode.PERMISSION_DENIED
        assert await refused(publish, takeover=True) == grpc.StatusCode.PERMISSION_DENIED
        assert await refused(publish, room_id="bad room") == invalid
        assert await refused(publish, stream_id="") == invalid
        assert await refused(publish, streams=[]) == invalid
        odd = relay_pb.PipeStream(kind="data", payload_type=96, mime_type="video/VP8")
        assert await refused(publish, streams=[odd]) == invalid
        h265 = relay_pb.PipeStream(
            kind="video", payload_type=96, mime_type="video/H265", clock_rate=90000
        )
        assert await refused(publish, streams=[h265]) == invalid
        rtcp_like = relay_pb.PipeStream(
            kind="video", payload_type=72, mime_type="video/VP8", clock_rate=90000
        )
        assert await refused(publish, streams=[rtcp_like]) == invalid
        assert await refused(publish, streams=[video, video]) == invalid
        assert await refused(publish, ingest_time_extension_id=15) == invalid

        pipe = await open_pipe(publish)
        again = await open_pipe(publish)  # the same stream id: the same pipe
        assert (again.pipe_id, again.port) == (pipe.pipe_id, pipe.port)
        garbage = [os.urandom(n) for n in (0, 1, 11, 12, 13, 200, 1500)] + [
            b"\x80\xc8" + os.urandom(30),  # RTCP-looking
            rtcp.build_pli(1, 2),
            b"\x80\x21" + os.urandom(200),  # RTP with a payload type nobody declared
            b"\x90\x60\x00\x01" + bytes(8) + b"\xbe\xde\xff\xff",  # extension past the end
        ]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for datagram in garbage * 20:
                udp.sendto(datagram, (pipe.host, pipe.port))
                await asyncio.sleep(0.002)  # not faster than the socket buffer takes them
        assert (await http.get(f"{relay.url}/healthz")).status_code == 200

        async def dropped() -> float:
            metrics = (await http.get(f"{relay.url}/metrics")).text
            line = next(x for x in metrics.splitlines() if x.startswith("livecart_relay_pipe_d"))
            return float(line.split()[-1])

        for _ in range(40):  # counted about once a second
            if await dropped() >= len(garbage) * 20:
                break
            await asyncio.sleep(0.1)
        assert await dropped() >= len(garbage) * 20
        await stub.ClosePipe(
            relay_pb.ClosePipeRequest(room_id=room, pipe_id=pipe.pipe_id, ended=True),
            metadata=(("authorization", f"Bearer {publish}"),),
        )


async def test_a_restarted_relay_gets_the_room_back_from_ingest(
    http: httpx.AsyncClient, peers: list[Publisher | Viewer]
) -> None:
    room = "resilient"
    env = {
        "LIVECART_BUS": "memory",
        "LIVECART_ICE_HOST_ADDRESSES": LOOPBACK,
        "LIVECART_HTTP_PORT": str(free_port()),
        "LIVECART_GRPC_PORT": str(free_port()),
    }
    relay = ServiceProcess("livecart_relay", env).start()
    ingest_env = {
        "LIVECART_BUS": "memory",
        "LIVECART_RELAY_GRPC_ADDRESS": f"127.0.0.1:{relay.grpc_port}",
        "LIVECART_ICE_HOST_ADDRESSES": LOOPBACK,
    }
    try:
        with ServiceProcess("livecart_ingest", ingest_env) as ingest:
            publisher, response = await go_live(http, ingest, room, publish_token(room))
            peers.append(publisher)
            assert response.status_code == 201, response.text
            before = Viewer()
            peers.append(before)
            assert (
                await before.post(http, f"{relay.url}/whep/{room}", play_token(room))
            ).is_success
            await until(before.has(video=10), "a viewer before the restart")

            assert relay.stop() == 0, relay.output  # every room gone with it
            relay = ServiceProcess("livecart_relay", env).start()
            # Ingest notices (ICMP port unreachable on the pipe) and opens the pipe again.
            after = Viewer()
            peers.append(after)
            for _ in range(60):
                answer = await after.post(http, f"{relay.url}/whep/{room}", play_token(room))
                if answer.status_code == 201:
                    break
                assert answer.status_code == 404, answer.text
                after = Viewer()
                peers.append(after)
                await asyncio.sleep(0.5)
            await until(after.has(video=10), "a viewer after the restart", timeout_s=30)
    finally:
        relay.stop()


async def test_each_room_is_piped_to_every_relay_even_one_that_starts_later(
    http: httpx.AsyncClient, peers: list[Publisher | Viewer]
) -> None:
    room = "everywhere"

    def relay_env() -> dict[str, str]:
        return {
            "LIVECART_BUS": "memory",
            "LIVECART_ICE_HOST_ADDRESSES": LOOPBACK,
            "LIVECART_HTTP_PORT": str(free_port()),
            "LIVECART_GRPC_PORT": str(free_port()),
        }

    first, late_env = ServiceProcess("livecart_relay", relay_env()).start(), relay_env()
    relays = [first, ServiceProcess("livecart_relay", relay_env()).start()]
    addresses = [f"127.0.0.1:{r.grpc_port}" for r in relays]
    addresses.append(f"127.0.0.1:{late_env['LIVECART_GRPC_PORT']}")  # not up yet
    ingest_env = {
        "LIVECART_BUS": "memory",
        "LIVECART_RELAY_GRPC_ADDRESS": ",".join(addresses),
        "LIVECART_ICE_HOST_ADDRESSES": LOOPBACK,
    }
    try:
        with ServiceProcess("livecart_ingest", ingest_env) as ingest:
            publisher, response = await go_live(http, ingest, room, publish_token(room))
            peers.append(publisher)
            assert response.status_code == 201, response.text
            relays.append(ServiceProcess("livecart_relay", late_env).start())
            viewers = []
            for relay in relays:
                viewer = Viewer()
                peers.append(viewer)
                for _ in range(60):  # the late relay gets the room within a sync round
                    answer = await viewer.post(http, f"{relay.url}/whep/{room}", play_token(room))
                    if answer.status_code == 201:
                        break
                    assert answer.status_code == 404, answer.text
                    viewer = Viewer()
                    peers.append(viewer)
                    await asyncio.sleep(0.5)
                viewers.append(viewer)
            for viewer in viewers:
                await until(viewer.has(video=10), "a viewer on each relay", timeout_s=30)

            ended = await http.delete(
                ingest.url + response.headers["location"], headers=bearer(publish_token(room))
            )
            assert ended.status_code == 204
            for viewer in viewers:  # the stream ended on every relay
                await until(lambda v=viewer: v.pc.connectionState == "closed", "viewers closed")  # type: ignore[misc]
    finally:
        for relay in relays:
            relay.stop()


def without(sdp: str, *prefixes: str) -> str:
    """`sdp` without the lines starting with any of `prefixes`."""
    return "".join(line for line in sdp.splitlines(keepends=True) if not line.startswith(prefixes))


def unknown_audio_codecs(sdp: str) -> str:
    """The audio m-line offers only AMR-WB, which aiortc does not know."""
    lines = []
    for line in sdp.splitlines(keepends=True):
        if line.startswith("m=audio"):
            line = " ".join(line.split()[:3]) + " 96\r\n"
        elif line.startswith("a=rtpmap:96 opus"):
            line = "a=rtpmap:96 AMR-WB/16000\r\n"
        elif line.startswith(("a=rtpmap:9 ", "a=rtpmap:0 ", "a=rtpmap:8 ")):
            continue
        lines.append(line)
    return "".join(lines)


OFFER_FAULTS = {
    "codecs aiortc lacks": (unknown_audio_codecs, 406, "audio m-line"),
    "a mid outside BUNDLE": (lambda s: s.replace("a=mid:1", "a=mid:zz"), 400, "BUNDLE"),
    "no BUNDLE group": (lambda s: without(s, "a=group:"), 400, "BUNDLE"),
    "no fingerprint": (lambda s: without(s, "a=fingerprint:"), 400, "a=fingerprint"),
    "unknown fingerprint hash": (
        lambda s: s.replace("a=fingerprint:sha-", "a=fingerprint:md-"),
        400,
        "a=fingerprint",
    ),
    "no ICE password": (lambda s: without(s, "a=ice-pwd:"), 400, "ice-pwd"),
    "no setup role": (lambda s: without(s, "a=setup:"), 400, "a=setup"),
    "setup passive": (lambda s: s.replace("a=setup:actpass", "a=setup:passive"), 400, "passive"),
    "sends nothing": (lambda s: s.replace("a=sendrecv", "a=recvonly"), 400, "sends nothing"),
}


@pytest.mark.parametrize("fault", list(OFFER_FAULTS))
async def test_an_offer_the_session_could_not_use_is_refused_with_the_reason(
    http: httpx.AsyncClient, ingest: ServiceProcess, fault: str
) -> None:
    spoil, status, says = OFFER_FAULTS[fault]
    room = "spoilt-offer"
    publisher = Publisher()
    offer = spoil(await publisher.offer())
    await publisher.close()
    response = await http.post(
        f"{ingest.url}/whip/{room}",
        content=offer,
        headers={"Content-Type": "application/sdp", **bearer(publish_token(room))},
    )
    assert response.status_code == status, response.text
    assert says in response.json()["message"], response.text


async def test_a_session_that_cannot_connect_frees_its_slot_at_once(
    http: httpx.AsyncClient, peers: list[Publisher | Viewer]
) -> None:
    env = {
        "LIVECART_BUS": "memory",
        "LIVECART_ICE_HOST_ADDRESSES": LOOPBACK,
        "LIVECART_MAX_PUBLISHERS": "1",
        "LIVECART_CONNECT_TIMEOUT_S": "2",
    }
    relay_env = {"LIVECART_BUS": "memory", "LIVECART_ICE_HOST_ADDRESSES": LOOPBACK}
    relay_env |= {"LIVECART_HTTP_PORT": str(free_port()), "LIVECART_GRPC_PORT": str(free_port())}
    with ServiceProcess("livecart_relay", relay_env) as relay:
        env["LIVECART_RELAY_GRPC_ADDRESS"] = f"127.0.0.1:{relay.grpc_port}"
        with ServiceProcess("livecart_ingest", env) as ingest:
            # A fingerprint-less offer would leave DTLS nothing to check: refused, no slot.
            fingerprintless = Publisher()
            peers.append(fingerprintless)
            offer = without(await fingerprintless.offer(), "a=fingerprint:")
            headers = {"Content-Type": "application/sdp", **bearer(publish_token("a"))}
            refused = await http.post(f"{ingest.url}/whip/a", content=offer, headers=headers)
            assert refused.status_code == 400, refused.text
            # A publisher that posts its offer and never takes the answer holds the one slot
            # only until the connect timeout.
            vanished = Publisher()
            peers.append(vanished)
            answered = await http.post(
                f"{ingest.url}/whip/a", content=await vanished.offer(), headers=headers
            )
            assert answered.status_code == 201, answered.text
            started = asyncio.get_running_loop().time()
            for _ in range(100):
                other = Publisher()
                peers.append(other)
                response = await other.post(http, f"{ingest.url}/whip/b", publish_token("b"))
                if response.status_code == 201:
                    break
                assert response.status_code == 503, response.text
                await asyncio.sleep(0.25)
            waited = asyncio.get_running_loop().time() - started
            assert response.status_code == 201, response.text
            assert waited < 8, f"the slot came free after {waited:.1f} s"
            await until(
                lambda: other.pc.connectionState == "connected", "the second publisher to connect"
            )


def test_an_ice_address_this_host_lacks_is_refused_at_start_up() -> None:
    env = {"LIVECART_BUS": "memory", "LIVECART_ICE_HOST_ADDRESSES": '["198.51.100.77"]'}
    with pytest.raises(AssertionError) as caught:
        ServiceProcess("livecart_ingest", env).start()
    assert "LIVECART_ICE_HOST_ADDRESSES: '198.51.100.77'" in str(caught.value)


async def test_a_huge_offer_is_answered_413_every_time_not_reset(
    http: httpx.AsyncClient, ingest: ServiceProcess
) -> None:
    room = "huge"
    headers = {"Content-Type": "application/sdp", **bearer(publish_token(room))}
    body = b"v=0\r\n" + b"a=x\r\n" * (2 * 1024 * 1024)  # about 10 MB

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: found while reading
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    for declared in (True, False, True, False, True, False):
        content = body if declared else chunked()
        async with httpx.AsyncClient(timeout=20) as fresh:  # a new connection each time
            response = await fresh.post(
                f"{ingest.url}/whip/{room}", content=content, headers=headers
            )
        assert response.status_code == 413, response.text
        assert response.json()["error"] == "payload_too_large"


async def test_the_served_openapi_describes_whip(
    http: httpx.AsyncClient, ingest: ServiceProcess
) -> None:
    spec = (await http.get(f"{ingest.url}/openapi.json")).json()
    post = spec["paths"]["/whip/{room}"]["post"]
    assert "application/sdp" in post["requestBody"]["content"]
    assert {"Location", "Link"} <= post["responses"]["201"]["headers"].keys()
    expected = {"201", "400", "401", "403", "406", "409", "413", "503"}
    assert expected <= post["responses"].keys()
    refused = await http.get(f"{ingest.url}/whip/a-room/a-session")
    assert refused.status_code == 405 and refused.headers["allow"] == "DELETE, OPTIONS"
