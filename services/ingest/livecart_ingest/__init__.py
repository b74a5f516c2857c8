"""Livecart ingest: publisher connections (WHIP, RTMP), stream-key checks, codec normalisation."""
