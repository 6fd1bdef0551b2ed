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

An IR with fp16-compressed weights is compiled with OpenVINO's snippets (its JIT fusion of subgraphs) off: with them
on and static shapes, OpenVINO 2026.4's x86 CPU plugin answered the example user model's fp16 IR (a transformer: a
learned query broadcast to the batch, scaled-dot-product attention) right on the first call and wrong (logits off
by up to 2.6) on every later one, while `SNIPPETS_MODE=DISABLE` is right on every call (within 5e-7 of the dynamic
model) and no slower on the default student (static fp16 IR, batch 1: 0.19 ms either way; the dynamic model, which
fp16 IRs were left on before, 0.23 ms — `benchmark_app`'s figure for the file is static). An OpenVINO that cannot
turn snippets off runs fp16 IRs on the dynamic-shape model.

Configured as `benchmark_app -hint latency` configures the CPU (see `edgemm.vendor_bench`), except for pinning:
PERFORMANCE_HINT=LATENCY (one stream; OpenVINO 2026.4's CPU default already, set so another default cannot change
it), INFERENCE_NUM_THREADS=`threads`, ENABLE_CPU_PINNING=False on CPU (the tool's latency run pins). Pinning did not
make the isolated call faster here (within noise) and made a live loop slower: a call, then ~0.3 ms of numpy
preprocessing, 2 cores, AMD EPYC AVX2, totals 0.59–0.64 ms unpinned vs 0.61–0.75 pinned (fp32 IR), as pinned
threads cannot move off a core the app's other threads or other processes want.

What made the call slow was Python, not the plugin: `infer({name: array}, share_inputs=True)` wraps every input in a
new Tensor and builds result dicts per call. Each request now keeps its input tensors (the static request's own,
or arrays bound once per batch size to the dynamic one): feeds are copied in (by assignment where the dtypes
match: ~2 µs for the default student's three inputs, `np.copyto` ~2.7; `np.copyto` casts the others), `infer()`
runs with no arguments and the outputs are copied out of the request's output tensors. Batch 1, 2 threads, medians
of alternating rounds: fp32 IR 0.28 → 0.20 ms, int8 IR 0.35 → 0.27 ms, fp16 IR 0.34 → 0.26 ms. What remains over `benchmark_app`'s median (0.155 / 0.19–0.22 ms) is the Python call itself:
the tool reports the request's in-C++ latency; a bare `request.infer()` from Python is ~20 µs more and the
copies in and out ~20 µs more — about the tool's own Python loop (1000 / its FPS: 0.19–0.21 ms for the fp32 IR).
An fp16 IR now runs with static shapes too (above), and the outputs are the arrays `infer()` already copies out
(its result, in output order) instead of a second copy from the output tensors (~4 µs a call).
"""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, InputError, ModelFileError
from .base import Backend

STATIC_BATCHES = 4  # batch sizes compiled with static shapes per model
OPTIONAL_PROPERTIES = ("LP_TRANSFORMS_MODE", "SNIPPETS_MODE")  # CPU plugin settings dropped where a build refuses them


class _Bound:
    """An infer request whose input tensors are this backend's to fill: `run` copies the feeds in and calls `infer()`
    with no arguments (no input Tensor built per call); the outputs are the copies `infer()` returns."""

    def __init__(self, request, names: tuple[str, ...], ov=None, batch: int | None = None, rows=None) -> None:
        self.request = request
        if batch is None:  # static shapes: the request's own input memory
            self._tensors = [request.get_tensor(name) for name in names]
        else:  # the dynamic model: tensors of this batch over arrays kept here, set once per batch size
            self._tensors = [ov.Tensor(np.empty((batch, *rows[name][0]), rows[name][1]), shared_memory=True) for name in names]
            for name, tensor in zip(names, self._tensors):
                request.set_tensor(name, tensor)
        self.inputs = [t.data for t in self._tensors]

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        for target, value in zip(self.inputs, feeds):
            if target.shape != value.shape:  # assignment would broadcast
                raise InputError(f"input of shape {value.shape} where the model takes {target.shape}")
            if target.dtype == value.dtype:
                target[...] = value  # (half np.copyto's cost at this size)
            else:
                np.copyto(target, value, casting="same_kind")
        return list(self.request.infer().values())  # fresh arrays: infer() copies the outputs out (share_outputs=False)


class _Passing:
    """A request given its inputs with each call (a model with dynamic dimensions past the batch)."""

    def __init__(self, request, names: tuple[str, ...], outputs: tuple[str, ...]) -> None:
        self.request, self.names, self.outputs = request, names, outputs

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        result = self.request.infer({name: np.ascontiguousarray(v) for name, v in zip(self.names, feeds)}, share_inputs=True)
        return [np.array(result[name]) for name in self.outputs]


class OpenVinoBackend(Backend):
    """`openvino.Core.compile_model` behind the backend interface; each request keeps its own input tensors."""

    name = "openvino"

    def __init__(self, path: Path, threads: int | None = None, device: str | None = None) -> None:
        super().__init__(path, threads, device)
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendUnavailableError("the openvino backend", "openvino", "openvino") from exc
        self._ov = ov
        if not self.path.with_suffix(".bin").is_file():
            raise ModelFileError(f"{self.path}: its weights file {self.path.with_suffix('.bin').name} is missing")
        self._config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}  # see the module docstring
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
        cpu = (device or "CPU").upper() == "CPU"
        if cpu:
            self._config["ENABLE_CPU_PINNING"] = False
        self._core = ov.Core()
        try:
            self._model = self._core.read_model(str(self.path))
            ops = self._model.get_ops()
            if cpu and self._on_arm() and any(op.get_type_name() == "FakeQuantize" for op in ops):
                self._config["LP_TRANSFORMS_MODE"] = "NO"  # see the module docstring
            self._compressed = any(op.get_type_name() == "Constant" and op.get_element_type().to_string() == "f16" for op in ops)
            if cpu and self._compressed:
                self._config["SNIPPETS_MODE"] = "DISABLE"  # see the module docstring
            compiled = self._compile(self._model)
        except RuntimeError as exc:
            raise ModelFileError(f"{self.path}: OpenVINO cannot load it ({str(exc).strip().splitlines()[0]})") from exc
        self._inputs = tuple(i.get_any_name() for i in compiled.inputs)
        self._outputs = tuple(o.get_any_name() for o in compiled.outputs)
        rows = [list(i.get_partial_shape())[1:] for i in compiled.inputs]
        self._rows = None  # per input: (shape of one row, dtype); None when a dimension past the batch is dynamic
        if all(d.is_static for row in rows for d in row):
            self._rows = {i.get_any_name(): (tuple(d.get_length() for d in row), i.get_element_type().to_dtype()) for i, row in zip(compiled.inputs, rows)}
        self._dynamic_request = compiled.create_infer_request()
        self._dynamic: _Bound | _Passing | None = None  # bound to the batch size it last ran
        self._static: dict[int, _Bound | _Passing] = {}

    @property
    def _static_shapes(self) -> bool:
        """Whether batch sizes get static-shape compiles: not for an fp16 IR with snippets on (the module docstring)."""
        return not self._compressed or "SNIPPETS_MODE" in self._config

    @staticmethod
    def _on_arm() -> bool:
        machine = platform.machine().lower()
        return machine in ("aarch64", "arm64") or machine.startswith("arm")

    def _compile(self, model):
        """Compile with this backend's settings; where OpenVINO refuses them, without one, then without both, of the
        optional ones (OPTIONAL_PROPERTIES: an OpenVINO or device that lacks them): the settings that compiled are kept
        for the next compiles. The first error is raised when none compiles."""
        optional = [key for key in OPTIONAL_PROPERTIES if key in self._config]
        first = None
        for drop in dict.fromkeys([(), *((key,) for key in optional), tuple(optional)]):
            config = {k: v for k, v in self._config.items() if k not in drop}
            try:
                compiled = self._core.compile_model(model, self.device or "CPU", config)
            except RuntimeError as exc:
                first = first or exc
                continue
            self._config = config
            return compiled
        raise first

    def _runner(self, request, batch: int | None = None) -> _Bound | _Passing:
        if self._rows is None:
            return _Passing(request, self._inputs, self._outputs)
        return _Bound(request, self._inputs, self._ov, batch, self._rows)

    def _request(self, batch: int) -> _Bound | _Passing:
        """The request compiled for exactly `batch` rows (static shapes), else the dynamic one (bound to `batch`)."""
        runner = self._static.get(batch)
        if runner is not None:
            return runner
        if len(self._static) < STATIC_BATCHES and self._static_shapes:
            model = self._model.clone()
            model.reshape({i.get_any_name(): [batch, *list(i.get_partial_shape())[1:]] for i in model.inputs})
            compiled = self._compile(model)
            if self._static_shapes:  # (still: that compile did not have to turn snippets back on)
                runner = self._static[batch] = self._runner(compiled.create_infer_request())
                return runner
        if self._dynamic is None or (isinstance(self._dynamic, _Bound) and len(self._dynamic.inputs[0]) != batch):
            self._dynamic = self._runner(self._dynamic_request, batch)
        return self._dynamic

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = [feeds[name] for name in self._inputs]
        return dict(zip(self._outputs, self._request(len(values[0])).run(values)))
