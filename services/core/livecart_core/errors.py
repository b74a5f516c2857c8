"""Errors the runtime turns into one clear line at start-up."""

from __future__ import annotations


class StartupError(Exception):
    """A service cannot start; the message names the setting or dependency at fault."""


class ConfigError(StartupError):
    """A setting is malformed or unsafe."""
