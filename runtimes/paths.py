"""Where edgemm keeps files outside a bundle."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$EDGEMM_CACHE`, else `~/.cache/edgemm`: data sets, teacher outputs, on-target checks of read-only bundles."""
    return Path(os.environ.get("EDGEMM_CACHE", Path.home() / ".cache" / "edgemm"))
