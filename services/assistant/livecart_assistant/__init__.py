"""Livecart assistant: the AI shopping assistant and the virtual host."""
