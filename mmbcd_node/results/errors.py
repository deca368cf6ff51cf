"""The one error of the result builders."""

from __future__ import annotations


class ResultError(ValueError):
    """A result object cannot be built from the given input; the message says why."""
