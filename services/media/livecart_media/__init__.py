"""Livecart's media plumbing shared by ingest and relay: RTP/RTCP on bytes (`rtp`), raw-RTP
WebRTC peers over aiortc (`webrtc`), the WHIP/WHEP HTTP conventions (`whipwhep`) and the
plain RTP/UDP pipe from ingest to relay (`pipe`)."""
