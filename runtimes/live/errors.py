"""Errors of the live sources."""
from __future__ import annotations

from ..errors import EdgemmError


class SourceUnavailableError(EdgemmError):
    """A camera or microphone that cannot be opened (names the source)."""
