"""Real browsers on the media path: headless Chromium (Debian's, with a fake camera and
microphone) goes live from ingest's publish page over WHIP, and another Chromium page plays the
room from the relay's play page over WHEP. Ingest and relay run as their own processes on
loopback, ingest piping RTP to the relay as deployed. `make browsers` installs Chromium."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from itertools import pairwise
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from livecart_core.auth import TokenAuthority
from livecart_core.testing import TEST_AUTH_SECRET, ServiceProcess

pytestmark = pytest.mark.timeout(60)

CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright never downloads a browser here
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--allow-loopback-in-peer-connection",  # or WebRTC ignores 127.0.0.1
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Two pages at once: neither may be throttled as a background page.
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
]
LOOPBACK = {"LIVECART_BUS": "memory", "LIVECART_ICE_HOST_ADDRESSES": '["127.0.0.1"]'}
TENANT = f"shop-{uuid.uuid4().hex[:6]}"
TOKENS = TokenAuthority(TEST_AUTH_SECRET)
FRAMES = 30
WAIT_S = 20  # a WebRTC step on a loaded 2-core machine

# The test's own count of frames the <video> element presents, apart from the page's counter.
COUNT_FRAMES = f"""(video, wanted) => new Promise((resolve, reject) => {{
  const seen = [];
  setTimeout(() => reject(new Error(`${{seen.length}} frames in {WAIT_S} s`)), {WAIT_S * 1000});
  const onFrame = (_now, frame) => {{
    seen.push([frame.presentedFrames, frame.width, frame.height]);
    if (seen.length >= wanted) resolve(seen);
    else video.requestVideoFrameCallback(onFrame);
  }};
  video.requestVideoFrameCallback(onFrame);
}})"""


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is not installed: run `make browsers`", pytrace=False)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(scope="module")
def relay() -> Iterator[ServiceProcess]:
    with ServiceProcess("livecart_relay", LOOPBACK) as process:
        yield process


@pytest.fixture(scope="module")
def ingest(relay: ServiceProcess) -> Iterator[ServiceProcess]:
    env = {**LOOPBACK, "LIVECART_RELAY_GRPC_ADDRESS": f"127.0.0.1:{relay.grpc_port}"}
    with ServiceProcess("livecart_ingest", env) as process:
        yield process


@pytest.fixture
async def pages(chromium: Browser) -> AsyncIterator[list[Page]]:
    """Pages opened by a test, each in its own browser context; closed after it."""
    opened: list[Page] = []
    yield opened
    for page in opened:
        await page.context.close()


async def open_page(chromium: Browser, pages: list[Page], url: str) -> Page:
    page = await chromium.new_page()
    pages.append(page)
    await page.goto(url)
    return page


def token(room: str, *scopes: str) -> str:
    return TOKENS.issue(TENANT, "host" if "publish" in scopes else "viewer", scopes, room=room)


async def livecart(page: Page) -> dict[str, Any]:
    """What the page exposes as ``window.livecart``."""
    state: dict[str, Any] = await page.evaluate("({...window.livecart})")
    return state


async def until(page: Page, condition: str, timeout_s: float = WAIT_S) -> None:
    """Wait for a JS condition on the page; fail with the page's state, at once if the page
    has given up (``error``, ``denied``) without the condition holding."""
    settled = f"({condition}) || ['error', 'denied'].includes(window.livecart.state)"
    try:
        await page.wait_for_function(settled, timeout=timeout_s * 1000, polling=100)
    except PlaywrightTimeoutError:
        pass
    if not await page.evaluate(condition):
        raise AssertionError(f"{condition!r} never held: {await livecart(page)}")


@pytest.mark.parametrize(("codec", "mime"), [("vp8", "video/VP8"), ("h264", "video/H264")])
async def test_a_show_goes_live_in_one_browser_and_plays_in_another(
    chromium: Browser,
    relay: ServiceProcess,
    ingest: ServiceProcess,
    pages: list[Page],
    codec: str,
    mime: str,
) -> None:
    room = f"show-{uuid.uuid4().hex[:8]}"
    viewer = await open_page(
        chromium, pages, f"{relay.url}/play/{room}?token={token(room, 'play')}"
    )
    await until(viewer, "window.livecart.state === 'waiting'")
    await expect(viewer.get_by_role("status")).to_contain_text("offline")

    host = await open_page(
        chromium, pages, f"{ingest.url}/publish/{room}?token={token(room, 'publish')}&codec={codec}"
    )
    await until(host, "window.livecart.state === 'ready'")
    await host.get_by_role("button", name="Go live").click()
    await until(host, "window.livecart.state === 'live'")
    await expect(host.get_by_role("status")).to_contain_text("You are live")

    # The viewer was waiting: it plays as soon as the show is live, without a reload.
    await until(viewer, "window.livecart.state === 'playing'")
    video = viewer.locator("video")
    seen = await video.evaluate(COUNT_FRAMES, FRAMES)
    presented = [count for count, _, _ in seen]
    assert all(a < b for a, b in pairwise(presented)), presented
    assert all(width > 0 and height > 0 for _, width, height in seen), seen
    size = await video.evaluate("v => [v.videoWidth, v.videoHeight]")
    assert size[0] > 0 and size[1] > 0
    state = await livecart(viewer)
    assert state["framesRendered"] >= FRAMES and state["videoWidth"] > 0
    assert (await livecart(host))["codec"] == mime

    await host.get_by_role("button", name="Stop").click()
    await until(host, "window.livecart.state === 'stopped' && window.livecart.session === null")
    # The relay closes the room with the broadcast: the viewer is told the show is offline.
    await until(viewer, "window.livecart.state === 'waiting'")
    await expect(viewer.get_by_role("status")).to_contain_text("offline")


@pytest.mark.parametrize(
    ("scopes", "says"),
    [(None, "invalid or has expired"), (("publish",), "doesn't let you watch")],
)
async def test_the_player_explains_a_refused_pass(
    chromium: Browser,
    relay: ServiceProcess,
    pages: list[Page],
    scopes: tuple[str, ...] | None,
    says: str,
) -> None:
    room = f"show-{uuid.uuid4().hex[:8]}"
    bad = "not-a-token" if scopes is None else token(room, *scopes)
    viewer = await open_page(chromium, pages, f"{relay.url}/play/{room}?token={bad}")
    await until(viewer, "window.livecart.state === 'denied'")
    await expect(viewer.get_by_role("status")).to_contain_text(says)
    assert (await livecart(viewer))["attempts"] == 1  # a refused pass is not retried


async def test_the_publisher_explains_a_refused_pass(
    chromium: Browser, ingest: ServiceProcess, pages: list[Page]
) -> None:
    room = f"show-{uuid.uuid4().hex[:8]}"
    host = await open_page(
        chromium, pages, f"{ingest.url}/publish/{room}?token={token(room, 'play')}"
    )
    await until(host, "window.livecart.state === 'ready'")
    await host.get_by_role("button", name="Go live").click()
    await until(host, "window.livecart.state === 'denied'")
    await expect(host.get_by_role("status")).to_contain_text("doesn't allow broadcasting")
    await expect(host.get_by_role("button", name="Go live")).to_be_enabled()
