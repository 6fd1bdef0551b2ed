"""`edgemm quantize`: add a verified INT8 artifact to a bundle, calibrated on data the user names."""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from edgemm.calibration import (
    CalibrationSet,
)
from edgemm.checkpoint import load_checkpoint
from edgemm.data.avdigits import config_from_record, load_split
from edgemm.data.features import split_tensors
from edgemm.export.bundle import BundleStage
from edgemm.export.onnx_format import export_onnx
from edgemm.export.onnx_int8 import (
    Int8Options,
    guarded_quantize,
    reference_scores,
    scores,
)
from edgemm.export.registry import (
    FORMATS,
    ExportFormat,
    add_verified,
    record_failure,
)
from edgemm.export.source import ExportSource
from edgemm.export.verify import confirm_on_this_machine
from edgemm.qat import QATConfig, qat_finetune
from edgemm.runtimes.backends import BACKENDS, module_available
from edgemm.runtimes.errors import BackendUnavailableError, BundleError, one_line
from edgemm.runtimes.manifest import Manifest
from edgemm.runtimes.reference import ReferenceSet
from edgemm.sources import (
    BUILTIN,
    calibration_set,
    check_source,
    source_from_checkpoint,
)
from edgemm.train import Tensors, to_tensors

INT8_FILE = FORMATS["onnx"].int8_file


def fp32_artifact(bundle: Path, manifest: Manifest) -> Path:
    art = next((a for a in manifest.artifacts if a.format == "onnx" and a.precision == "fp32" and a.verified), None)
    if art is None:
        raise BundleError(f"{bundle}: no verified fp32 ONNX artifact to quantize (run `edgemm export CKPT --to onnx` first)")
    return art.check_file(bundle)


def held_out_reference(fp32: Path, manifest: Manifest, fallback: CalibrationSet) -> ReferenceSet:
    """Labelled held-out data: the val split of the built-in data set the model was trained on; for other
    models, the calibration samples themselves, judged by agreement with fp32 (or accuracy where labelled)."""
    run = manifest.contract.runner(BACKENDS["onnxruntime"].open(fp32).run)
    rows, fill = list(manifest.contract.patterns.values()), manifest.contract.fill
    if manifest.model.get("data", {}).get("name") == BUILTIN:
        val = load_split("val", config_from_record(manifest.model["data"]))
        image, audio = split_tensors(val, manifest.image, manifest.audio)
        return ReferenceSet.build(run, image, audio, val.labels, name=f"model.onnx on {BUILTIN}:val", rows=rows, fill=fill)
    return ReferenceSet.build(run, fallback.image, fallback.audio, fallback.labels, name=f"model.onnx on {fallback.report.source}", rows=rows, fill=fill)


def qat_train_data(manifest: Manifest, calibration: CalibrationSet) -> Tensors:
    """What the QAT fallback fine-tunes on: the built-in data set's train split for a model trained on it, else
    the calibration samples (labels where they have them, the fp32 model's own answers always)."""
    if manifest.model.get("data", {}).get("name") == BUILTIN:
        return to_tensors(load_split("train", config_from_record(manifest.model["data"])), manifest.image, manifest.audio)
    return Tensors.of(calibration)


def _qat_onnx(
    source: ExportSource, train: Tensors, held_out: ReferenceSet, calibration: CalibrationSet, out: Path, config: QATConfig, log: Callable[[str], None]
) -> dict:
    """Fine-tune the bundle's own model (checked against the manifest by the caller) with fake quantization and
    export the adapted weights."""
    log(f"QAT fallback: {config.epochs} fake-quant epochs on {len(train.labels)} samples")
    tuned, record = qat_finetune(source, train, held_out, calibration, config, progress=False)
    export_onnx(ExportSource(tuned, source.contract, source.info), out)
    return record


def _converter_int8(
    stage: BundleStage, fmt: ExportFormat, produce: Callable[[Path], dict], calibration: CalibrationSet, held_out: ReferenceSet,
    options: Int8Options, log: Callable[[str], None],
) -> None:
    """An INT8 artifact from a converter's own INT8 path (`produce(out)` writes it and describes how),
    measured against the same held-out reference and budget as the ONNX guard; never raises."""
    file = fmt.int8_file
    try:
        how = produce(stage.path / file)
    except Exception as exc:  # one converter failing must not lose the other INT8 artifacts
        record_failure(stage, fmt.name, "int8", "quantize", one_line(exc), log)
        return
    fp32_scores, got = reference_scores(held_out), scores(stage.path / file, held_out, calibration.contract, fmt.backend)
    drop = max(fp32_scores[m] - got[m] for m in fp32_scores)
    log(f"{fmt.name} int8 ({how['tool']}, {len(calibration)} calibration samples): worst-pattern drop {drop:.2f} points (budget {options.max_drop})")
    add_verified(
        stage, fmt, file, "int8", held_out, budget_met=drop <= options.max_drop,
        quantization={**how, "calibration": calibration.report.to_dict(), "held_out": f"{held_out.name} ({len(held_out)} rows)",
                      "max_drop": options.max_drop, "drop_points": round(drop, 3), "fp32": fp32_scores, "int8": got},
    )  # fmt: skip


def _converters_int8(
    stage: BundleStage, calibration: CalibrationSet, held_out: ReferenceSet, options: Int8Options, source: ExportSource | None,
    log: Callable[[str], None],
) -> None:
    """Every other format's INT8, through its own INT8 path (the format table's `int8` step), for the fp32 artifacts
    the bundle has verified; what cannot be made here is recorded with the reason."""
    verified = {a.file for a in stage.manifest.artifacts if a.verified}
    for fmt in FORMATS.values():
        if fmt.int8 is None or fmt.files.get("fp32") not in verified:
            continue
        missing = next((pkg for pkg in fmt.requires + fmt.int8_requires if not module_available(pkg)), None)
        reason = str(BackendUnavailableError(f"{fmt.name} INT8", missing, "export")) if missing else None
        if reason is None and fmt.int8_needs_source and source is None:
            reason = f"{fmt.name} INT8 quantizes the torch graph: " + (
                "export with --model ... --int8 (the module is needed)" if stage.manifest.model.get("source") == "user"
                else "give --checkpoint, the bundle's fp32 checkpoint"
            )
        if reason:
            record_failure(stage, fmt.name, "int8", "quantize", reason, log, skipped=True)
            continue
        fp32 = stage.path / fmt.files["fp32"]
        _converter_int8(stage, fmt, lambda out: fmt.quantize(fp32, out, calibration, held_out, options, source), calibration, held_out, options, log)


def quantize_bundle(
    bundle: str | Path,
    calib: str,
    options: Int8Options,
    size: int = 300,
    log: Callable[[str], None] = print,
    checkpoint: str | Path | None = None,
    qat: QATConfig = QATConfig(),
    source: ExportSource | None = None,
) -> Manifest:
    """Quantize the bundle's fp32 ONNX to `model.int8.onnx` under the accuracy guard; atomic.

    When post-training quantization cannot meet the budget within `options.max_float` and the model is at hand
    (the bundle's `checkpoint`, or the export `source`), a QAT fine-tune adapts the weights — on the built-in train
    split, or the calibration samples for other models — and the guard runs again on them. TFLite INT8
    quantizes the torch graph: it needs `checkpoint` or the export `source` (your own module)."""
    bundle = Path(bundle)
    manifest = Manifest.read(bundle)
    fp32 = fp32_artifact(bundle, manifest)
    if checkpoint is not None:
        check_source(Path(checkpoint), manifest)
        source = source or source_from_checkpoint(load_checkpoint(checkpoint))
    calibration = calibration_set(calib, manifest.contract, size, manifest.model.get("data"))
    report = calibration.report
    log(f"calibration: {report.used} samples from {report.source}" + (f"; skipped {dict(report.skipped)}" if report.skipped else ""))
    held_out = held_out_reference(fp32, manifest, calibration)
    with BundleStage(bundle, manifest) as stage:
        guard = guarded_quantize(stage.path / fp32.name, stage.path / INT8_FILE, calibration, held_out, options, log)
        qat_record = None
        if not guard.within_budget and source is not None:
            qat = replace(qat, per_channel=options.per_channel, reduce_range=guard.config.reduce_range)
            same_config = replace(options, config=guard.config.name)  # the weights adapt to this configuration: keep it
            with tempfile.TemporaryDirectory(prefix="edgemm-qat-") as tmp:
                qat_record = _qat_onnx(source, qat_train_data(manifest, calibration), held_out, calibration, Path(tmp) / "qat.onnx", qat, log)
                guard = guarded_quantize(Path(tmp) / "qat.onnx", stage.path / INT8_FILE, calibration, held_out, same_config, log)
        elif not guard.within_budget:
            log("PTQ cannot meet the budget; for the QAT fallback give --checkpoint (the bundle's fp32 checkpoint), or export your "
                "own model with --model ... --int8")  # fmt: skip
        add_verified(
            stage, FORMATS["onnx"], INT8_FILE, "int8", held_out, budget_met=guard.within_budget,
            quantization={
                "tool": "onnxruntime.quantization.quantize_static",
                "format": "QDQ",
                "weights": guard.config.describe()["weights"] + (", per-channel" if options.per_channel else ", per-tensor"),
                "activations": guard.config.describe()["activations"],
                "method": options.method,
                "calibration": report.to_dict(),
                "held_out": f"{held_out.name} ({len(held_out)} rows)",
                "max_drop": options.max_drop,
                "max_float": options.max_float,
                "qat": qat_record,
                **guard.to_dict(),
            },
        )  # fmt: skip
        _converters_int8(stage, calibration, held_out, options, source, log)
        confirm_on_this_machine(stage, log, only={a.file for a in stage.manifest.artifacts if a.precision == "int8"})
        stage.commit()
    return stage.manifest
