"""Checkpoints: weights in safetensors (no pickle) plus a JSON sidecar with everything else."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from edgemm.models import build_model
from edgemm.runtimes.contract import ModelContract
from edgemm.runtimes.errors import EdgemmError
from edgemm.runtimes.preprocess import AudioSpec, ImageSpec

CHECKPOINT_FORMAT = "edgemm-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(EdgemmError):
    """A checkpoint or its sidecar is missing, corrupt or does not fit its config."""


@dataclass
class Checkpoint:
    """A model with the preprocessing and labels it was trained for."""

    model: nn.Module
    model_config: dict[str, Any]
    image: ImageSpec | None  # None: the model takes no image
    audio: AudioSpec | None
    labels: list[str]
    record: dict[str, Any] = field(default_factory=dict)  # data/training settings and results

    @property
    def contract(self) -> ModelContract:
        """The built-in interface: image, audio and a presence mask in (a student of a teacher without one of them, or
        that requires both, takes what it takes and no mask); logits (unless the model has no classes: a student of
        an embedding teacher) and the fused embedding out."""
        dim = self.model_config.get("embedding_dim")
        logits = "logits" if self.model_config.get("num_classes", len(self.labels)) else None
        masked = self.model_config.get("presence_input", True)
        return ModelContract(image=self.image, audio=self.audio, labels=tuple(self.labels), embedding_dim=int(dim) if dim else None, logits_output=logits,
                             missing="presence-mask" if masked else "required", mask_input="present" if masked else None)  # fmt: skip


def sidecar(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def recipe_file(path: str | Path) -> Path:
    """The distillation recipe (YAML) kept beside a student checkpoint."""
    return Path(path).with_suffix(".recipe.yaml")


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write `path` (.safetensors) and its `.json` sidecar, each atomically."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in ckpt.model.state_dict().items()}
    meta = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": ckpt.model_config,
        "preprocessing": {"image": ckpt.image and ckpt.image.to_dict(), "audio": ckpt.audio and ckpt.audio.to_dict()},
        "labels": ckpt.labels,
        **ckpt.record,
    }
    _atomic_write(path, lambda tmp: save_file(state, tmp, metadata={"format": CHECKPOINT_FORMAT}))
    _atomic_write(sidecar(path), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`; the model comes back in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    meta_path = sidecar(path)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: missing or unreadable checkpoint config ({exc})") from exc
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{meta_path}: not an edgemm checkpoint config of version <= {CHECKPOINT_VERSION}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors file ({exc})") from exc
    try:
        model = build_model(meta["model"])
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the config in {meta_path.name} ({first})") from exc
    record = {k: v for k, v in meta.items() if k not in ("format", "version", "model", "preprocessing", "labels")}
    return Checkpoint(
        model=model.eval(),
        model_config=meta["model"],
        image=ImageSpec.from_dict(meta["preprocessing"]["image"]) if meta["preprocessing"]["image"] else None,
        audio=AudioSpec.from_dict(meta["preprocessing"]["audio"]) if meta["preprocessing"]["audio"] else None,
        labels=list(meta["labels"]),
        record=record,
    )


def default_checkpoint(name: str = "teacher") -> Path:
    """A checkpoint shipped inside the package: "teacher", "teacher16" (the same recipe, 16 epochs) or "student"."""
    return Path(__file__).parent / "checkpoints" / f"{name}.safetensors"

