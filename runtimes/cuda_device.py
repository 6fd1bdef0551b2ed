"""Which NVIDIA GPU this is (name, compute capability), through the CUDA driver library, no packages.

Every machine with an NVIDIA driver (desktop or Jetson) has `libcuda`; elsewhere this returns None.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass

CC_MAJOR, CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR


@dataclass(frozen=True)
class CudaDevice:
    """One CUDA device as TensorRT engines care about it."""

    index: int
    name: str
    compute_capability: str  # "8.7"

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "compute_capability": self.compute_capability}


def _driver() -> ctypes.CDLL | None:
    for name in ("libcuda.so.1", "libcuda.so", ctypes.util.find_library("cuda"), "nvcuda.dll"):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def cuda_device(index: int = 0) -> CudaDevice | None:
    """The CUDA device `index`, or None when there is no driver or no such device."""
    lib = _driver()
    if lib is None or lib.cuInit(0) != 0:
        return None
    device = ctypes.c_int()
    if lib.cuDeviceGet(ctypes.byref(device), index) != 0:
        return None
    name = ctypes.create_string_buffer(256)
    major, minor = ctypes.c_int(), ctypes.c_int()
    if (
        lib.cuDeviceGetName(name, len(name), device) != 0
        or lib.cuDeviceGetAttribute(ctypes.byref(major), CC_MAJOR, device) != 0
        or lib.cuDeviceGetAttribute(ctypes.byref(minor), CC_MINOR, device) != 0
    ):
        return None
    return CudaDevice(index, name.value.decode(errors="replace"), f"{major.value}.{minor.value}")
