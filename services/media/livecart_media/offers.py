"""What a WHIP or WHEP offer must hold before it is answered.

aiortc answers some offers it cannot carry out: without ``a=fingerprint`` its DTLS start
asserts in a task nobody awaits, and the session holds a slot until ICE consent runs out;
an m-line outside the BUNDLE group gets a transport of its own that nothing taps; a
codec it lacks on any m-line fails the whole offer as an ``OperationError``. Each of those
is refused here, before a peer connection exists, with the reason: 400 for an offer that
breaks the WebRTC rules (RFC 8829, 8842, 8843), 406 for one whose media Livecart cannot
take.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from aiortc import RTCSessionDescription
from aiortc import sdp as aiortc_sdp
from aiortc.codecs import CODECS
from aiortc.rtcdtlstransport import X509_DIGEST_ALGORITHMS
from aiortc.rtcpeerconnection import find_common_codecs

from livecart_core.errors import InvalidArgument
from livecart_media.errors import UnsupportedCodecs

Role = Literal["publish", "play"]
"""``publish``: a WHIP offer, which must send; ``play``: a WHEP offer, which must receive."""

# What aiortc's SDP parser raises for text it cannot read (it asserts and indexes freely).
_UNPARSABLE = (ValueError, AssertionError, IndexError, KeyError, TypeError, AttributeError)
_MEDIA = ("audio", "video")
_WANTED = {"publish": ("sendonly", "sendrecv"), "play": ("recvonly", "sendrecv")}


def check_offer(
    offer: RTCSessionDescription, role: Role, mimes: Sequence[str]
) -> aiortc_sdp.SessionDescription:
    """The parsed `offer`, if it can be answered for `role` with one of `mimes` per kind.

    Raises InvalidArgument (400) naming the first rule it breaks, UnsupportedCodecs (406)
    when an m-line offers no codec aiortc knows at all (which of `mimes` are taken is the
    answering code's choice: `livecart_media.webrtc`).
    """
    try:
        description = aiortc_sdp.SessionDescription.parse(offer.sdp)
    except _UNPARSABLE as exc:
        raise InvalidArgument(f"malformed SDP offer: {exc or type(exc).__name__}") from None
    media = [m for m in description.media if m.kind in _MEDIA]
    if not media:
        raise InvalidArgument("the offer has no audio or video m-line")
    for line in media:
        _check_transport(line)
    _check_bundle(description, media)
    _check_media(media, role, mimes)
    return description


def _name(line: aiortc_sdp.MediaDescription) -> str:
    return f"the {line.kind} m-line (mid {line.rtp.muxId!r})"


def _check_bundle(
    description: aiortc_sdp.SessionDescription, media: list[aiortc_sdp.MediaDescription]
) -> None:
    # RFC 9725 §4.2: every m-line in one BUNDLE group. The tap and the senders sit on that
    # group's transport; an m-line outside it would get a transport nothing taps.
    mids = [line.rtp.muxId for line in description.media]
    if any(not mid for mid in mids) or len(set(mids)) != len(mids):
        raise InvalidArgument("every m-line needs its own a=mid (RFC 8843)")
    bundles = [group for group in description.group if group.semantic == "BUNDLE"]
    if len(bundles) != 1:
        raise InvalidArgument("the offer needs one a=group:BUNDLE naming every m-line")
    bundled = bundles[0].items
    unknown = [mid for mid in bundled if mid not in mids]
    if unknown:
        raise InvalidArgument(f"a=group:BUNDLE names mid {unknown[0]!r}, which no m-line has")
    for line in media:
        if line.rtp.muxId not in bundled:
            raise InvalidArgument(f"{_name(line)} is not in a=group:BUNDLE")


def _check_transport(line: aiortc_sdp.MediaDescription) -> None:
    name = _name(line)
    if line.ice is None or not line.ice.usernameFragment or not line.ice.password:
        raise InvalidArgument(f"{name} has no a=ice-ufrag or a=ice-pwd (ICE credentials)")
    if line.dtls is None:
        raise InvalidArgument(f"{name} has no a=setup (DTLS role)")
    # An offerer is actpass or active (RFC 8842 §5.2): with passive both ends would wait.
    if line.dtls.role not in ("auto", "client"):
        raise InvalidArgument(f"{name} has a=setup:passive; offer a=setup:actpass")
    if not any(f.algorithm.lower() in X509_DIGEST_ALGORITHMS for f in line.dtls.fingerprints):
        raise InvalidArgument(
            f"{name} has no a=fingerprint with one of "
            + ", ".join(X509_DIGEST_ALGORITHMS)
            + ": DTLS cannot check the peer"
        )
    if not line.rtcp_mux:
        raise InvalidArgument(f"{name} has no a=rtcp-mux")


def _check_media(
    media: list[aiortc_sdp.MediaDescription], role: Role, mimes: Sequence[str]
) -> None:
    for line in media:
        if not find_common_codecs(CODECS[line.kind], line.rtp.codecs):
            raise UnsupportedCodecs(
                f"{_name(line)} offers no codec this server knows; it takes "
                + ", ".join(m for m in mimes if m.startswith(line.kind))
            )
    wanted = _WANTED[role]
    used = [line for line in media if line.direction in wanted]
    if not used:
        directions = " or ".join(sorted({str(line.direction) for line in media}))
        verb, need = ("sends", "sendonly") if role == "publish" else ("receives", "recvonly")
        raise InvalidArgument(
            f"the offer {verb} nothing: its m-lines are {directions}, "
            f"and a {role} offer needs a {need} or sendrecv one"
        )
