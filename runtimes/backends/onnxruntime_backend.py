"""ONNX Runtime backend (CPU by default; other execution providers by `device`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, ModelFileError
from .base import Backend


class OnnxRuntimeBackend(Backend):
    """`onnxruntime.InferenceSession` behind the backend interface."""

    name = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None, device: str | None = None) -> None:
        super().__init__(path, threads, device)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError("the onnxruntime backend", "onnxruntime", "onnx") from exc
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers = [device] if device else ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own (pybind) exception types
            raise ModelFileError(f"{self.path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from exc
        self._inputs = tuple(i.name for i in self._session.get_inputs())
        self._outputs = tuple(o.name for o in self._session.get_outputs())

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = self._session.run(None, {name: feeds[name] for name in self._inputs})
        except Exception as exc:  # onnxruntime's own (pybind) exception types
            raise ModelFileError(f"{self.path}: onnxruntime failed to run it ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from exc
        return dict(zip(self._outputs, values))
