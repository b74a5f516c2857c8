"""Livecart control: tenants, API keys, rooms, JWT tokens, webhooks and the edge directory."""
