"""ONNX Runtime backend (CPU by default; other execution providers by `device`).

Session options (onnxruntime's pip wheel has no benchmark CLI; the reference is the best plain
`InferenceSession.run` configured by hand, see `edgemm.vendor_bench`):

- `intra_op_num_threads = threads`, `inter_op_num_threads = 1`, sequential execution, all graph optimizations
  (onnxruntime's default level) — the plain session's settings.
- `session.intra_op.allow_spinning = 1` (onnxruntime's default) with `session.intra_op.spin_duration_us = 300`: an
  idle intra-op worker spins for at most 300 µs, then sleeps. onnxruntime's default spin (an iteration count, no
  time bound) keeps the workers spinning well past the end of a call and takes the second core from whatever runs
  next: in a live loop (a call, then ~0.3 ms of numpy preprocessing with a mel matmul; 2 cores, AMD EPYC AVX2) the
  preprocessing's p90 went from ~0.35 ms to 4–7 ms (OpenBLAS's own worker could not get a core). Measured, batch
  1, 2 threads, medians of alternating rounds:

  | setting                          | model.onnx                       | model.int8.onnx                  |
  |----------------------------------|----------------------------------|----------------------------------|
  | default spinning                 | 0.108 / 0.41–0.42 (p90 4.0–4.3)  | 0.29 / 0.64–0.74 (p90 4.3–4.4)   |
  | spin_duration_us = 100           | 0.110 / 0.42–0.47 (p90 0.33–0.45) | 0.30 / 0.61–0.72 (p90 0.34–0.41) |
  | force_spinning_stop = 1          | 0.143 / 0.44 (p90 0.34–0.38)     | 0.32 / 0.61–0.62 (p90 0.31–0.37) |
  | allow_spinning = 0               | 0.176 / 0.58 (p90 0.32–0.34)     | 0.40 / 0.76–0.78 (p90 0.37)      |

  (isolated back-to-back call / a loop iteration's total, ms; p90 of the numpy step that follows the call, which
  takes 0.23–0.33 ms p90 on its own; AMD EPYC AVX2 VM.) So a bounded spin keeps the isolated call as fast as the
  default (no worker wake-up between back-to-back calls) and the live loop's tail as short as with spinning off.
  300 µs rather than 100: a `predict()` spends ~0.1 ms preprocessing its inputs before the call (a live answer
  ~0.08 ms), and a worker that went to sleep in that time costs the call its wake-up. `bench/live.py`'s overhead rows
  (INT8 student, 2 threads, Zen 5 AVX-512 VM, two runs each): 100 µs — bare call 0.130, live answer 0.272, raw
  `predict` 0.320 ms; 300 µs — 0.128, 0.236, 0.273 ms; the live app's p95 capture→result 1.63 vs 1.70 ms. The spin
  costs a spinning core for at most 0.3 ms after each call (~1 % of a core at 30 answers a second).
  Edit `SESSION_CONFIG` before loading to change it
  (e.g. `session.intra_op.allow_spinning` "0" where the CPU is shared with other busy processes). An
  onnxruntime without `spin_duration_us` ignores the key and spins as by default.
- `run(None, feeds)` as is: IOBinding and `run_with_ort_values` were no faster for these small tensors (IOBinding
  within noise, OrtValue creation per call slower).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, ModelFileError
from .base import Backend

SESSION_CONFIG = {  # session config entries every session gets (see the module docstring)
    "session.intra_op.allow_spinning": "1",
    "session.intra_op.spin_duration_us": "300",
}


def session_options(ort, threads: int | None):
    """The SessionOptions this backend runs with."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    for key, value in SESSION_CONFIG.items():
        options.add_session_config_entry(key, value)
    return options


class OnnxRuntimeBackend(Backend):
    """`onnxruntime.InferenceSession` behind the backend interface."""

    name = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None, device: str | None = None) -> None:
        super().__init__(path, threads, device)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError("the onnxruntime backend", "onnxruntime", "onnx") from exc
        providers = [device] if device else ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(self.path), session_options(ort, threads), providers=providers)
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
