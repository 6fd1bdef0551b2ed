"""`edgemm export`: checkpoint → staged bundle → every requested format exported and verified → swap."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgemm.checkpoint import Checkpoint, load_checkpoint
from edgemm.data.avdigits import AVDigitsConfig, config_from_record, load_split
from edgemm.data.features import split_tensors
from edgemm.export.bundle import BundleStage, new_manifest
from edgemm.export.registry import export_into, parse_formats
from edgemm.export.source import ExportSource, ReferenceSet, torch_infer
from edgemm.models import count_parameters
from edgemm.runtimes.manifest import Manifest, sha256_file


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


def reference_set(source: ExportSource, data: AVDigitsConfig, samples: int = 256, split: str = "test") -> ReferenceSet:
    """Held-out samples of the checkpoint's data set (class-balanced head of the split) with torch outputs."""
    held_out = load_split(split, data)
    held_out = held_out.subset(np.arange(min(samples, len(held_out))))
    image, audio = split_tensors(held_out, source.image, source.audio)
    return ReferenceSet.build(torch_infer(source.model), image, audio, held_out.labels)


def export_checkpoint(
    checkpoint: str | Path, formats: str, out: str | Path, samples: int = 256, log: Callable[[str], None] = print
) -> Manifest:
    """Export a checkpoint to a new bundle at `out` (replacing it atomically); returns the manifest.

    Every format is tried; failures are recorded in the manifest, never lose the other formats.
    """
    rows = parse_formats(formats)
    ckpt = load_checkpoint(checkpoint)
    source = source_from_checkpoint(ckpt, Path(checkpoint))
    reference = reference_set(source, config_from_record(ckpt.record.get("data", {})), samples)
    with BundleStage(out, new_manifest(source), fresh=True) as stage:
        for fmt in rows:
            export_into(stage, fmt, source, reference, log)
        stage.commit()
    return stage.manifest
