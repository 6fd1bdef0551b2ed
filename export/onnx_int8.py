"""ONNX INT8 (QDQ, per-channel symmetric int8 weights, symmetric int8 activations) with an accuracy guard.

onnxruntime.quantization does the work: `quant_pre_process`, `quantize_static` with a calibration
data reader (ranges cached after the first pass, so the guard's re-quantizations are cheap). The
guard measures the drop against the fp32 artifact on held-out data; over budget, it ranks the
quantized nodes by sensitivity (accuracy regained when that node alone stays float) and keeps the
most sensitive ones in float until the drop is within budget.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgemm.calibration import CalibrationSet
from edgemm.runtimes.backends import BACKENDS
from edgemm.runtimes.errors import EdgemmError
from edgemm.runtimes.model import MODALITY_PATTERNS

from .reference import ReferenceSet
from .verify import accuracy_by_mode, agreement_by_mode, run_model

METHODS = ("minmax", "entropy", "percentile")
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")


class QuantizationError(EdgemmError):
    """Bad quantization options, or a model the quantizer cannot handle."""


@dataclass(frozen=True)
class Int8Options:
    """What `edgemm quantize` was asked for."""

    method: str = "entropy"  # measured best here: smallest drop and highest agreement of the three
    max_drop: float = 1.0  # accuracy points (or agreement points without labels), worst modality pattern
    per_channel: bool = True
    exclude: tuple[str, ...] = ()  # nodes the user keeps in float from the start
    max_float: float = 0.25  # at most this fraction of the quantizable nodes may stay float; beyond, PTQ has failed

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise QuantizationError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not self.max_drop >= 0:
            raise QuantizationError(f"--max-drop must be ≥ 0 accuracy points, got {self.max_drop}")
        if not 0 <= self.max_float <= 1:
            raise QuantizationError(f"--max-float must be a fraction between 0 and 1, got {self.max_float}")


@dataclass
class GuardResult:
    """What the guard measured and decided."""

    drop: float
    metric: str  # "accuracy" or "agreement"
    fp32: dict[str, float]
    int8: dict[str, float]
    excluded: list[str]
    sensitivity: list[tuple[str, float]] = field(default_factory=list)
    within_budget: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "drop_points": round(self.drop, 3),
            "fp32": self.fp32,
            "int8": self.int8,
            "excluded_nodes": self.excluded,
            "sensitivity": [[n, round(g, 3)] for n, g in self.sensitivity],
            "within_budget": self.within_budget,
        }


class _Reader:
    """A `CalibrationDataReader` over batch-1 feed dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = feeds
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)


class Int8Quantizer:
    """Quantizes one fp32 ONNX model; reusable for many exclusion lists (calibration runs once)."""

    def __init__(self, fp32: Path, calibration: CalibrationSet, options: Int8Options, workdir: Path) -> None:
        from onnxruntime.quantization import shape_inference

        self.options = options
        self.calibration = calibration
        self.workdir = workdir
        self.pre = workdir / "pre.onnx"
        self.cache = workdir / "calibration.json"
        logging.getLogger("onnxruntime").setLevel(logging.ERROR)
        shape_inference.quant_pre_process(str(fp32), str(self.pre), skip_symbolic_shape=True)
        self.nodes = quantizable_nodes(self.pre)

    def quantize(self, out: Path, exclude: list[str]) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
        reader = None if self.cache.is_file() else _Reader(self.calibration.feeds())
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress lines
            quantize_static(
                str(self.pre),
                str(out),
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS),
                per_channel=self.options.per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(exclude),
                calibrate_method=method[self.options.method],
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "CalibMaxIntermediateOutputs": 64},
                calibration_cache_path=str(self.cache),
            )


def quantizable_nodes(path: Path) -> list[str]:
    """Names of the nodes the quantizer turns int8 (in graph order)."""
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in QUANTIZED_OPS]


def scores(path: Path, reference: ReferenceSet, labelled: bool, backend_name: str = "onnxruntime") -> dict[str, float]:
    """Accuracy (labelled) or top-1 agreement with the reference, in percent, per modality pattern."""
    backend = BACKENDS[backend_name].open(path)
    logits = run_model(lambda image, audio, present: backend.run({"image": image, "audio": audio, "present": present}), reference)
    scores = (accuracy_by_mode if labelled else agreement_by_mode)(logits.argmax(1), reference)
    return {k: 100 * v for k, v in scores.items()}


def reference_scores(held_out: ReferenceSet) -> dict[str, float]:
    """The reference's own accuracy (labelled) or agreement (100 %), in percent, per modality pattern."""
    top1 = held_out.logits.argmax(1)
    labelled = bool((held_out.labels >= 0).all())
    baseline = accuracy_by_mode(top1, held_out) if labelled else agreement_by_mode(top1, held_out)
    return {m: 100 * v for m, v in baseline.items()}


def guarded_quantize(
    fp32: Path, out: Path, calibration: CalibrationSet, held_out: ReferenceSet, options: Int8Options, log: Callable[[str], None] = print
) -> GuardResult:
    """Write `out` as INT8 within `options.max_drop` points of the reference on `held_out`, if PTQ can.

    `fp32` is the model to quantize (the bundle's fp32 artifact, or QAT-adapted weights); the drop is
    always measured against `held_out`'s reference outputs (the bundle's fp32 artifact)."""
    labelled = bool((held_out.labels >= 0).all())
    metric = "accuracy" if labelled else "agreement"
    fp32_scores = reference_scores(held_out)
    with tempfile.TemporaryDirectory(prefix="edgemm-int8-") as tmp:
        quantizer = Int8Quantizer(fp32, calibration, options, Path(tmp))
        allowed = int(options.max_float * len(quantizer.nodes))

        def attempt(exclude: list[str]) -> tuple[float, dict[str, float]]:
            quantizer.quantize(out, exclude)
            got = scores(out, held_out, labelled)
            return max(fp32_scores[m] - got[m] for m in MODALITY_PATTERNS), got

        excluded = list(options.exclude)
        drop, int8_scores = attempt(excluded)
        log(f"int8 ({options.method}, {len(calibration)} calibration samples): worst-pattern {metric} drop {drop:.2f} points (budget {options.max_drop})")
        result = GuardResult(drop, metric, _round(fp32_scores), _round(int8_scores), excluded)
        if drop <= options.max_drop or allowed <= len(excluded):
            result.within_budget = drop <= options.max_drop
            if not result.within_budget:
                log(f"no node may stay in float (--max-float {options.max_float}): PTQ cannot meet the budget")
            return result
        candidates = [n for n in quantizer.nodes if n not in excluded]
        gains = []
        for node in candidates:
            d, _ = attempt(excluded + [node])
            gains.append((node, drop - d))
        gains.sort(key=lambda g: -g[1])
        result.sensitivity = gains
        log("most sensitive nodes: " + ", ".join(f"{n} (+{g:.2f})" for n, g in gains[:5]))
        for node, _ in gains:
            if len(excluded) >= allowed:
                log(f"  {len(excluded)} of {len(quantizer.nodes)} nodes in float is the most --max-float {options.max_float} allows")
                break
            excluded.append(node)
            drop, int8_scores = attempt(excluded)
            log(f"  keep {node} in float → drop {drop:.2f}")
            if drop <= options.max_drop:
                break
        result.drop, result.int8, result.excluded = drop, _round(int8_scores), excluded
        result.within_budget = drop <= options.max_drop
        return result


def _round(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in scores.items()}
