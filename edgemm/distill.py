"""`edgemm distill`: teach a small student from the teacher's logits and fused embedding."""
from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from edgemm.checkpoint import Checkpoint
from edgemm.data.avdigits import config_from_record, load_split
from edgemm.models import StudentConfig, build_model, count_parameters
from edgemm.recipes import to_plain
from edgemm.runtimes.modalities import MODALITY_PATTERNS
from edgemm.runtimes.paths import cache_root
from edgemm.train import Tensors, accuracy, random_presence, to_tensors


@dataclass(frozen=True)
class DistillConfig:
    """Every hyper-parameter of a distillation run (the YAML recipe holds the same fields)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 4e-3
    weight_decay: float = 1e-4
    temperature: float = 4.0
    ce_weight: float = 1.0  # hard-label cross-entropy
    kd_weight: float = 1.0  # T^2-scaled KL to the teacher's logits
    embed_weight: float = 1.0  # alignment of the fused embedding (through a learned projection)
    embed_loss: str = "cosine"  # or "mse"
    aux_weight: float = 0.3  # per-modality auxiliary heads
    modality_dropout: float = 0.2
    patience: int = 6  # early stopping: epochs without a better val fused accuracy
    seed: int = 0
    threads: int | None = None
    limit: int | None = None
    student: StudentConfig = field(default_factory=StudentConfig)


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, data: Tensors, key: str, progress: bool, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher logits (3, N, C) and embeddings (3, N, D), one row per modality pattern, cached on disk."""
    path = cache_root() / f"teacher-outputs-{key}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return torch.from_numpy(cached["logits"]), torch.from_numpy(cached["embedding"])
    teacher.eval()
    logits, embedding = [], []
    bar = tqdm(total=3 * len(data.labels), desc="teacher outputs", unit="sample", disable=not progress, leave=False)
    for pattern in MODALITY_PATTERNS.values():
        pl, pe = [], []
        for s in range(0, len(data.labels), batch):
            img, aud = data.image[s : s + batch], data.audio[s : s + batch]
            out = teacher(img, aud, torch.tensor(pattern).expand(len(img), 2))
            pl.append(out[0])
            pe.append(out[1])
            bar.update(len(img))
        logits.append(torch.cat(pl))
        embedding.append(torch.cat(pe))
    bar.close()
    logits, embedding = torch.stack(logits), torch.stack(embedding)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, logits=logits.numpy(), embedding=embedding.numpy())
    tmp.replace(path)
    return logits, embedding


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's distillation loss: T^2 · KL(softmax(teacher/T) || softmax(student/T))."""
    return F.kl_div(
        F.log_softmax(student_logits / temperature, 1), F.log_softmax(teacher_logits / temperature, 1), log_target=True, reduction="batchmean"
    ) * temperature**2


def embed_loss(projected: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "cosine":
        return (1 - F.cosine_similarity(projected, target, dim=1)).mean()
    if kind == "mse":
        return F.mse_loss(projected, target)
    raise ValueError(f"embed_loss must be cosine or mse, got {kind!r}")


def distill(teacher: Checkpoint, config: DistillConfig, teacher_sha: str = "", progress: bool = True) -> Checkpoint:
    """Distil `teacher` into a student per `config`; returns the best-on-validation student."""
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    data_cfg = config_from_record(teacher.record.get("data", {}))
    train_split = load_split("train", data_cfg)
    if config.limit:
        train_split = train_split.subset(np.arange(min(config.limit, len(train_split))))
    train_data = to_tensors(train_split, teacher.image, teacher.audio)
    val_data = to_tensors(load_split("val", data_cfg), teacher.image, teacher.audio)
    key = hashlib.sha256(f"{teacher_sha}|{data_cfg.key()}|{config.limit}|{teacher.audio}".encode()).hexdigest()[:16]
    t_logits, t_embed = teacher_outputs(teacher.model, train_data, key, progress)

    student_cfg = replace(config.student, image_shape=teacher.image.shape, audio_shape=teacher.audio.shape, num_classes=len(teacher.labels))
    student = build_model(student_cfg.to_dict())
    projection = nn.Linear(student_cfg.embedding_dim, t_embed.shape[-1])
    params = list(student.parameters()) + list(projection.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train_data.labels) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.1)
    teacher_val = {mode: accuracy(teacher.model, val_data, mode) for mode in MODALITY_PATTERNS}
    history, best, best_state, stale = [], -1.0, None, 0
    bar = tqdm(total=config.epochs * steps_per_epoch, desc="distill", unit="step", disable=not progress)
    for epoch in range(config.epochs):
        student.train()
        sums = {"loss": 0.0, "kd": 0.0, "embed": 0.0}
        order = torch.randperm(len(train_data.labels), generator=generator)
        for s in range(0, len(order), config.batch_size):
            idx = order[s : s + config.batch_size]
            present = random_presence(len(idx), config.modality_dropout, generator)
            pattern = ((1 - present[:, 1]) + 2 * (1 - present[:, 0])).long()  # row in MODALITY_PATTERNS order
            logits, emb, aux_img, aux_aud = student.forward_train(train_data.image[idx], train_data.audio[idx], present)
            y = train_data.labels[idx]
            kd = kd_loss(logits, t_logits[pattern, idx], config.temperature)
            al = embed_loss(projection(emb), t_embed[pattern, idx], config.embed_loss)
            aux = (F.cross_entropy(aux_img, y, reduction="none") * present[:, 0]).mean() + (
                F.cross_entropy(aux_aud, y, reduction="none") * present[:, 1]
            ).mean()
            loss = config.ce_weight * F.cross_entropy(logits, y) + config.kd_weight * kd + config.embed_weight * al + config.aux_weight * aux
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            for k, v in (("loss", loss), ("kd", kd), ("embed", al)):
                sums[k] += v.item() * len(idx)
            bar.update(1)
        val = {mode: accuracy(student, val_data, mode) for mode in MODALITY_PATTERNS}
        n = len(order)
        history.append({"epoch": epoch + 1, **{k: round(v / n, 4) for k, v in sums.items()}, **{f"val_{k}": round(v, 4) for k, v in val.items()}})
        bar.write(
            f"epoch {epoch + 1}/{config.epochs}: kd {sums['kd'] / n:.3f}  val student fused {val['fused']:.3f} "
            f"image-only {val['image_only']:.3f} audio-only {val['audio_only']:.3f} | teacher fused {teacher_val['fused']:.3f}"
        )
        if val["fused"] > best:
            best, best_state, stale = val["fused"], copy.deepcopy(student.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                bar.write(f"early stop: no better val accuracy for {config.patience} epochs")
                break
    bar.close()
    student.load_state_dict(best_state)
    record = {
        "data": teacher.record.get("data", {}),
        "distillation": {
            "recipe": to_plain(config),
            "teacher": {"sha256": teacher_sha, "parameters": count_parameters(teacher.model), "val": {k: round(v, 4) for k, v in teacher_val.items()}},
            "history": history,
            "best_val_fused": round(best, 4),
            "train_samples": len(train_data.labels),
            "seconds": round(time.perf_counter() - started, 1),
            "parameters": count_parameters(student),
        },
    }
    return Checkpoint(student.eval(), student_cfg.to_dict(), teacher.image, teacher.audio, list(teacher.labels), record)
