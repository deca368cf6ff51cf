"""The one error of the configuration."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names key and source."""
