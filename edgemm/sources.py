"""What the pipeline starts from: a model as an export source (a built-in checkpoint or the user's module),
its held-out reference samples, and calibration data — every one shaped by the model's contract."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgemm.calibration import (
    CalibrationError,
    CalibrationSet,
    from_arrays,
    from_csv,
    from_folder,
    from_stream,
)
from edgemm.checkpoint import Checkpoint, CheckpointError
from edgemm.data.avdigits import SAMPLE_RATE, config_from_record, load_split
from edgemm.data.features import split_tensors
from edgemm.export.source import ExportSource, torch_infer
from edgemm.models import count_parameters
from edgemm.runtimes.contract import ModelContract
from edgemm.runtimes.manifest import Manifest, sha256_file
from edgemm.runtimes.media import VIDEO_SUFFIXES
from edgemm.runtimes.reference import ReferenceSet, on_grid

BUILTIN = "av-digits"
REFERENCE_SAMPLES = 300  # per modality pattern: 1 accuracy point is 3 samples, visible on every device; ~1.5 MB


def source_from_checkpoint(ckpt: Checkpoint, path: Path | None = None) -> ExportSource:
    """The export view of a built-in checkpoint: model, contract and manifest info."""
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
    return ExportSource(ckpt.model.eval(), ckpt.contract, info)


def check_source(checkpoint: Path, manifest: Manifest) -> None:
    """Refuse a checkpoint other than the one the bundle's manifest records (by sha256)."""
    recorded = manifest.model.get("checkpoint", {}).get("sha256")
    if recorded and sha256_file(checkpoint) != recorded:
        raise CheckpointError(f"{checkpoint}: not the checkpoint this bundle was exported from (sha256 differs)")


def calibration_set(spec: str, contract: ModelContract, size: int, data: dict[str, Any] | None = None, seed: int = 0) -> CalibrationSet:
    """Resolve a data source: `av-digits[:split]` (the built-in data set `data` records), a folder of paired
    files, a CSV list, or a video with its audio — preprocessed as the contract says."""
    if spec == BUILTIN or spec.startswith(BUILTIN + ":"):
        if (data or {}).get("name") != BUILTIN:
            raise CalibrationError(f"{spec}: this model was not trained on the built-in data set; give a folder, a .csv list or a video")
        split_name = spec.partition(":")[2] or "train"
        split = load_split(split_name, config_from_record(data))
        return from_arrays(split.images, split.audio, SAMPLE_RATE, contract, split.labels, f"{BUILTIN}:{split_name}", size, seed)
    path = Path(spec)
    if path.is_dir():
        return from_folder(path, contract, size, seed)
    if path.suffix.lower() == ".csv":
        return from_csv(path, contract, size, seed)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return from_stream(path, contract, size)
    raise CalibrationError(f"{spec}: not a data source (give {BUILTIN}[:split], a folder, a .csv list or a video file)")


def reference_set(source: ExportSource, data: str | None = None, samples: int = REFERENCE_SAMPLES, split: str = "test") -> ReferenceSet:
    """Held-out samples with the torch model's outputs on them, computed on the inputs exactly as the bundle's
    reference file stores them: the built-in data set's `split` (class-balanced head) for a built-in model,
    else the user's `data` source (up to `samples`, class-stratified where labelled)."""
    contract = source.contract
    if data is None and source.info.get("data", {}).get("name", BUILTIN) != BUILTIN:
        raise CalibrationError(f"{source.info.get('name', 'this model')} was not trained on the built-in data set: give held-out samples (--data)")
    if data is None:
        held_out = load_split(split, config_from_record(source.info.get("data", {})))
        held_out = held_out.subset(np.arange(min(samples, len(held_out))))
        (image, audio), labels = split_tensors(held_out, contract.image, contract.audio), held_out.labels
    else:
        samples_set = calibration_set(data, contract, samples, source.info.get("data"))
        image, audio, labels = samples_set.image, samples_set.audio, samples_set.labels
    infer = torch_infer(source.model, contract)
    return ReferenceSet.build(infer, on_grid(image), on_grid(audio), labels, rows=list(contract.patterns.values()), fill=contract.fill)
