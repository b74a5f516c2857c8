"""Schemathesis hooks for tests/test_openapi_fuzz.py (loaded through SCHEMATHESIS_HOOKS): SDP
offers (WHIP/WHEP request bodies) are text, sent as the generated string."""

from __future__ import annotations

import schemathesis

schemathesis.serializer.alias("application/sdp", "text/plain")
