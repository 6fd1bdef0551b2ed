"""Several built-in teachers as one: what `edgemm distill --teacher A --teacher B` teaches from."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgemm.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from edgemm.export.source import ExportSource
from edgemm.models import count_parameters
from edgemm.runtimes.manifest import sha256_file


class TeacherEnsemble(nn.Module):
    """Teachers that share one contract, answering together: class scores are the log of their mean class
    probabilities (a softmax of them gives that mean; distillation then softens them by its temperature as it does
    any teacher's scores), embeddings are concatenated."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, image: torch.Tensor, audio: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        answers = [member(image, audio, present) for member in self.members]
        log_probs = torch.stack([F.log_softmax(logits, 1) for logits, _ in answers])
        return torch.logsumexp(log_probs, 0) - math.log(len(answers)), torch.cat([embedding for _, embedding in answers], 1)


def ensemble_source(paths: list[Path]) -> tuple[ExportSource, Checkpoint]:
    """The checkpoints at `paths` as one teacher, and the first of them (whose data set and preprocessing all share).
    A checkpoint with another input, preprocessing, labels or data set than the first is refused by name."""
    checkpoints = [load_checkpoint(path) for path in paths]
    first = checkpoints[0]
    for path, ckpt in zip(paths, checkpoints):
        c = ckpt.contract
        if c.missing != "presence-mask" or c.logits_output is None or c.embedding_output is None:
            raise CheckpointError(f"{path}: an ensemble's teachers take image, audio and a presence mask and give class scores and an "
                                  "embedding (the built-in teacher's form); this checkpoint does not")  # fmt: skip
        if replace(c, embedding_dim=None) != replace(first.contract, embedding_dim=None) or ckpt.record.get("data") != first.record.get("data"):
            raise CheckpointError(f"{path}: not a teacher like {paths[0]} (its inputs, preprocessing, labels or data set differ); "
                                  "an ensemble's teachers must share them")  # fmt: skip
    model = TeacherEnsemble([ckpt.model.eval() for ckpt in checkpoints]).eval()
    contract = replace(first.contract, embedding_dim=sum(ckpt.contract.embedding_dim or 0 for ckpt in checkpoints) or None)
    members = [{"file": path.name, "sha256": sha256_file(path), "parameters": count_parameters(ckpt.model)} for path, ckpt in zip(paths, checkpoints)]
    info = {"name": f"av-digits-ensemble-of-{len(members)}", "parameters": count_parameters(model), "members": members, "data": first.record.get("data", {})}
    return ExportSource(model, contract, info), first
