"""`edgemm export`: a model (built-in checkpoint or the user's module + contract) → staged bundle → every
requested format exported and verified → swap; INT8 and TensorRT engines on request."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from edgemm.checkpoint import load_checkpoint
from edgemm.export.bundle import BundleStage, new_manifest
from edgemm.export.onnx_int8 import Int8Options
from edgemm.export.registry import (
    FORMATS,
    ExportFormat,
    export_into,
    parse_formats,
    with_budget,
)
from edgemm.export.source import ExportSource
from edgemm.export.verify import confirm_on_this_machine, verify_artifact
from edgemm.quantizing import quantize_bundle
from edgemm.runtimes.contract import ModelContract
from edgemm.runtimes.manifest import Manifest, sha256_file
from edgemm.runtimes.reference import REFERENCE_FILE, ReferenceSet
from edgemm.sources import (
    REFERENCE_SAMPLES,
    check_source,
    reference_set,
    source_from_checkpoint,
)
from edgemm.user_model import user_source


def export_source(
    source: ExportSource,
    reference: ReferenceSet,
    rows: list[ExportFormat],
    out: str | Path,
    log: Callable[[str], None] = print,
    int8_calib: str | None = None,
    int8: Int8Options = Int8Options(),
    checkpoint: str | Path | None = None,
) -> Manifest:
    """Export `source` to a new bundle at `out` in the formats of `rows` (replacing it atomically), verifying every
    artifact on `reference`.

    Every format is tried; failures are recorded in the manifest, never lose the other formats. With
    `int8_calib`, every format's INT8 artifact is added on that calibration source (`edgemm quantize`);
    TensorRT engines are built last, from the bundle's ONNX, where TensorRT and a GPU exist."""
    rows = list(rows)
    if (int8_calib or any(f.device_build for f in rows)) and FORMATS["onnx"] not in rows:
        rows.insert(0, FORMATS["onnx"])
        log("onnx added: INT8 is measured against it and device builds (TensorRT engines) start from it")
    with BundleStage(out, new_manifest(source), fresh=True) as stage:
        for fmt in rows:
            if fmt.exporter is not None:
                export_into(stage, fmt, source, reference, log)
        save_reference(stage, reference)
        confirm_on_this_machine(stage, log)
        stage.commit()
    if int8_calib:
        quantize_bundle(out, int8_calib, int8, checkpoint=checkpoint, source=source, log=log)
    for fmt in (f for f in rows if f.device_build is not None):
        with BundleStage(out, Manifest.read(Path(out))) as stage:
            fmt.build_on_device(stage, Path(out), reference, log)
            stage.commit()
    return Manifest.read(Path(out))


def export_checkpoint(
    checkpoint: str | Path,
    formats: str,
    out: str | Path,
    samples: int = REFERENCE_SAMPLES,
    log: Callable[[str], None] = print,
    int8_calib: str | None = None,
    int8: Int8Options = Int8Options(),
    data: str | None = None,
) -> Manifest:
    """Export a checkpoint, verified on its data set's test split (or on `data`); returns the manifest."""
    rows = parse_formats(formats)  # a wrong format name fails before any work
    source = source_from_checkpoint(load_checkpoint(checkpoint), Path(checkpoint))
    reference = reference_set(source, data=data, samples=samples)
    return export_source(source, reference, rows, out, log, int8_calib, int8, checkpoint)


def export_model(
    model: nn.Module,
    contract: ModelContract,
    formats: str,
    out: str | Path,
    data: str,
    samples: int = REFERENCE_SAMPLES,
    int8_calib: str | None = None,
    int8: Int8Options = Int8Options(),
    name: str = "model",
    log: Callable[[str], None] = print,
) -> Manifest:
    """Export your own torch module under its contract: one traced call checks the module against the contract
    before anything is written, then every format is exported and verified on up to `samples` samples of
    `data` (a folder of image+audio pairs, a .csv list or a recorded video with its audio), INT8 calibrated on
    `int8_calib` when given. Returns the manifest."""
    rows = parse_formats(formats)
    source = user_source(model, contract, name)
    reference = reference_set(source, data=data, samples=samples)
    patterns = len(source.contract.patterns)
    log(f"reference: {len(reference) // patterns} samples of {data} in {patterns} modality patterns")
    return export_source(source, reference, rows, out, log, int8_calib, int8)


def save_reference(stage: BundleStage, reference: ReferenceSet) -> None:
    """The held-out samples with torch's outputs inside the bundle: every machine verifies artifacts on them."""
    reference.save(stage.path / REFERENCE_FILE)
    stage.manifest.model["reference"] = {"file": REFERENCE_FILE, "sha256": sha256_file(stage.path / REFERENCE_FILE), "samples": len(reference) // len(reference.pattern_rows), "outputs_from": reference.name}


def verify_bundle(bundle: str | Path, checkpoint: str | Path, samples: int = REFERENCE_SAMPLES, log: Callable[[str], None] = print) -> Manifest:
    """Re-run every artifact's verification against the torch checkpoint the bundle was exported from.

    An INT8 artifact keeps failing if its accuracy budget was not met at quantization time."""
    bundle, checkpoint = Path(bundle), Path(checkpoint)
    manifest = Manifest.read(bundle)
    check_source(checkpoint, manifest)
    source = source_from_checkpoint(load_checkpoint(checkpoint), checkpoint)
    reference = reference_set(source, samples=samples)
    with BundleStage(bundle, manifest) as stage:
        for art in manifest.artifacts:
            result = verify_artifact(stage.path, art.file, art.precision, reference, FORMATS[art.format].backend)
            art.verification = with_budget(result, art.verification.budget_met)
            log(f"{art.file}: {'passed' if art.verified else 'FAILED'}")
        confirm_on_this_machine(stage, log)
        stage.commit()
    return stage.manifest
