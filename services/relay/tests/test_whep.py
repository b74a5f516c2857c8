"""WHEP playback against the relay service's own HTTP app (in process) with real aiortc
peers on loopback: a publisher joins a room through `MediaRooms` (its WHIP endpoint is
ingest's), viewers POST offers, decode what they get and DELETE their sessions."""

from __future__ import annotations

import re
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)

from livecart_core.auth import TokenAuthority
from livecart_core.service import Service
from livecart_core.testing import TEST_AUTH_SECRET
from livecart_media import webrtc
from livecart_media.errors import Unavailable
from livecart_media.testing import Viewer
from livecart_media.whipwhep import RoomKey
from livecart_relay.app import SERVICE, media_rooms
from livecart_relay.rooms import MediaRooms, viewers_bitrate
from livecart_relay.settings import RelaySettings

from .conftest import until

pytestmark = pytest.mark.timeout(60)

TENANT, ROOM = "shop-1", "live"
CAPACITY = 3
CONNECT_TIMEOUT_S = 6.0
FRAMES = 30
ORIGIN = "https://shop.example"
TOKENS = TokenAuthority(TEST_AUTH_SECRET)


def peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def token(
    scopes: tuple[str, ...] = ("play",), room: str | None = ROOM, tenant: str = TENANT
) -> str:
    return TOKENS.issue(tenant, "viewer-1", scopes, room=room)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture(autouse=True, scope="module")
def loopback_only() -> Iterator[None]:
    with webrtc.pinned_host_addresses(["127.0.0.1"]):  # for the test's own peers
        yield


@pytest.fixture(scope="module")
async def relay() -> AsyncIterator[Service]:
    settings = RelaySettings(
        bus="memory",
        auth_secret=TEST_AUTH_SECRET,
        http_host="127.0.0.1",
        http_port=0,
        grpc_host="127.0.0.1",
        grpc_port=0,
        max_subscribers=CAPACITY,
        retry_after_s=7,
        ice_host_addresses=["127.0.0.1"],
        connect_timeout_s=CONNECT_TIMEOUT_S,
    )
    service = Service(SERVICE, settings)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


@pytest.fixture(scope="module")
async def rooms(relay: Service) -> AsyncIterator[MediaRooms]:
    """The relay's rooms, with a publisher in (TENANT, ROOM) sending VP8 and Opus."""
    rooms = media_rooms(relay)
    publisher = peer()
    publisher.addTrack(VideoStreamTrack())
    publisher.addTrack(AudioStreamTrack())
    await publisher.setLocalDescription(await publisher.createOffer())
    answer = await rooms.publish(RoomKey(TENANT, ROOM), publisher.localDescription)
    await publisher.setRemoteDescription(answer)
    try:
        yield rooms
    finally:
        await publisher.close()


@pytest.fixture
async def client(relay: Service, rooms: MediaRooms) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=relay.http_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        yield client
    room = rooms.get(RoomKey(TENANT, ROOM))
    assert room is not None
    for session_id in list(room.sessions):  # what a failed test left: not the next one's
        await room.remove(session_id)


@pytest.fixture
async def viewers() -> AsyncIterator[list[Viewer]]:
    made: list[Viewer] = []
    try:
        yield made
    finally:
        for viewer in made:
            await viewer.close()


async def post_offer(
    client: httpx.AsyncClient, sdp: str | bytes, headers: dict[str, str], room: str = ROOM
) -> httpx.Response:
    return await client.post(
        f"/whep/{room}", content=sdp, headers={"Content-Type": "application/sdp", **headers}
    )


async def watch(client: httpx.AsyncClient, viewers: list[Viewer]) -> tuple[Viewer, str]:
    """A viewer connected through WHEP, and its session URL."""
    viewer = Viewer()
    viewers.append(viewer)
    response = await post_offer(client, await viewer.offer("video", "audio"), bearer(token()))
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/sdp"
    await viewer.pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
    return viewer, response.headers["location"]


async def test_a_viewer_decodes_the_room_and_leaves_with_delete(
    client: httpx.AsyncClient, rooms: MediaRooms, viewers: list[Viewer]
) -> None:
    viewer, location = await watch(client, viewers)
    assert re.fullmatch(rf"/whep/{ROOM}/[A-Za-z0-9_-]{{16,}}", location)
    await until(lambda: viewer.video_frames >= FRAMES, f"{FRAMES} decoded video frames")
    await until(lambda: viewer.audio_frames >= 10, "decoded audio frames")
    assert rooms.subscriber_count == 1

    response = await client.delete(location, headers=bearer(token()))
    assert response.status_code == 204
    assert rooms.subscriber_count == 0
    again = await client.delete(location, headers=bearer(token()))
    assert again.status_code == 404 and again.json()["error"] == "not_found"


async def test_a_session_closed_by_the_viewer_leaves_the_room(
    client: httpx.AsyncClient, rooms: MediaRooms, viewers: list[Viewer]
) -> None:
    viewer, _ = await watch(client, viewers)
    await until(lambda: viewer.video_frames >= 1, "a frame")
    room = rooms.get(RoomKey(TENANT, ROOM))
    assert room is not None and len(room.sessions) == 1
    (session,) = room.sessions.values()
    await session.pc.close()  # as when ICE consent fails: the room drops it by itself
    await until(lambda: rooms.subscriber_count == 0, "the closed session to leave")


def receiver_report(media_ssrc: int, fraction_lost: int) -> bytes:
    # RFC 3550 §6.4.2: one report block about `media_ssrc`.
    block = struct.pack("!IB3xIIII", media_ssrc, fraction_lost, 0, 0, 0, 0)
    return struct.pack("!BBHI", 0x81, 201, 7, 0x1234) + block


async def test_a_viewer_losing_half_of_the_video_is_dropped_and_a_lossy_one_kept(
    client: httpx.AsyncClient, rooms: MediaRooms, viewers: list[Viewer]
) -> None:
    for _ in range(2):
        await watch(client, viewers)
    room = rooms.get(RoomKey(TENANT, ROOM))
    assert room is not None
    hopeless, lossy = room.sessions.values()
    for session, lost in ((hopeless, 150), (lossy, 30)):  # 59 % and 12 % lost
        video = session.subscriber.senders["video"]
        for _ in range(3):
            await session.subscriber.handle_rtcp(receiver_report(video.ssrc, lost))
    await rooms.sweep(time.monotonic())
    assert list(room.sessions.values()) == [lossy]
    await until(lambda: hopeless.pc.connectionState == "closed", "the dropped viewer closed")


async def test_over_capacity_is_503_with_retry_after(
    client: httpx.AsyncClient, rooms: MediaRooms, viewers: list[Viewer]
) -> None:
    locations = [(await watch(client, viewers))[1] for _ in range(CAPACITY)]
    assert rooms.subscriber_count == CAPACITY
    extra = Viewer()
    viewers.append(extra)
    response = await post_offer(client, await extra.offer("video"), bearer(token()))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"] == "over_capacity"
    for location in locations:
        assert (await client.delete(location, headers=bearer(token()))).status_code == 204
    assert rooms.subscriber_count == 0


async def test_only_what_the_relay_can_forward_is_answered(
    client: httpx.AsyncClient, viewers: list[Viewer]
) -> None:
    pcmu = Viewer()
    viewers.append(pcmu)
    response = await post_offer(
        client, await pcmu.offer("audio", audio_codec="audio/PCMU"), bearer(token())
    )
    assert response.status_code == 406
    body = response.json()
    assert body["error"] == "unsupported_codecs" and "audio/opus" in body["message"]


BROKEN_M_LINE = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video x UDP\r\n"
NO_ICE = BROKEN_M_LINE.replace("x UDP", "9 UDP/TLS/RTP/SAVPF 96") + "a=rtpmap:96 VP8/90000\r\n"


@pytest.mark.parametrize(
    ("headers", "room", "body", "status", "error", "says"),
    [
        ({}, ROOM, None, 401, "unauthenticated", "Bearer"),
        (bearer("not-a-jwt"), ROOM, None, 401, "unauthenticated", "invalid token"),
        (bearer(token(("publish",))), ROOM, None, 403, "permission_denied", "'play'"),
        (bearer(token(room="other")), ROOM, None, 403, "permission_denied", "'other'"),
        (bearer(token(room=None)), "empty-room", None, 404, "not_found", "no publisher"),
        (bearer(token(room=None, tenant="t2")), ROOM, None, 404, "not_found", "no publisher"),
        (bearer(token(room=None)), "x" * 201, None, 400, "invalid_argument", "room id"),
        (bearer(token()), ROOM, "hello", 400, "invalid_argument", "v=0"),
        (bearer(token()), ROOM, b"v=0\r\nm=\xff\xfe", 400, "invalid_argument", "UTF-8"),
        (bearer(token()), ROOM, BROKEN_M_LINE, 400, "invalid_argument", "malformed SDP"),
        (bearer(token()), ROOM, NO_ICE, 400, "invalid_argument", "ICE"),
        (bearer(token()), ROOM, "v=0\r\nm=" + "a" * 65536, 413, "payload_too_large", "65536"),
    ],
)
async def test_bad_offers_are_refused_with_the_reason(
    client: httpx.AsyncClient,
    viewers: list[Viewer],
    headers: dict[str, str],
    room: str,
    body: str | bytes | None,
    status: int,
    error: str,
    says: str,
) -> None:
    if body is None:
        viewer = Viewer()
        viewers.append(viewer)
        body = await viewer.offer("video", "audio")
    response = await post_offer(client, body, headers, room=room)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert says in response.json()["message"]


async def test_a_body_that_is_not_sdp_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(f"/whep/{ROOM}", json={"sdp": "v=0"}, headers=bearer(token()))
    assert response.status_code == 400
    assert "application/sdp" in response.json()["message"]


async def test_sessions_refuse_patch_and_unknown_deletes(client: httpx.AsyncClient) -> None:
    patch = await client.patch(
        f"/whep/{ROOM}/abc",
        content="a=end-of-candidates\r\n",
        headers={"Content-Type": "application/trickle-ice-sdpfrag", **bearer(token())},
    )
    assert patch.status_code == 405
    assert "DELETE" in patch.headers["allow"]
    assert "trickle ICE" in patch.json()["message"]
    unknown = await client.delete(f"/whep/{ROOM}/abc", headers=bearer(token()))
    assert unknown.status_code == 404
    unauthenticated = await client.delete(f"/whep/{ROOM}/abc")
    assert unauthenticated.status_code == 401
    options = await client.options(f"/whep/{ROOM}")
    assert options.status_code == 204 and "POST" in options.headers["allow"]


async def test_browsers_from_another_origin_may_play(
    client: httpx.AsyncClient, viewers: list[Viewer]
) -> None:
    preflight = await client.options(
        f"/whep/{ROOM}",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", ORIGIN)
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "DELETE" in preflight.headers["access-control-allow-methods"]

    viewer = Viewer()
    viewers.append(viewer)
    sdp = await viewer.offer("video")
    response = await post_offer(client, sdp, {"Origin": ORIGIN, **bearer(token())})
    assert response.status_code == 201
    assert "location" in response.headers["access-control-expose-headers"].lower()
    location = response.headers["location"]
    refused = await post_offer(client, sdp, {"Origin": ORIGIN})
    assert refused.status_code == 401 and "access-control-allow-origin" in refused.headers
    deleted = await client.delete(location, headers={"Origin": ORIGIN, **bearer(token())})
    assert deleted.status_code == 204


def test_the_room_asks_for_what_most_viewers_take() -> None:
    assert viewers_bitrate([]) is None and viewers_bitrate([None, None]) is None
    assert viewers_bitrate([2_000_000, None]) == 2_000_000
    # Ten viewers: the weakest one is left out.
    assert viewers_bitrate([300_000] + [2_000_000] * 9) == 2_000_000
    assert viewers_bitrate([300_000, 400_000] + [2_000_000] * 8) == 400_000


def _sendonly(sdp: str) -> str:
    return sdp.replace("a=recvonly", "a=sendonly")


def _mid_outside_bundle(sdp: str) -> str:
    return sdp.replace("a=mid:1", "a=mid:zz")


def _unknown_video_codecs(sdp: str) -> str:
    # Only H.265 on the video m-line: aiortc knows no codec of it at all.
    return sdp.replace("VP8/90000", "H265/90000").replace("H264/90000", "H265/90000")


@pytest.mark.parametrize(
    ("spoil", "status", "says"),
    [
        (_sendonly, 400, "receives nothing"),
        (_mid_outside_bundle, 400, "BUNDLE"),
        (_unknown_video_codecs, 406, "video m-line"),
    ],
)
async def test_an_offer_that_would_get_nothing_is_refused(
    client: httpx.AsyncClient,
    rooms: MediaRooms,
    viewers: list[Viewer],
    spoil: Callable[[str], str],
    status: int,
    says: str,
) -> None:
    viewer = Viewer()
    viewers.append(viewer)
    response = await post_offer(
        client, spoil(await viewer.offer("video", "audio")), bearer(token())
    )
    assert response.status_code == status, response.text
    assert says in response.json()["message"]
    assert rooms.subscriber_count == 0


async def test_a_viewer_that_never_connects_is_closed_after_the_connect_timeout(
    client: httpx.AsyncClient, rooms: MediaRooms, viewers: list[Viewer]
) -> None:
    viewer = Viewer()
    viewers.append(viewer)
    response = await post_offer(client, await viewer.offer("video"), bearer(token()))
    assert response.status_code == 201, response.text  # its answer is never taken
    assert rooms.subscriber_count == 1
    started = time.monotonic()
    await until(lambda: rooms.subscriber_count == 0, "the unconnected viewer to leave")
    assert time.monotonic() - started >= CONNECT_TIMEOUT_S - 1


async def test_an_answer_without_ice_candidates_is_503_not_a_dead_session() -> None:
    # An address this host lacks: aioice binds nothing, so the answer would have no candidate.
    stranded = MediaRooms(max_subscribers=1, ice_host_addresses=["198.51.100.77"])
    publisher = peer()
    publisher.addTrack(VideoStreamTrack())
    await publisher.setLocalDescription(await publisher.createOffer())
    try:
        with pytest.raises(Unavailable) as caught:
            await stranded.publish(RoomKey(TENANT, "stranded"), publisher.localDescription)
    finally:
        await publisher.close()
        await stranded.close()
    assert "no ICE candidate" in str(caught.value)
    assert caught.value.http_status == 503
    assert stranded.get(RoomKey(TENANT, "stranded")) is None


async def test_every_refused_method_names_what_is_allowed_as_options_does(
    client: httpx.AsyncClient,
) -> None:
    auth = bearer(token())
    for path, methods in (
        (f"/whep/{ROOM}", ("GET", "PUT", "PATCH", "DELETE")),
        (
            f"/whep/{ROOM}/abc",
            ("GET", "PUT", "POST", "PATCH"),
        ),
    ):
        options = await client.options(path)
        assert options.status_code == 204
        allowed = options.headers["allow"]
        for method in methods:
            refused = await client.request(method, path, headers=auth)
            assert refused.status_code == 405, (method, path, refused.text)
            assert refused.headers["allow"] == allowed, (method, path)
            assert refused.json()["error"] == "method_not_allowed"
            assert method not in allowed.split(", ")
    endpoint = await client.options(f"/whep/{ROOM}")
    assert endpoint.headers["accept-post"] == "application/sdp"


async def test_the_served_openapi_describes_whep(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    post = spec["paths"]["/whep/{room}"]["post"]
    assert "application/sdp" in post["requestBody"]["content"]
    created = post["responses"]["201"]
    assert "application/sdp" in created["content"]
    assert {"Location", "Link"} <= created["headers"].keys()
    assert {"400", "401", "403", "404", "406", "413", "503"} <= post["responses"].keys()
    assert "Retry-After" in post["responses"]["503"]["headers"]
    session = spec["paths"]["/whep/{room}/{session}"]
    assert "204" in session["delete"]["responses"]
    # PATCH (trickle ICE) is answered 405 but is no operation of the session's: Allow and the
    # schema list the same methods.
    assert "patch" not in session
    assert "Allow" in session["options"]["responses"]["204"]["headers"]


async def test_a_viewer_whose_dtls_fails_leaves_at_once(
    client: httpx.AsyncClient, rooms: MediaRooms, viewers: list[Viewer]
) -> None:
    viewer = Viewer()
    viewers.append(viewer)
    offer = await viewer.offer("video")
    # Well-formed, but not its certificate's: the relay's DTLS check of the viewer fails.
    forged = re.sub(r"(a=fingerprint:sha-256) \S+", r"\1 " + ":".join(["AB"] * 32), offer)
    forged = "".join(
        line
        for line in forged.splitlines(keepends=True)
        if not line.startswith(("a=fingerprint:sha-384", "a=fingerprint:sha-512"))
    )
    response = await post_offer(client, forged, bearer(token()))
    assert response.status_code == 201, response.text
    started = time.monotonic()
    await viewer.pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
    await until(lambda: rooms.subscriber_count == 0, "the failed viewer to leave")
    assert time.monotonic() - started < CONNECT_TIMEOUT_S, "left only at the connect timeout"
