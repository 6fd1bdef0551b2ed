"""The int8 kernel families an INT8 ONNX must hold on, and how the export machine measures each.

onnxruntime (MLAS) and OpenVINO (oneDNN) multiply u8 x s8 on x86 without VNNI with `vpmaddubsw`, whose
16-bit pair sums saturate; VNNI/AMX on x86 and ARM's NEON/dot-product kernels accumulate in 32 bits,
exactly. So an INT8 model has two numerically different behaviours to prove:

- `exact`: measured by the real kernels when this machine has them, else by running the Q/DQ graph
  unfused (dequantize, float op, quantize: the integer arithmetic without saturation);
- `x86-avx2`: measured natively on such a CPU, else under `qemu-x86_64-static -cpu Haswell` where qemu is
  installed. A configuration that cannot saturate by construction (7-bit weights: 2 x 255 x 64 = 32,640
  ≤ 32,767; or u8 x u8, multiplied in 16 bits after widening) computes there exactly what `exact` computes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgemm.runtimes.backends import BACKENDS
from edgemm.runtimes.contract import ModelContract
from edgemm.runtimes.emulation import AVX2_ONLY_CPU, qemu_binary, run_emulated
from edgemm.runtimes.machine import MachineInfo
from edgemm.runtimes.reference import ReferenceSet
from edgemm.runtimes.verification import run_model

EXACT, AVX2 = "exact", "x86-avx2"
FAMILIES = {
    EXACT: "exact int32 accumulation: x86 with VNNI or AMX, ARM NEON and dot-product",
    AVX2: "x86 without VNNI (AVX2, AVX-512 before VNNI): u8 x s8 pair sums saturate at 16 bits",
}

Run = Callable[[Path, ReferenceSet, ModelContract], np.ndarray]  # (INT8 ONNX, held-out rows, its contract) → judged outputs


@dataclass(frozen=True)
class Measurement:
    """How one kernel family is measured from this machine."""

    family: str
    how: str
    run: Run


def _native(path: Path, rows: ReferenceSet, contract: ModelContract) -> np.ndarray:
    return run_model(contract.runner(BACKENDS["onnxruntime"].open(path).run), rows)


def unfused_outputs(path: Path, rows: ReferenceSet, contract: ModelContract) -> np.ndarray:
    """An INT8 ONNX's outputs (those `rows` are judged on) with its Q/DQ nodes run one by one: integer arithmetic without any kernel's saturation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # Q/DQ stay separate nodes: no int8 kernel runs
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = contract.output_names
    return run_model(contract.runner(lambda feeds: dict(zip(names, session.run(names, feeds)))), rows)


def _emulated_avx2(path: Path, rows: ReferenceSet, contract: ModelContract) -> np.ndarray:
    raw = run_emulated(path, contract.feeds(rows.image, rows.audio, rows.present), AVX2_ONLY_CPU)
    return contract.outputs(raw)[rows.output]


def measurements(machine: MachineInfo) -> dict[str, Measurement | None]:
    """For each kernel family, how this machine measures it (None: it cannot)."""
    here = f"this CPU ({machine.cpu}, {machine.int8_kernels})"
    if machine.int8_saturates:
        return {AVX2: Measurement(AVX2, here, _native), EXACT: Measurement(EXACT, "Q/DQ graph run unfused (integer math without saturation)", unfused_outputs)}
    emulated = None
    if machine.arch in ("x86_64", "amd64") and qemu_binary() is not None:
        emulated = Measurement(AVX2, f"qemu-x86_64-static -cpu {AVX2_ONLY_CPU} (emulated AVX2-only x86)", _emulated_avx2)
    return {EXACT: Measurement(EXACT, here, _native), AVX2: emulated}
