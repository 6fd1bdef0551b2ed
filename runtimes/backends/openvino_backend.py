"""OpenVINO backend: IR (.xml + .bin) on CPU/GPU/NPU (the `device` string is passed through).

Compiled with an f32 inference-precision hint: on CPUs with AMX, OpenVINO otherwise runs bf16 and
moves logits by up to ~0.1, which is not what the artifact was verified as.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, ModelFileError
from .base import Backend


class OpenVinoBackend(Backend):
    """`openvino.Core.compile_model` behind the backend interface, with shared input/output buffers."""

    name = "openvino"

    def __init__(self, path: Path, threads: int | None = None, device: str | None = None) -> None:
        super().__init__(path, threads, device)
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendUnavailableError("the openvino backend", "openvino", "openvino") from exc
        if not self.path.with_suffix(".bin").is_file():
            raise ModelFileError(f"{self.path}: its weights file {self.path.with_suffix('.bin').name} is missing")
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            core = ov.Core()
            self._compiled = core.compile_model(core.read_model(str(self.path)), device or "CPU", config)
        except RuntimeError as exc:
            raise ModelFileError(f"{self.path}: OpenVINO cannot load it ({str(exc).strip().splitlines()[0]})") from exc
        self._request = self._compiled.create_infer_request()
        self._inputs = tuple(i.get_any_name() for i in self._compiled.inputs)
        self._outputs = tuple(o.get_any_name() for o in self._compiled.outputs)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self._request.infer({name: np.ascontiguousarray(feeds[name]) for name in self._inputs}, share_inputs=True)
        return {name: np.array(result[name]) for name in self._outputs}
