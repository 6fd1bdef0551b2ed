"""OpenVINO INT8 through NNCF, on the same calibration set as the ONNX INT8.

With a labelled held-out set, `nncf.quantize_with_accuracy_control` keeps the worst modality pattern
within the accuracy budget and fused agreement with fp32 at its tolerance by returning the most
sensitive layers to float; otherwise plain
`nncf.quantize`. The modality gating (x * present, concat with the flags) always stays float:
quantizing it cost the default student 4.6-10 accuracy points.
"""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from edgemm.calibration import CalibrationSet
from edgemm.runtimes.contract import ModelContract
from edgemm.runtimes.errors import EdgemmError
from edgemm.runtimes.reference import ReferenceSet
from edgemm.runtimes.verification import (
    accuracy_by_mode,
    agreement_by_mode,
    cosine_rows,
    tolerance,
)

from .onnx_int8 import Int8Options

if TYPE_CHECKING:
    from .source import ExportSource


class NoInt8Error(EdgemmError):
    """Quantization could not keep any layer in INT8 within the budget."""


def validation_items(held_out: ReferenceSet, contract: ModelContract) -> list[dict[str, np.ndarray]]:
    """One item per sample holding its rows in every modality pattern (inputs named as the model takes them),
    presence rows, labels and fp32 outputs, so any subset NNCF evaluates covers every pattern and carries its own
    fp32 baseline."""
    k = len(held_out.pattern_rows)
    n = len(held_out) // k
    items = []
    for i in range(n):
        rows = np.arange(i, len(held_out), n)[:k]
        feeds = contract.feeds(held_out.image[rows], held_out.audio[rows], held_out.present[rows])
        items.append({**feeds, "present": held_out.present[rows], "labels": held_out.labels[rows], "expected": held_out.outputs[rows]})
    return items


def budget_metric(budget: float, contract: ModelContract, output: str):
    """NNCF's validation function for edgemm's INT8 budget on the judged `output` (logits or embedding), as one
    number: 1 − shortfall · budget, where shortfall = max(worst-pattern accuracy drop / budget, first-pattern
    disagreement with fp32 / (1 − agreement needed), and for an embedding its mean cosine shortfall / (1 − mean needed)). The fp32 model scores 1; an INT8 model is within both
    budgets exactly when NNCF's absolute drop ≤ budget (offset by 1 because NNCF divides by the fp32 metric even
    for absolute drops)."""
    name = contract.logits_output if output == "logits" else contract.embedding_output
    agreement, first = tolerance(output, "int8")["agreement"], next(iter(contract.patterns))

    def metric(compiled, items) -> float:
        items = list(items)
        joined = {key: np.concatenate([it[key] for it in items]) for key in items[0]}
        got, expected = compiled({n: joined[n] for n in contract.input_names})[compiled.output(name)], joined["expected"]
        empty = np.empty((len(expected), 0), np.float32)
        rows = ReferenceSet(empty, empty, joined["present"], joined["labels"], *((expected, None) if output == "logits" else (None, expected)))
        fp32, int8 = accuracy_by_mode(expected, rows), accuracy_by_mode(got, rows)
        drop = max(fp32[m] - int8[m] for m in fp32)
        shortfall = [drop / budget, (1 - agreement_by_mode(got, rows)[first]) / (1 - agreement), 0.0]
        if output == "embedding":  # and the mean cosine to fp32 on every row
            shortfall.append((1 - float(cosine_rows(got, expected).mean())) / (1 - tolerance(output, "int8")["mean_cosine"]))
        return 1.0 - budget * max(shortfall)

    return metric


def nncf_quantize(
    fp32_xml: Path, out_xml: Path, calibration: CalibrationSet, held_out: ReferenceSet, options: Int8Options, source: "ExportSource | None" = None
) -> dict:
    """Quantize an IR (symmetric "performance" preset, full bias correction) — the IR alone: `source` is not
    needed; returns how, for the manifest."""
    import nncf
    import openvino as ov

    feeds = calibration.feeds()
    model = ov.Core().read_model(str(fp32_xml))
    ignored = nncf.IgnoredScope(names=list(options.exclude), types=["Multiply", "Concat"], validate=False)
    common = {"preset": nncf.QuantizationPreset.PERFORMANCE, "subset_size": len(feeds), "fast_bias_correction": False, "ignored_scope": ignored}
    labelled = held_out.labelled
    # 7-bit weights in every layer: oneDNN's u8 x s8 kernels on x86 without VNNI cannot saturate then, so the
    # accuracy measured here holds on every CPU (NNCF's default fixes only the first layer)
    advanced = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.ENABLE)
    # NNCF's usage telemetry (openvino-telemetry) forks a process from a background thread to send its report;
    # JAX, imported by litert-torch in the same process, warns about any fork. The fork is not ours to change.
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
    with nncf_log() as messages:
        if labelled:
            quantized = nncf.quantize_with_accuracy_control(
                model, nncf.Dataset(feeds), nncf.Dataset(validation_items(held_out, calibration.contract)), budget_metric(options.max_drop / 100, calibration.contract, held_out.output), max_drop=options.max_drop / 100,
                advanced_quantization_parameters=advanced, **common,
            )  # fmt: skip
        else:
            quantized = nncf.quantize(model, nncf.Dataset(feeds), advanced_parameters=advanced, **common)
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    if fake_quantize == 0:
        raise NoInt8Error("NNCF accuracy control returned every layer to float: no INT8 model meets the budget")
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    return {
        "fake_quantize_ops": fake_quantize,
        "tool": "nncf.quantize_with_accuracy_control" if labelled else "nncf.quantize",
        "preset": "performance (symmetric)",
        "weights": "int8 symmetric, 7-bit in every layer (overflow fix: no saturation on x86 without VNNI)",
        "kept_float": ["Multiply", "Concat", *options.exclude],
        "reverted_to_float": reverted_ops(messages),
    }


@contextmanager
def nncf_log():
    """Collect NNCF's INFO messages (which layers accuracy control reverted) instead of printing them."""
    logger = logging.getLogger("nncf")
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    saved = (logger.level, logger.handlers[:], logger.propagate)
    logger.setLevel(logging.INFO)
    logger.handlers[:] = [handler]
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.level, logger.handlers[:], logger.propagate = saved[0], saved[1], saved[2]


def reverted_ops(messages: list[str]) -> list[str]:
    """Operation names from NNCF's final "N out of M were reverted back to the floating-point precision" message."""
    final = [m for m in messages if "were reverted back" in m]
    return [line.strip() for line in final[-1].splitlines()[1:] if line.strip()] if final else []
