"""Backend registry: which backend runs which artifact format, what it needs, and the `auto` choice."""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import BackendUnavailableError, BundleError
from .base import Backend


@dataclass(frozen=True)
class BackendInfo:
    """One row of the backend table."""

    name: str
    formats: tuple[str, ...]
    package: str  # import name that must be present
    extra: str  # pip extra that installs it
    target: str  # "module:Class", imported only when used

    def installed(self) -> bool:
        try:
            return importlib.util.find_spec(self.package) is not None
        except (ImportError, ValueError):
            return False

    def open(self, path: Path, threads: int | None = None, device: str | None = None) -> Backend:
        if not self.installed():
            raise BackendUnavailableError(f"the {self.name} backend", self.package, self.extra)
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module, __name__), cls)(path, threads=threads, device=device)


BACKENDS: dict[str, BackendInfo] = {
    info.name: info
    for info in (
        BackendInfo("onnxruntime", ("onnx",), "onnxruntime", "onnx", ".onnxruntime_backend:OnnxRuntimeBackend"),
    )
}


def backend_for(name: str) -> BackendInfo:
    """The registry row for a backend name, or a BundleError listing the known ones."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise BundleError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}") from None


def auto_order() -> list[BackendInfo]:
    """Installed backends, most preferred first (accelerator runtimes before the portable fallback)."""
    return [info for info in BACKENDS.values() if info.installed()]


__all__ = ["BACKENDS", "Backend", "BackendInfo", "auto_order", "backend_for"]
