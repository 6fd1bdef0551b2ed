"""Backend registry: which backend runs which artifact format, what it needs, and the `auto` choice."""
from __future__ import annotations

import importlib
import importlib.util
import platform
from dataclasses import dataclass
from pathlib import Path

from ..errors import BackendUnavailableError, BundleError
from .base import Backend


def module_available(name: str) -> bool:
    """Whether `import name` can find the package (a broken or hidden package counts as absent)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class BackendInfo:
    """One row of the backend table."""

    name: str
    formats: tuple[str, ...]
    package: str  # import name that must be present
    extra: str  # pip extra that installs it
    target: str  # "module:Class", imported only when used
    fallbacks: tuple[str, ...] = ()  # legacy packages that can stand in for `package`

    def installed(self) -> bool:
        return any(module_available(p) for p in (self.package, *self.fallbacks))

    def open(self, path: Path, threads: int | None = None, device: str | None = None) -> Backend:
        if not self.installed():
            raise BackendUnavailableError(f"the {self.name} backend", self.package, self.extra)
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module, __name__), cls)(path, threads=threads, device=device)


BACKENDS: dict[str, BackendInfo] = {
    info.name: info
    for info in (
        BackendInfo("onnxruntime", ("onnx",), "onnxruntime", "onnx", ".onnxruntime_backend:OnnxRuntimeBackend"),
        BackendInfo("openvino", ("openvino",), "openvino", "openvino", ".openvino_backend:OpenVinoBackend"),
        BackendInfo("litert", ("tflite",), "ai_edge_litert", "litert", ".litert_backend:LiteRtBackend", ("tflite_runtime",)),
        BackendInfo("tensorrt", ("tensorrt",), "tensorrt", "tensorrt", ".tensorrt_backend:TensorRtBackend"),
    )
}


def backend_for(name: str) -> BackendInfo:
    """The registry row for a backend name, or a BundleError listing the known ones."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise BundleError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}") from None


def format_backend(fmt: str) -> BackendInfo:
    """The backend that runs artifacts of format `fmt`."""
    return next(b for b in BACKENDS.values() if fmt in b.formats)


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def preference(machine: str | None = None, vendor: str | None = None, gpu: bool | None = None) -> list[str]:
    """Backend names in the order `auto` tries them on this machine: TensorRT where an NVIDIA GPU is,
    OpenVINO on Intel x86 CPUs, LiteRT on ARM, then the portable ONNX Runtime and the rest."""
    machine = (machine or platform.machine()).lower()
    vendor = vendor if vendor is not None else _cpu_vendor()
    if gpu is None:
        from ..cuda_device import cuda_device

        gpu = module_available("tensorrt") and cuda_device() is not None
    order = ["tensorrt"] if gpu else []
    if machine in ("x86_64", "amd64") and "intel" in vendor.lower():
        order.append("openvino")
    if machine in ("aarch64", "arm64") or machine.startswith("armv"):
        order.append("litert")
    order.append("onnxruntime")
    return order + [name for name in BACKENDS if name not in order]


__all__ = ["BACKENDS", "Backend", "BackendInfo", "backend_for", "format_backend", "module_available", "preference"]
