"""ONNX INT8 (QDQ, per-channel int8 weights) with a configuration chosen by measurement and an accuracy guard.

onnxruntime.quantization does the work: `quant_pre_process`, `quantize_static` with a calibration data reader
(ranges cached after the first pass, so trying configurations and exclusions is cheap). INT8 answers depend on
the CPU's int8 kernels (`int8_kernels.py`), so every candidate configuration is measured on every kernel family
— the exact-accumulating ones (VNNI, AMX, ARM) and x86 without VNNI, whose 16-bit pair sums saturate — and the
one with the smallest worst-family loss within budget is chosen. Over budget, the guard ranks the quantized nodes
by sensitivity (accuracy regained when that node alone stays float) and keeps the most sensitive in float.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from edgemm.calibration import CalibrationSet
from edgemm.runtimes.backends import BACKENDS
from edgemm.runtimes.contract import ModelContract
from edgemm.runtimes.errors import EdgemmError
from edgemm.runtimes.machine import this_machine
from edgemm.runtimes.reference import ReferenceSet
from edgemm.runtimes.verification import (
    accuracy_by_mode,
    agreement_by_mode,
    run_model,
    tolerance,
)

from .int8_kernels import AVX2, EXACT, FAMILIES, Measurement, measurements

METHODS = ("minmax", "entropy", "percentile")
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")


class QuantizationError(EdgemmError):
    """Bad quantization options, or a model the quantizer cannot handle."""


@dataclass(frozen=True)
class OnnxInt8Config:
    """One way to quantize for onnxruntime: activation and weight types, weight bits."""

    name: str
    activations: str  # "int8" (symmetric) or "uint8" (asymmetric)
    weights: str  # "int8" (symmetric) or "uint8" (asymmetric)
    reduce_range: bool  # 7-bit weights
    note: str

    @property
    def saturation_free(self) -> bool:
        """No kernel can saturate on it: 7-bit weights keep u8 x s8 pair sums within int16 (2 x 255 x 64 = 32,640),
        and u8 x u8 is multiplied in 16 bits after widening on x86."""
        return self.reduce_range or self.weights == "uint8"

    def describe(self) -> dict[str, Any]:
        bits = "7-bit (reduce_range)" if self.reduce_range else "8-bit"
        return {
            "name": self.name,
            "activations": f"{self.activations} {'symmetric' if self.activations == 'int8' else 'asymmetric'}",
            "weights": f"{self.weights} {'symmetric' if self.weights == 'int8' else 'asymmetric'}, {bits}",
            "saturation_free": self.saturation_free,
            "note": self.note,
        }

    def quantize_args(self) -> dict[str, Any]:
        from onnxruntime.quantization import QuantType

        types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
        return {
            "activation_type": types[self.activations],
            "weight_type": types[self.weights],
            "reduce_range": self.reduce_range,
            "extra_options": {"ActivationSymmetric": self.activations == "int8", "WeightSymmetric": self.weights == "int8"},
        }


# In order of preference when two measure the same; the measurement decides.
CONFIGS = {
    c.name: c
    for c in (
        OnnxInt8Config("s8s8-w8", "int8", "int8", False,
                       "8-bit weights: exact on VNNI/AMX and ARM; can saturate on x86 without VNNI"),
        OnnxInt8Config("s8s8-w7", "int8", "int8", True,
                       "7-bit weights: cannot saturate on any kernel; the same kernels (and speed) as 8-bit on VNNI/AMX/ARM, "
                       "one bit less weight resolution"),
        OnnxInt8Config("u8s8-w7", "uint8", "int8", True,
                       "uint8 activations, 7-bit weights: onnxruntime's advice for x86 without VNNI; cannot saturate"),
        OnnxInt8Config("u8u8", "uint8", "uint8", False,
                       "uint8 weights: cannot saturate (x86 widens to 16 bits); slower kernels on VNNI"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Int8Options:
    """What `edgemm quantize` was asked for."""

    method: str = "entropy"  # measured best here: smallest drop and highest agreement of the three
    max_drop: float = 1.0  # accuracy points (or agreement points without labels), worst modality pattern
    per_channel: bool = True
    exclude: tuple[str, ...] = ()  # nodes the user keeps in float from the start
    max_float: float = 0.25  # at most this fraction of the quantizable nodes may stay float; beyond, PTQ has failed
    config: str = "auto"  # ONNX INT8 configuration (CONFIGS), or "auto": chosen by measurement on every kernel family

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise QuantizationError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not self.max_drop >= 0:
            raise QuantizationError(f"--max-drop must be ≥ 0 accuracy points, got {self.max_drop}")
        if not 0 <= self.max_float <= 1:
            raise QuantizationError(f"--max-float must be a fraction between 0 and 1, got {self.max_float}")
        if self.config != "auto" and self.config not in CONFIGS:
            raise QuantizationError(f"--int8-config must be auto or one of {', '.join(CONFIGS)}, got {self.config!r}")


@dataclass
class FamilyScore:
    """An INT8 model measured on one kernel family."""

    how: str
    scores: dict[str, float]  # accuracy (or agreement) per modality pattern, percent
    fused_agreement: float  # answer agreement with fp32 on fused rows (top-1 class or nearest neighbour), percent
    drop: float  # worst pattern's loss against fp32, points

    def to_dict(self) -> dict[str, Any]:
        return {"how": self.how, "drop_points": round(self.drop, 2), "fused_agreement": round(self.fused_agreement, 2), "scores": _round(self.scores)}


@dataclass
class Trial:
    """One configuration (with some nodes in float) measured on every kernel family (None: not measurable here)."""

    config: OnnxInt8Config
    families: dict[str, FamilyScore | None]
    min_agreement: float  # fused agreement the INT8 rules ask for, percent

    @property
    def measured(self) -> bool:
        return all(f is not None for f in self.families.values())

    @property
    def drop(self) -> float:
        return max(f.drop for f in self.families.values() if f is not None)

    @property
    def agreement(self) -> float:
        return min(f.fused_agreement for f in self.families.values() if f is not None)

    def within(self, max_drop: float) -> bool:
        return self.measured and self.drop <= max_drop and self.agreement >= self.min_agreement

    def summary(self) -> str:
        parts = [f"{name} {'not measurable here' if f is None else f'{f.drop:.2f}'}" for name, f in self.families.items()]
        return f"{self.config.name}: drop {self.drop:.2f} points ({', '.join(parts)}), fused agreement ≥ {self.agreement:.1f} %"


@dataclass
class GuardResult:
    """What the guard measured and decided."""

    drop: float
    metric: str  # "accuracy" or "agreement"
    fp32: dict[str, float]
    int8: dict[str, float]  # the worst kernel family's scores
    excluded: list[str]
    config: OnnxInt8Config
    config_reason: str
    families: dict[str, FamilyScore | None]
    candidates: list[Trial]
    sensitivity: list[tuple[str, float]] = field(default_factory=list)
    within_budget: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "drop_points": round(self.drop, 3),
            "fp32": self.fp32,
            "int8": self.int8,
            "config": self.config.describe(),
            "config_reason": self.config_reason,
            "kernel_families": {
                name: {"cpus": FAMILIES[name], **(f.to_dict() if f else {"how": "not measurable here (no such CPU, no qemu)"})}
                for name, f in self.families.items()
            },
            "candidates": [t.summary() for t in self.candidates],
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
    """Quantizes one fp32 ONNX model; reusable for many configurations and exclusion lists (calibration runs once)."""

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

    def quantize(self, out: Path, exclude: list[str], config: OnnxInt8Config) -> None:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            quantize_static,
        )

        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
        reader = None if self.cache.is_file() else _Reader(self.calibration.feeds())
        args = config.quantize_args()
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress lines
            quantize_static(
                str(self.pre),
                str(out),
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS),
                per_channel=self.options.per_channel,
                nodes_to_exclude=list(exclude),
                calibrate_method=method[self.options.method],
                calibration_cache_path=str(self.cache),
                activation_type=args["activation_type"],
                weight_type=args["weight_type"],
                reduce_range=args["reduce_range"],
                extra_options={**args["extra_options"], "CalibMaxIntermediateOutputs": 64},
            )


def quantizable_nodes(path: Path) -> list[str]:
    """Names of the nodes the quantizer turns int8 (in graph order)."""
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in QUANTIZED_OPS]


def _scores_of(outputs: np.ndarray, reference: ReferenceSet) -> dict[str, float]:
    """Accuracy (labelled) or answer agreement with the reference, in percent, per modality pattern."""
    scores = (accuracy_by_mode if reference.labelled else agreement_by_mode)(outputs, reference)
    return {k: 100 * v for k, v in scores.items()}


def scores(path: Path, reference: ReferenceSet, contract: ModelContract, backend_name: str = "onnxruntime") -> dict[str, float]:
    """An artifact's accuracy (or agreement) per modality pattern on `reference`, through its own backend."""
    return _scores_of(run_model(contract.runner(BACKENDS[backend_name].open(path).run), reference), reference)


def reference_scores(held_out: ReferenceSet) -> dict[str, float]:
    """The reference's own accuracy (labelled) or agreement (100 %), in percent, per modality pattern."""
    return _scores_of(held_out.outputs, held_out)


def measure(path: Path, held_out: ReferenceSet, contract: ModelContract, config: OnnxInt8Config, measures: dict[str, Measurement | None]) -> Trial:
    """An INT8 ONNX on every kernel family; where x86-avx2 cannot be measured here, a configuration that cannot
    saturate computes there what the exact kernels compute."""
    fp32 = reference_scores(held_out)
    families: dict[str, FamilyScore | None] = {}
    for family in (EXACT, AVX2):
        m = measures.get(family)
        if m is None:
            exact = families.get(EXACT)
            families[family] = replace(exact, how=f"as exact: {config.name} cannot saturate") if config.saturation_free and exact else None
            continue
        outputs = m.run(path, held_out, contract)
        got = _scores_of(outputs, held_out)
        agreement = agreement_by_mode(outputs, held_out)
        families[family] = FamilyScore(m.how, got, 100 * agreement.get("fused", min(agreement.values())), max(fp32[p] - got[p] for p in fp32))
    return Trial(config, families, 100 * tolerance(held_out.output, "int8")["agreement"])


def choose_config(trials: list[Trial], max_drop: float) -> tuple[Trial, str]:
    """The configuration within budget on every kernel family with the smallest worst-family loss (then the
    highest agreement, then CONFIGS order), and why; over budget everywhere, the least bad measured one."""
    order = list(CONFIGS)
    rank = lambda t: (round(t.drop, 2), -round(t.agreement, 2), order.index(t.config.name))  # noqa: E731
    within = [t for t in trials if t.within(max_drop)]
    pool = within or [t for t in trials if t.measured] or trials
    best = min(pool, key=rank)
    others = "; ".join(t.summary() for t in trials if t is not best)
    verdict = "smallest worst-family loss within budget" if within else f"none within {max_drop} points on every family: the least bad"
    return best, f"{best.summary()} — {verdict}" + (f". Others: {others}" if others else "")


def guarded_quantize(
    fp32: Path, out: Path, calibration: CalibrationSet, held_out: ReferenceSet, options: Int8Options, log: Callable[[str], None] = print
) -> GuardResult:
    """Write `out` as INT8 within `options.max_drop` points of the reference on `held_out` on every int8 kernel
    family, if PTQ can.

    `fp32` is the model to quantize (the bundle's fp32 artifact, or QAT-adapted weights); the drop is
    always measured against `held_out`'s reference outputs (the bundle's fp32 artifact)."""
    metric = "accuracy" if held_out.labelled else "agreement"
    fp32_scores = reference_scores(held_out)
    measures = measurements(this_machine())
    with tempfile.TemporaryDirectory(prefix="edgemm-int8-") as tmp:
        quantizer = Int8Quantizer(fp32, calibration, options, Path(tmp))
        allowed = int(options.max_float * len(quantizer.nodes))

        def attempt(exclude: list[str], config: OnnxInt8Config, path: Path = out) -> Trial:
            quantizer.quantize(path, exclude, config)
            return measure(path, held_out, calibration.contract, config, measures)

        excluded = list(options.exclude)
        named = [CONFIGS[options.config]] if options.config != "auto" else list(CONFIGS.values())
        trials = [attempt(excluded, c, Path(tmp) / f"{c.name}.onnx") for c in named]
        if options.config != "auto" and not trials[0].measured:
            safe = ", ".join(c.name for c in CONFIGS.values() if c.saturation_free)
            raise QuantizationError(f"--int8-config {options.config} can saturate on x86 without VNNI and this machine cannot measure that "
                                    f"(it is no such CPU and has no qemu-x86_64-static): install qemu-user-static or choose one that cannot ({safe})")  # fmt: skip
        trial, reason = choose_config(trials, options.max_drop)
        config = trial.config
        log(f"int8 ({options.method}, {len(calibration)} calibration samples): {reason}")
        trial = attempt(excluded, config)
        result = GuardResult(trial.drop, metric, _round(fp32_scores), _worst_scores(trial), excluded, config, reason, trial.families, trials)
        if trial.within(options.max_drop) or allowed <= len(excluded):
            result.within_budget = trial.within(options.max_drop)
            if not result.within_budget:
                log(f"no node may stay in float (--max-float {options.max_float}): PTQ cannot meet the budget")
            return result
        candidates = [n for n in quantizer.nodes if n not in excluded]
        gains = []
        for node in candidates:
            gains.append((node, trial.drop - attempt(excluded + [node], config).drop))
        gains.sort(key=lambda g: -g[1])
        result.sensitivity = gains
        log("most sensitive nodes: " + ", ".join(f"{n} (+{g:.2f})" for n, g in gains[:5]))
        for node, _ in gains:
            if len(excluded) >= allowed:
                log(f"  {len(excluded)} of {len(quantizer.nodes)} nodes in float is the most --max-float {options.max_float} allows")
                break
            excluded.append(node)
            trial = attempt(excluded, config)
            log(f"  keep {node} in float → drop {trial.drop:.2f}")
            if trial.within(options.max_drop):
                break
        result.drop, result.int8, result.excluded, result.families = trial.drop, _worst_scores(trial), excluded, trial.families
        result.within_budget = trial.within(options.max_drop)
        return result


def _worst_scores(trial: Trial) -> dict[str, float]:
    worst = max((f for f in trial.families.values() if f is not None), key=lambda f: f.drop)
    return _round(worst.scores)


def _round(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in scores.items()}
