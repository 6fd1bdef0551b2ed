"""LiteRT (TFLite) backend: `ai_edge_litert`'s interpreter, or the legacy `tflite_runtime` when only it imports.

Full-integer models take int8 inputs and give int8 outputs: this backend quantizes the float inputs
with each tensor's scale and zero point and dequantizes the outputs, so callers always see float32.
Models with a fixed batch (edgemm's TFLite export is batch 1) run larger batches row by row.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, ModelFileError
from .base import Backend


def interpreter_class():
    """`Interpreter` from ai-edge-litert, else from tflite-runtime (legacy), else a one-line install hint."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise BackendUnavailableError("the litert backend", "ai_edge_litert", "litert") from exc
    return Interpreter


def to_model_dtype(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float input → the tensor's dtype (quantized with its scale/zero point when it is integer)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return np.ascontiguousarray(x, dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def from_model_dtype(y: np.ndarray, detail: dict) -> np.ndarray:
    """Model output → float32 (dequantized when it is integer)."""
    if np.dtype(detail["dtype"]).kind == "f":
        return y.astype(np.float32, copy=True)
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


class LiteRtBackend(Backend):
    """A `.tflite` model's default signature behind the backend interface (XNNPACK on CPU)."""

    name = "litert"

    def __init__(self, path: Path, threads: int | None = None, device: str | None = None) -> None:
        super().__init__(path, threads, device)
        interpreter = interpreter_class()
        try:
            self._interpreter = interpreter(model_path=str(self.path), num_threads=threads or None)
            signatures = self._interpreter.get_signature_list()
            key = next(iter(signatures))
            self._runner = self._interpreter.get_signature_runner(key)
        except (ValueError, RuntimeError, StopIteration) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else "no signature"
            raise ModelFileError(f"{self.path}: LiteRT cannot load it ({message}); is the file truncated?") from exc
        self._in = self._runner.get_input_details()
        self._out = self._runner.get_output_details()
        self._inputs = tuple(signatures[key]["inputs"])
        self._outputs = tuple(signatures[key]["outputs"])
        self.batch = int(next(iter(self._in.values()))["shape"][0])

    @property
    def integer_io(self) -> bool:
        """Whether the model takes quantized (integer) inputs."""
        return any(np.dtype(d["dtype"]).kind != "f" for d in self._in.values())

    def _run_rows(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        quantized = {name: to_model_dtype(feeds[name], self._in[name]) for name in self._inputs}
        result = self._runner(**quantized)
        return {name: from_model_dtype(result[name], self._out[name]) for name in self._outputs}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))
        if n == self.batch:
            return self._run_rows(feeds)
        rows = [self._run_rows({k: v[i : i + self.batch] for k, v in feeds.items()}) for i in range(0, n, self.batch)]
        return {name: np.concatenate([r[name] for r in rows]) for name in self._outputs}
