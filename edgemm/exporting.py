"""`edgemm export`: checkpoint → staged bundle → every requested format exported and verified → swap."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgemm.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from edgemm.data.avdigits import AVDigitsConfig, config_from_record, load_split
from edgemm.data.features import split_tensors
from edgemm.export.bundle import BundleStage, new_manifest
from edgemm.export.onnx_int8 import Int8Options
from edgemm.export.registry import FORMATS, export_into, parse_formats
from edgemm.export.source import ExportSource, torch_infer
from edgemm.export.tensorrt_engine import build_engines
from edgemm.export.verify import confirm_on_this_machine, verify_artifact
from edgemm.models import count_parameters
from edgemm.runtimes.manifest import Manifest, sha256_file
from edgemm.runtimes.reference import REFERENCE_FILE, ReferenceSet, on_grid

REFERENCE_SAMPLES = 300  # per modality pattern: 1 accuracy point is 3 samples, visible on every device; ~1.5 MB


def source_from_checkpoint(ckpt: Checkpoint, path: Path | None = None) -> ExportSource:
    """The export view of a checkpoint: model, preprocessing, labels and manifest info."""
    info = {
        "name": f"av-digits-{ckpt.model_config.get('arch', 'model')}",
        "arch": ckpt.model_config.get("arch"),
        "parameters": count_parameters(ckpt.model),
        "embedding_dim": ckpt.model_config.get("embedding_dim"),
        "config": ckpt.model_config,
        "data": ckpt.record.get("data", {}),
    }
    if path is not None:
        info["checkpoint"] = {"file": Path(path).name, "sha256": sha256_file(Path(path))}
    return ExportSource(ckpt.model.eval(), ckpt.image, ckpt.audio, ckpt.labels, info)


def reference_set(source: ExportSource, data: AVDigitsConfig, samples: int = REFERENCE_SAMPLES, split: str = "test") -> ReferenceSet:
    """Held-out samples of the checkpoint's data set (class-balanced head of the split) with torch outputs,
    computed on the inputs exactly as the bundle's reference file stores them."""
    held_out = load_split(split, data)
    held_out = held_out.subset(np.arange(min(samples, len(held_out))))
    image, audio = split_tensors(held_out, source.image, source.audio)
    return ReferenceSet.build(torch_infer(source.model), on_grid(image), on_grid(audio), held_out.labels)


def export_checkpoint(
    checkpoint: str | Path,
    formats: str,
    out: str | Path,
    samples: int = REFERENCE_SAMPLES,
    log: Callable[[str], None] = print,
    int8_calib: str | None = None,
    int8: Int8Options = Int8Options(),
) -> Manifest:
    """Export a checkpoint to a new bundle at `out` (replacing it atomically); returns the manifest.

    Every format is tried; failures are recorded in the manifest, never lose the other formats. With
    `int8_calib`, every format's INT8 artifact is added on that calibration source (`edgemm quantize`);
    TensorRT engines are built last, from the bundle's ONNX, where TensorRT and a GPU exist."""
    rows = parse_formats(formats)
    if (int8_calib or FORMATS["tensorrt"] in rows) and FORMATS["onnx"] not in rows:
        rows.insert(0, FORMATS["onnx"])
        log("onnx added: INT8 is measured against it and TensorRT engines are built from it")
    ckpt = load_checkpoint(checkpoint)
    source = source_from_checkpoint(ckpt, Path(checkpoint))
    reference = reference_set(source, config_from_record(ckpt.record.get("data", {})), samples)
    with BundleStage(out, new_manifest(source), fresh=True) as stage:
        for fmt in rows:
            if fmt.exporter is not None:
                export_into(stage, fmt, source, reference, log)
        save_reference(stage, reference)
        confirm_on_this_machine(stage, log)
        stage.commit()
    if int8_calib:
        from edgemm.quantizing import (
            quantize_bundle,  # quantizing uses this module's helpers
        )

        quantize_bundle(out, int8_calib, int8, checkpoint=checkpoint, log=log)
    if FORMATS["tensorrt"] in rows:
        with BundleStage(out, Manifest.read(Path(out))) as stage:
            build_engines(stage, Path(out), reference, log)
            stage.commit()
    return Manifest.read(Path(out))


def save_reference(stage: BundleStage, reference: ReferenceSet) -> None:
    """The held-out samples with torch's outputs inside the bundle: every machine verifies artifacts on them."""
    reference.save(stage.path / REFERENCE_FILE)
    stage.manifest.model["reference"] = {"file": REFERENCE_FILE, "sha256": sha256_file(stage.path / REFERENCE_FILE), "samples": len(reference) // 3, "outputs_from": reference.name}


def check_source(checkpoint: Path, manifest: Manifest) -> None:
    """Refuse a checkpoint other than the one the bundle's manifest records (by sha256)."""
    recorded = manifest.model.get("checkpoint", {}).get("sha256")
    if recorded and sha256_file(checkpoint) != recorded:
        raise CheckpointError(f"{checkpoint}: not the checkpoint this bundle was exported from (sha256 differs)")


def verify_bundle(bundle: str | Path, checkpoint: str | Path, samples: int = REFERENCE_SAMPLES, log: Callable[[str], None] = print) -> Manifest:
    """Re-run every artifact's verification against the torch checkpoint the bundle was exported from.

    An INT8 artifact keeps failing if its accuracy budget was not met at quantization time."""
    bundle, checkpoint = Path(bundle), Path(checkpoint)
    manifest = Manifest.read(bundle)
    check_source(checkpoint, manifest)
    ckpt = load_checkpoint(checkpoint)
    source = source_from_checkpoint(ckpt, checkpoint)
    reference = reference_set(source, config_from_record(ckpt.record.get("data", {})), samples)
    with BundleStage(bundle, manifest) as stage:
        for art in manifest.artifacts:
            budget_met = art.verification.get("budget_met", True)
            result = verify_artifact(stage.path, art.file, art.precision, reference, FORMATS[art.format].backend)
            result["passed"] = bool(result.get("passed")) and budget_met
            if "budget_met" in art.verification:
                result["budget_met"] = budget_met
            art.verification = result
            log(f"{art.file}: {'passed' if art.verified else 'FAILED'}")
        confirm_on_this_machine(stage, log)
        stage.commit()
    return stage.manifest
