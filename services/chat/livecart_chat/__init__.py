"""Livecart chat: danmaku rooms over WebSocket: fan-out, batching, moderation, history."""
