"""Livecart ingest: publisher connections (WHIP, RTMP), stream-key checks and codec normalisation."""
