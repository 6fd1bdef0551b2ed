"""`edgemm distill`: teach a small student from any teacher with a contract — the built-in teacher or the user's own
module — on labelled or unlabelled data.

The student (models/student.py) is sized from the teacher's contract: image shape, a log-mel or raw-waveform
audio branch, the class count, and, for a teacher that gives only an embedding, that embedding's size. Losses:
Hinton KD on the teacher's class scores, alignment with its embedding (cosine or MSE; through a learned
projection unless the student must reproduce the teacher's embedding space), cross-entropy and per-modality
auxiliary heads on the rows that carry labels. Each batch drops modalities as the contract's missing-modality
convention feeds them, and learns the teacher's answer to that very pattern. Batches are augmented — images
re-paired within their label and moved by a small affine, log-mels warped and masked (VTLP, SpecAugment) — and
the teacher answers each augmented batch as it is (consistent teaching: the student matches the teacher's function
on inputs neither has seen, not a fixed table of answers); without augmentation its answers are computed once and
cached. The best epoch on validation data is kept: accuracy where it is labelled, agreement with the teacher
otherwise (edgemm's verification rules); with `ema_decay`, the epochs' candidates are an exponential moving average of
the weights and BatchNorm statistics (torch's AveragedModel) instead of the raw weights.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from edgemm.checkpoint import Checkpoint, load_checkpoint
from edgemm.data.avdigits import config_from_record, load_split
from edgemm.ensemble import ensemble_source
from edgemm.export.source import ExportSource, module_device, torch_infer
from edgemm.models import StudentConfig, build_model, count_parameters
from edgemm.recipes import RecipeError, to_plain
from edgemm.runtimes.contract import ModelContract
from edgemm.runtimes.manifest import sha256_file
from edgemm.runtimes.paths import cache_root
from edgemm.runtimes.reference import Infer, ReferenceSet, fill_absent
from edgemm.runtimes.verification import accuracy_by_mode, agreement_by_mode, run_model
from edgemm.train import (
    Tensors,
    augment_features,
    jitter_images,
    presence,
    to_device,
    to_tensors,
    training_device,
)


@dataclass(frozen=True)
class DistillConfig:
    """Every hyper-parameter of a distillation run (the YAML recipe holds the same fields)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 4e-3
    weight_decay: float = 1e-4
    temperature: float = 4.0
    ce_weight: float = 1.0  # hard-label cross-entropy (labelled rows)
    kd_weight: float = 1.0  # T^2-scaled KL to the teacher's logits
    embed_weight: float = 1.0  # alignment of the fused embedding (through a learned projection)
    embed_loss: str = "cosine"  # or "mse"
    aux_weight: float = 0.3  # per-modality auxiliary heads (labelled rows)
    modality_dropout: float = 0.2
    repair: float = 0.5  # labelled rows whose image is swapped for another of the same label (new pairings)
    image_augment: float = 0.5  # rows whose image is moved by a small random affine (rotation, scale, shift)
    feature_augment: float = 0.5  # rows whose log-mel gets VTLP and SpecAugment (as the teacher was trained)
    vtlp: float = 0.08
    freq_masks: int = 1
    time_masks: int = 1
    patience: int = 6  # early stopping: epochs without a better val score
    ema_decay: float = 0.0  # > 0: validate and keep an exponential moving average of the weights and BN statistics
    val_fraction: float = 0.1  # held out of the training data when no validation data is given
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"  # torch device of the student, the teacher and the batches ("cuda" where there is one)
    limit: int | None = None
    student: StudentConfig = field(default_factory=StudentConfig)


@dataclass
class DistillData:
    """Preprocessed canonical samples (labels -1 where unlabelled), optional validation samples, and the record of
    where they came from (kept in the student checkpoint)."""

    train: Tensors
    val: Tensors | None
    record: dict[str, Any]


def builtin_data(teacher: Checkpoint) -> DistillData:
    """The built-in data set the teacher was trained on: its train and val splits."""
    data_cfg = config_from_record(teacher.record.get("data", {}))
    train, val = (to_tensors(load_split(name, data_cfg), teacher.image, teacher.audio) for name in ("train", "val"))
    return DistillData(train, val, teacher.record.get("data", {}))


def distill_checkpoint(paths: str | Path | list[str | Path], config: DistillConfig, data: DistillData | None = None, progress: bool = True) -> Checkpoint:
    """Distil a checkpoint's model (the built-in teacher), or several checkpoints' as one ensemble (`TeacherEnsemble`),
    on `data` or the built-in data set they were trained on."""
    from edgemm.sources import source_from_checkpoint

    training_device(config.device)  # before any checkpoint or data set is read
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if len(paths) > 1:
        source, first = ensemble_source(paths)
        return distill(source, data or builtin_data(first), config, "", progress)
    teacher = load_checkpoint(paths[0])
    return distill(source_from_checkpoint(teacher, paths[0]), data or builtin_data(teacher), config, sha256_file(paths[0]), progress)


def samples_data(train: Any, val: Any | None, record: dict[str, Any]) -> DistillData:
    """The user's samples (CalibrationSets from a folder, CSV or recording; `val` may be None)."""
    return DistillData(Tensors.of(train), Tensors.of(val) if val is not None else None, record)


def digest(teacher: nn.Module, data: Tensors, contract: ModelContract) -> str:
    """What the teacher's outputs depend on: its class and weights, the kind of device it runs on, its contract (the
    outputs read, the patterns and fill fed) and the samples."""
    key = [type(teacher).__qualname__, module_device(teacher).type, contract.to_dict()]
    h = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode())
    for tensor in [*teacher.state_dict().values(), data.image, data.audio]:
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def teacher_outputs(infer: Infer, data: Tensors, contract: ModelContract, key: str, progress: bool, batch: int = 256) -> dict[str, torch.Tensor]:
    """The teacher's canonical outputs (logits and/or embedding), each (patterns, N, …) in the contract's pattern
    order, the absent modality fed as the contract says; cached on disk."""
    path = cache_root() / f"teacher-outputs-{key}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return {k: torch.from_numpy(cached[k]) for k in cached.files}
    rows, n = list(contract.patterns.values()), len(data.labels)
    outputs: dict[str, list[np.ndarray]] = {}
    with tqdm(total=len(rows) * n, desc="teacher outputs", unit="sample", disable=not progress, leave=False) as bar:
        for row in rows:
            parts = []
            for s in range(0, n, batch):
                parts.append(infer(*ReferenceSet.patterns(data.image[s : s + batch].numpy(), data.audio[s : s + batch].numpy(), [row], contract.fill)))
                bar.update(len(parts[-1][next(iter(parts[-1]))]))
            for k in parts[0]:
                outputs.setdefault(k, []).append(np.concatenate([p[k] for p in parts]))
    arrays = {k: np.stack(v) for k, v in outputs.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def online_targets(infer: Infer, image: torch.Tensor, audio: torch.Tensor, present: torch.Tensor, fill: float) -> dict[str, torch.Tensor]:
    """The teacher's canonical outputs for this very batch, each row in its own pattern, the absent modality fed as
    `fill` (the contract's convention)."""
    keep = present.numpy()
    outputs = infer(fill_absent(image.numpy(), keep[:, 0], fill), fill_absent(audio.numpy(), keep[:, 1], fill), keep)
    return {k: torch.from_numpy(v) for k, v in outputs.items()}


class Repairing:
    """Re-pairs samples within their label: for a fraction of the labelled rows of a batch, the image of another
    training sample with the same label (the data set pairs each clip with only a few images)."""

    def __init__(self, labels: torch.Tensor, fraction: float) -> None:
        order = torch.argsort(labels, stable=True)
        self.fraction, self.order = fraction, order[labels[order] >= 0]  # labelled rows, grouped by label
        self.counts = torch.bincount(labels[self.order], minlength=int(labels.max()) + 1 if len(self.order) else 1)
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def __call__(self, idx: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Image indices for the rows `idx` (labels `labels`): their own, or another of the same label."""
        if self.fraction <= 0 or not len(self.order):
            return idx
        chosen = (torch.rand(len(idx), generator=generator) < self.fraction) & (labels >= 0)
        y = labels.clamp(min=0)
        other = self.order[(self.starts[y] + (torch.rand(len(idx), generator=generator) * self.counts[y]).long()).clamp(max=len(self.order) - 1)]
        return torch.where(chosen, other, idx)


def student_config(contract: ModelContract, base: StudentConfig, teacher_dim: int | None) -> StudentConfig:
    """The student for a contract: the modalities it takes and their shapes, a presence input where every pattern
    can occur, its class count (0 without class scores) and, for a teacher that gives only an embedding, that
    embedding's size (the student reproduces its space)."""
    classes = len(contract.labels) if contract.logits_output else 0
    return replace(base, image_shape=contract.image.shape if contract.image else (), audio_shape=contract.audio.shape if contract.audio else (),
                   num_classes=classes, embedding_dim=base.embedding_dim if classes else int(teacher_dim),
                   presence_input=len(contract.patterns) == 3)  # fmt: skip


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


def _split_val(data: DistillData, fraction: float, generator: torch.Generator) -> tuple[Tensors, Tensors]:
    if data.val is not None:
        return data.train, data.val
    order = torch.randperm(len(data.train.labels), generator=generator)
    cut = max(1, int(round(fraction * len(order))))
    pick = lambda idx: Tensors(data.train.image[idx], data.train.audio[idx], data.train.labels[idx])  # noqa: E731
    return pick(order[cut:]), pick(order[:cut])


def warmed_ema(decay: float):
    """torch's EMA update for `AveragedModel` with TensorFlow's warm-up (`num_updates`): at the n-th update the decay
    is min(decay, (1 + n) / (10 + n)), so the average follows the weights from the start instead of holding the
    initial ones for thousands of steps (at 0.999 without it: val at chance for 13 epochs, and a run stops early)."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        n = int(n_averaged)
        get_ema_multi_avg_fn(min(decay, (1 + n) / (10 + n)))(averaged, current, n_averaged)

    return update


def distill(teacher: ExportSource, data: DistillData, config: DistillConfig, teacher_sha: str = "", progress: bool = True) -> Checkpoint:
    """Distil `teacher` into a student sized from its contract, on `data`; returns the best-on-validation student.
    The teacher runs on `config.device` meanwhile and is back on the CPU afterwards, also when the run fails."""
    try:
        return _distill(teacher, data, config, teacher_sha, progress)
    finally:
        teacher.model.cpu()


def _distill(teacher: ExportSource, data: DistillData, config: DistillConfig, teacher_sha: str, progress: bool) -> Checkpoint:
    started = time.perf_counter()
    contract = teacher.contract
    if config.epochs < 1:
        raise RecipeError(f"epochs: {config.epochs}; distillation needs at least one")
    if not 0.0 <= config.ema_decay < 1.0:
        raise RecipeError(f"ema_decay: {config.ema_decay}; a decay per step in [0, 1) (0: off)")
    device = training_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train, val = _split_val(data, config.val_fraction, generator)
    if config.limit:
        train = Tensors(train.image[: config.limit], train.audio[: config.limit], train.labels[: config.limit])
    teacher.model.to(device).eval()
    first, rows = next(iter(contract.patterns)), torch.tensor(list(contract.patterns.values()))
    teacher_infer = torch_infer(teacher.model, contract)
    spectrogram = train.audio.dim() == 4  # VTLP/SpecAugment apply to a log-mel, not a waveform
    jitter = config.image_augment > 0 and train.image.dim() == 4
    online = config.repair > 0 or jitter or (config.feature_augment > 0 and spectrogram)  # targets for each augmented batch
    repairing = Repairing(train.labels, config.repair)
    if online:  # the teacher's output shapes, from one sample
        targets = online_targets(teacher_infer, train.image[:1], train.audio[:1], rows[:1].float(), contract.fill)
    else:
        targets = teacher_outputs(teacher_infer, train, contract, digest(teacher.model, train, contract), progress)
    t_logits, t_embed = targets.get("logits"), targets.get("embedding")

    student_cfg = student_config(contract, config.student, None if t_embed is None else t_embed.shape[-1])
    student = build_model(student_cfg.to_dict()).to(device)
    student_contract = Checkpoint(student, student_cfg.to_dict(), contract.image, contract.audio, list(contract.labels)).contract
    same_space = t_embed is not None and not student_cfg.num_classes  # the student's embedding is its output: the teacher's own space
    projection = (nn.Identity() if t_embed is None or same_space else nn.Linear(student_cfg.embedding_dim, t_embed.shape[-1])).to(device)
    optimizer = torch.optim.AdamW([*student.parameters(), *projection.parameters()], lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train.labels) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.1)
    ema = AveragedModel(student, multi_avg_fn=warmed_ema(config.ema_decay), use_buffers=True) if config.ema_decay else None
    kept = ema.module if ema is not None else student  # what is validated and kept each epoch
    held_out = ReferenceSet.build(teacher_infer, val.image.numpy(), val.audio.numpy(), val.labels.numpy(), name="teacher",
                                  rows=list(contract.patterns.values()), fill=contract.fill)  # fmt: skip
    score = accuracy_by_mode if held_out.labelled else agreement_by_mode
    metric = "accuracy" if held_out.labelled else "agreement with the teacher"
    teacher_val = score(held_out.outputs, held_out)
    history, best, best_state, stale = [], -1.0, None, 0
    bar = tqdm(total=config.epochs * steps_per_epoch, desc="distill", unit="step", disable=not progress)
    for epoch in range(config.epochs):
        student.train()
        sums = {"loss": 0.0, "kd": 0.0, "embed": 0.0}
        order = torch.randperm(len(train.labels), generator=generator)
        for s in range(0, len(order), config.batch_size):
            idx = order[s : s + config.batch_size]
            present = presence(contract, len(idx), config.modality_dropout, generator)
            y = train.labels[idx]
            image, audio = train.image[repairing(idx, y, generator)], train.audio[idx]
            if jitter:
                image = jitter_images(image, config.image_augment, generator)
            if spectrogram and config.feature_augment > 0:
                audio = augment_features(audio, config, generator)
            if online:
                batch_targets = online_targets(teacher_infer, image, audio, present, contract.fill)
            else:
                pattern = (present[:, None, :] == rows[None]).all(-1).float().argmax(1)  # its teacher outputs' row
                batch_targets = {k: v[pattern, idx] for k, v in targets.items()}
            batch_targets = dict(zip(batch_targets, to_device(device, *batch_targets.values())))
            image, audio, present, y = to_device(device, image, audio, present, y)
            logits, emb, aux_img, aux_aud = student.forward_train(image, audio, present)
            known = y >= 0
            terms = {}
            if logits is not None and known.any():
                terms["ce"] = config.ce_weight * F.cross_entropy(logits[known], y[known])
                terms["aux"] = config.aux_weight * sum(
                    (F.cross_entropy(aux[known], y[known], reduction="none") * present[known, k]).mean()
                    for k, aux in enumerate((aux_img, aux_aud)) if aux is not None
                )
            if t_logits is not None:
                terms["kd"] = config.kd_weight * kd_loss(logits, batch_targets["logits"], config.temperature)
            if t_embed is not None:
                terms["embed"] = config.embed_weight * embed_loss(projection(emb), batch_targets["embedding"], config.embed_loss)
            loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if ema is not None:
                ema.update_parameters(student)
            for k, v in (("loss", loss), ("kd", terms.get("kd", 0.0)), ("embed", terms.get("embed", 0.0))):
                sums[k] += float(torch.as_tensor(v).detach()) * len(idx)
            bar.update(1)
        kept.eval()
        got = score(run_model(torch_infer(kept, student_contract), held_out), held_out)
        n = len(order)
        history.append({"epoch": epoch + 1, **{k: round(v / n, 4) for k, v in sums.items()}, **{f"val_{k}": v for k, v in got.items()}})
        bar.write(f"epoch {epoch + 1}/{config.epochs}: kd {sums['kd'] / n:.3f} embed {sums['embed'] / n:.3f}  val {metric}: "
                  + "  ".join(f"{k} {v:.3f}" for k, v in got.items()) + f" | teacher {first} {teacher_val[first]:.3f}")  # fmt: skip
        if got[first] > best:
            best, best_state, stale = got[first], copy.deepcopy(kept.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                bar.write(f"early stop: no better val {metric} for {config.patience} epochs")
                break
    bar.close()
    student.load_state_dict(best_state)
    student.cpu()
    record = {
        "data": data.record,
        "distillation": {
            "recipe": to_plain(config),
            "teacher": {"sha256": teacher_sha, "name": teacher.info.get("name"), "parameters": count_parameters(teacher.model),
                        "val": teacher_val, **({"members": teacher.info["members"]} if "members" in teacher.info else {})},
            "val_metric": metric,
            "history": history,
            "best_val_fused": round(best, 4),
            "train_samples": len(train.labels),
            "labelled_train_samples": int((train.labels >= 0).sum()),
            "val_samples": len(val.labels),
            "seconds": round(time.perf_counter() - started, 1),
            "parameters": count_parameters(student),
        },
    }
    return Checkpoint(student.eval(), student_cfg.to_dict(), contract.image, contract.audio, list(contract.labels), record)
