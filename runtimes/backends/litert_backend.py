"""LiteRT (TFLite) backend: ai-edge-litert's `Interpreter` (XNNPACK on CPU), or the legacy `tflite_runtime`'s when only
it imports.

Full-integer models take int8 inputs and give int8 outputs: this backend quantizes the float inputs
with each tensor's scale and zero point and dequantizes the outputs, so callers always see float32.
Models with a fixed batch (edgemm's TFLite export is batch 1) run larger batches row by row.

A call is `set_tensor` on the signature's inputs, `invoke()`, and one read of its outputs (`tensor()` accessors,
concatenated into one float32 row). The signature runner used before resized and re-allocated the inputs on every
call, and (de)quantized each tensor in ~5 numpy calls of its own; integer inputs are now quantized together in one
preallocated row (six numpy calls for all of them) and integer outputs dequantized together (two), with the same
float32 arithmetic as `to_model_dtype`/`from_model_dtype` element by element (divide by the scale, round half to
even, add the zero point, clip; subtract the zero point, multiply by the scale): answers are unchanged bit for
bit. Batch 1, 2 threads, AMD EPYC AVX2, medians of alternating rounds: int8 0.20 → 0.145 ms, fp32 0.080 → 0.076 ms
(`litert-benchmark`: 0.11 and 0.07 ms). Keeping the Python between two `invoke()`s short matters beyond its own
cost: XNNPACK's workers spin only briefly, and an `invoke()` that follows ~40 µs or more of Python finds them
asleep and pays to wake them (~20–40 µs here) — which `litert-benchmark`, timing back-to-back calls on pre-filled
int8 buffers, never does; that and the (de)quantization, which it does not do, are what is left for int8.

Why not ai-edge-litert 2.3's `CompiledModel`, which `litert-benchmark` runs (see `edgemm.vendor_bench`): measured
on the same files (batch 1, 2 threads, AMD EPYC AVX2, alternating rounds), its per-call path (TensorBuffer
`write`, `run_by_name`, `read`) was 5–20 µs slower than the Interpreter's and no better in a live loop (it runs the
same XNNPACK kernels: answers equal to the Interpreter's bit for bit); its zero-copy host-memory buffers
(`TensorBuffer.create_from_host_memory`) carry no shape, and `run_by_name` rejects them for a model with fixed
input shapes ("Cannot auto-resize tensor image: no dims_signature exists"); creating it registers the NPU/GPU
accelerators and logs ~10 INFO lines per model; and `CompiledModel.from_file` on a truncated file crashed the
process (SIGSEGV) where the Interpreter raises ValueError. XNNPACK's thread pool has no spin setting reachable from
Python; in the live-loop measurement (a call, then ~0.3 ms of numpy) its workers did not slow the numpy step.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, InputError, ModelFileError
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


class _Quantizer:
    """`to_model_dtype` for every integer input of one dtype at once: the inputs are gathered into one float32 row, and
    divided by a row of their scales, rounded, offset by a row of their zero points and clipped there (each element
    sees the same float32 operations as in `to_model_dtype`, so the same integers), in buffers made once: six numpy
    calls per call instead of five per input."""

    def __init__(self, names: list[str], shapes: dict[str, tuple[int, ...]], details: dict[str, dict]) -> None:
        self.names = names
        self.dtype = np.dtype(details[names[0]]["dtype"])
        sizes = [int(np.prod(shapes[n])) for n in names]
        self.scales = np.concatenate([np.full(k, details[n]["quantization"][0], np.float32) for n, k in zip(names, sizes)])
        self.zeros = np.concatenate([np.full(k, details[n]["quantization"][1], np.float32) for n, k in zip(names, sizes)])
        info = np.iinfo(self.dtype)
        self.low, self.high = float(info.min), float(info.max)
        self.row = np.empty(sum(sizes), np.float32)
        self.out = np.empty(sum(sizes), self.dtype)
        ends = np.cumsum(sizes)
        self.views = {n: self.out[end - k : end].reshape(shapes[n]) for n, k, end in zip(names, sizes, ends)}

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The inputs quantized, as views of one buffer (overwritten by the next call)."""
        for name, view in self.views.items():
            if feeds[name].shape != view.shape:  # the flat row below would take any layout of the right size
                raise InputError(f"input {name!r} of shape {feeds[name].shape} where the model takes {view.shape}")
        s = self.row
        np.concatenate([feeds[n].reshape(-1) for n in self.names], out=s)
        np.divide(s, self.scales, out=s)
        np.rint(s, out=s)  # what np.round does with decimals=0
        np.add(s, self.zeros, out=s)
        s.clip(self.low, self.high, out=s)
        np.copyto(self.out, s, casting="unsafe")
        return self.views


class _InterpreterRunner:
    """One batch through the Interpreter: `set_tensor` on the signature's inputs, `invoke()`, its outputs read."""

    def __init__(self, path: Path, threads: int | None) -> None:
        self.interpreter = interpreter_class()(model_path=str(path), num_threads=threads or None)
        signatures = self.interpreter.get_signature_list()
        key = next(iter(signatures))
        self.interpreter.allocate_tensors()
        runner = self.interpreter.get_signature_runner(key)
        self.in_details = runner.get_input_details()
        self.out_details = runner.get_output_details()
        self.inputs = tuple(signatures[key]["inputs"])
        self.outputs = tuple(signatures[key]["outputs"])
        # Tensor indices are the primary subgraph's: run with set_tensor/invoke, not the signature runner (which resizes
        # and re-allocates every call, and whose hold on the interpreter makes `invoke()` refuse to run).
        self.direct = getattr(runner, "_subgraph_index", 0) == 0
        self.runner = None if self.direct else runner
        del runner
        in_shapes = {n: tuple(int(d) for d in self.in_details[n]["shape"]) for n in self.inputs}
        integer: dict[np.dtype, list[str]] = {}  # integer inputs by dtype, each group quantized in one go
        for n in self.inputs:
            if np.dtype(self.in_details[n]["dtype"]).kind != "f":
                integer.setdefault(np.dtype(self.in_details[n]["dtype"]), []).append(n)
        self.quantizers = [_Quantizer(names, in_shapes, self.in_details) for names in integer.values()]
        self.float_inputs = [n for n in self.inputs if np.dtype(self.in_details[n]["dtype"]).kind == "f"]
        # Outputs: read through the interpreter's tensor() accessors into one float32 row, dequantized there with rows of
        # zero points and scales (0 and 1 for float outputs: exact), then handed out as views of that fresh row.
        self.out_tensors = [self.interpreter.tensor(self.out_details[n]["index"]) for n in self.outputs]
        shapes = [tuple(int(d) for d in self.out_details[n]["shape"]) for n in self.outputs]
        sizes = [int(np.prod(shape)) for shape in shapes]
        quantized = [np.dtype(self.out_details[n]["dtype"]).kind != "f" for n in self.outputs]
        self.out_zeros = np.concatenate([np.full(k, self.out_details[n]["quantization"][1] if q else 0, np.float32) for n, k, q in zip(self.outputs, sizes, quantized)])
        self.out_scales = np.concatenate([np.full(k, self.out_details[n]["quantization"][0] if q else 1, np.float32) for n, k, q in zip(self.outputs, sizes, quantized)])
        self.dequantize = any(quantized)
        ends = np.cumsum(sizes)
        self.out_slices = [(n, slice(end - k, end), shape) for n, k, end, shape in zip(self.outputs, sizes, ends, shapes)]

    @property
    def batch(self) -> int:
        return int(next(iter(self.in_details.values()))["shape"][0])

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.direct:
            result = self.runner(**{name: to_model_dtype(feeds[name], self.in_details[name]) for name in self.inputs})
            return {name: from_model_dtype(result[name], self.out_details[name]) for name in self.outputs}
        for quantize in self.quantizers:
            for name, value in quantize(feeds).items():
                self.interpreter.set_tensor(self.in_details[name]["index"], value)
        for name in self.float_inputs:
            self.interpreter.set_tensor(self.in_details[name]["index"], np.ascontiguousarray(feeds[name], self.in_details[name]["dtype"]))
        self.interpreter.invoke()
        row = np.concatenate([tensor().reshape(-1) for tensor in self.out_tensors], dtype=np.float32)  # a copy: no view outlives the call
        if self.dequantize:  # from_model_dtype's float32 arithmetic, element by element
            np.subtract(row, self.out_zeros, out=row)
            np.multiply(row, self.out_scales, out=row)
        return {name: row[where].reshape(shape) for name, where, shape in self.out_slices}


class LiteRtBackend(Backend):
    """A `.tflite` model's first signature behind the backend interface (XNNPACK on CPU)."""

    name = "litert"

    def __init__(self, path: Path, threads: int | None = None, device: str | None = None) -> None:
        super().__init__(path, threads, device)
        try:
            self._runner = _InterpreterRunner(self.path, threads)
        except (ValueError, RuntimeError, StopIteration) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else "no signature"
            raise ModelFileError(f"{self.path}: LiteRT cannot load it ({message}); is the file truncated?") from exc
        self._inputs, self._outputs = self._runner.inputs, self._runner.outputs
        self._in, self._out = self._runner.in_details, self._runner.out_details
        self.batch = self._runner.batch

    @property
    def integer_io(self) -> bool:
        """Whether the model takes quantized (integer) inputs."""
        return any(np.dtype(d["dtype"]).kind != "f" for d in self._in.values())

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))
        if n == self.batch:
            return self._runner(feeds)
        rows = [self._runner({k: v[i : i + self.batch] for k, v in feeds.items()}) for i in range(0, n, self.batch)]
        return {name: np.concatenate([r[name] for r in rows]) for name in self._outputs}
