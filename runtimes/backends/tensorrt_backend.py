"""TensorRT backend: a serialized engine run through polygraphy's TrtRunner (device buffers, dynamic batch).

Engines are tied to the GPU model and the TensorRT version they were built with; `check_engine_target`
refuses one built elsewhere with the command that rebuilds it on this device.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cuda_device import cuda_device
from ..errors import BackendUnavailableError, BundleError, ModelFileError
from .base import Backend

MAX_BATCH = 64  # the batch axis' optimization profile is 1..MAX_BATCH (optimized for 8)


class EngineMismatchError(BundleError):
    """A TensorRT engine built for another GPU or another TensorRT version."""


def current_target() -> dict:
    """The TensorRT version and GPU of this machine, as the manifest records them at build time."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError("the tensorrt backend", "tensorrt", "tensorrt") from exc
    gpu = cuda_device()
    if gpu is None:
        raise BackendUnavailableError("the tensorrt backend (no CUDA GPU found)", "tensorrt", "tensorrt")
    return {"tensorrt": trt.__version__, "gpu": gpu.to_dict()}


def check_engine_target(file: Path, bundle: Path, recorded: dict, current: dict) -> None:
    """Raise EngineMismatchError unless the engine was built for this GPU and TensorRT version."""
    want, have = recorded.get("gpu", {}), current["gpu"]
    gpu_same = want.get("name") == have["name"] and want.get("compute_capability") == have["compute_capability"]
    version_same = recorded.get("tensorrt") == current["tensorrt"]
    if not (gpu_same and version_same):
        raise EngineMismatchError(
            f"{file}: built for {want.get('name', '?')} (compute {want.get('compute_capability', '?')}) with TensorRT "
            f"{recorded.get('tensorrt', '?')}; this machine has {have['name']} (compute {have['compute_capability']}) with "
            f"TensorRT {current['tensorrt']}. Rebuild it here: edgemm build-engine {bundle}"
        )


class TensorRtBackend(Backend):
    """A TensorRT engine behind the backend interface (`device` is not used: the engine's GPU runs it)."""

    name = "tensorrt"

    def __init__(self, path: Path, threads: int | None = None, device: str | None = None) -> None:
        super().__init__(path, threads, device)
        try:
            from polygraphy.backend.trt import TrtRunner, engine_from_bytes
        except ImportError as exc:
            raise BackendUnavailableError("the tensorrt backend", "polygraphy", "tensorrt") from exc
        try:
            engine = engine_from_bytes(self.path.read_bytes())
        except Exception as exc:  # TensorRT reports a bad or foreign engine as a failed deserialization
            raise ModelFileError(f"{self.path}: TensorRT cannot load this engine ({str(exc).strip().splitlines()[0] if str(exc).strip() else 'deserialization failed'})") from exc
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        import tensorrt as trt

        self._inputs = tuple(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self._outputs = tuple(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self._runner = TrtRunner(engine)
        self._runner.activate()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))
        parts = []
        for start in range(0, n, MAX_BATCH):
            chunk = {name: np.ascontiguousarray(feeds[name][start : start + MAX_BATCH]) for name in self._inputs}
            out = self._runner.infer(chunk)
            parts.append({name: np.array(out[name]) for name in self._outputs})
        return {name: np.concatenate([p[name] for p in parts]) for name in self._outputs}

    def __del__(self) -> None:
        runner = getattr(self, "_runner", None)
        if runner is not None and runner.is_active:
            runner.deactivate()
