"""OpenVINO backend: IR (.xml + .bin) on CPU/GPU/NPU (the `device` string is passed through).

Compiled with an f32 inference-precision hint: on CPUs with AMX, OpenVINO otherwise runs bf16 and
moves logits by up to ~0.1, which is not what the artifact was verified as. The IR's batch axis is
dynamic; each batch size seen is also compiled with static shapes (1.5x faster at batch 1 on the
default student), up to a few sizes, after which the dynamic model serves the rest.

On ARM, an INT8 IR (FakeQuantize ops) is compiled with OpenVINO's low-precision transformations off, so its
FakeQuantize ops run as written, in float: with them on, OpenVINO 2026.4's ARM CPU plugin answered one constant
class for the default student's NNCF INT8 IR on emulated Neoverse-N1 and Cortex-A72 (the same IR is right on
x86, and right on ARM with them off, matching x86 to 1e-6; onnxruntime's and LiteRT's int8 kernels are right
under the same emulation). The on-target check still judges whatever runs.

An IR with fp16-compressed weights runs only on the dynamic-shape model: compiled with static shapes, OpenVINO
2026.4's x86 CPU plugin answered the example user model's fp16 IR (a transformer: a learned query broadcast to
the batch, scaled-dot-product attention) right on the first call and wrong (logits off by up to 6) on every
later one; the dynamic model is right on every call, as the fp32 IR is either way.
"""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, ModelFileError
from .base import Backend

STATIC_BATCHES = 4  # batch sizes compiled with static shapes per model


class OpenVinoBackend(Backend):
    """`openvino.Core.compile_model` behind the backend interface, with shared input buffers."""

    name = "openvino"

    def __init__(self, path: Path, threads: int | None = None, device: str | None = None) -> None:
        super().__init__(path, threads, device)
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendUnavailableError("the openvino backend", "openvino", "openvino") from exc
        if not self.path.with_suffix(".bin").is_file():
            raise ModelFileError(f"{self.path}: its weights file {self.path.with_suffix('.bin').name} is missing")
        self._config = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
        self._core = ov.Core()
        try:
            self._model = self._core.read_model(str(self.path))
            ops = self._model.get_ops()
            if self._on_arm() and any(op.get_type_name() == "FakeQuantize" for op in ops):
                self._config["LP_TRANSFORMS_MODE"] = "NO"  # see the module docstring
            compiled = self._compile(self._model)
        except RuntimeError as exc:
            raise ModelFileError(f"{self.path}: OpenVINO cannot load it ({str(exc).strip().splitlines()[0]})") from exc
        self._dynamic = compiled.create_infer_request()
        self._static: dict[int, object] = {}
        self._static_shapes = not any(op.get_type_name() == "Constant" and op.get_element_type().to_string() == "f16" for op in ops)
        self._inputs = tuple(i.get_any_name() for i in compiled.inputs)
        self._outputs = tuple(o.get_any_name() for o in compiled.outputs)

    @staticmethod
    def _on_arm() -> bool:
        machine = platform.machine().lower()
        return machine in ("aarch64", "arm64") or machine.startswith("arm")

    def _compile(self, model):
        try:
            return self._core.compile_model(model, self.device or "CPU", self._config)
        except RuntimeError:
            if self._config.pop("LP_TRANSFORMS_MODE", None) is None:  # an OpenVINO without that (internal) property
                raise
            return self._core.compile_model(model, self.device or "CPU", self._config)

    def _request(self, batch: int):
        """The infer request compiled for exactly `batch` rows (static shapes), or the dynamic one."""
        request = self._static.get(batch)
        if request is None:
            if len(self._static) >= STATIC_BATCHES or not self._static_shapes:
                return self._dynamic
            model = self._model.clone()
            model.reshape({i.get_any_name(): [batch, *list(i.get_partial_shape())[1:]] for i in model.inputs})
            request = self._static[batch] = self._compile(model).create_infer_request()
        return request

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = len(feeds[self._inputs[0]])
        result = self._request(batch).infer({name: np.ascontiguousarray(feeds[name]) for name in self._inputs}, share_inputs=True)
        return {name: np.array(result[name]) for name in self._outputs}
