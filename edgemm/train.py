"""`edgemm train`: fit the teacher on av-digits with modality dropout and auxiliary per-modality heads."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edgemm.checkpoint import Checkpoint
from edgemm.data.avdigits import LABELS, AVDigitsConfig, Split, load_split
from edgemm.data.features import fit_audio_norm, split_tensors
from edgemm.export.source import module_device
from edgemm.models import build_model, count_parameters
from edgemm.models.teacher import TeacherConfig
from edgemm.recipes import RecipeError
from edgemm.runtimes.contract import ModelContract
from edgemm.runtimes.modalities import MODALITY_PATTERNS
from edgemm.runtimes.preprocess import AudioSpec, ImageSpec


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (recorded in the checkpoint sidecar)."""

    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    modality_dropout: float = 0.2  # probability of dropping each modality (never both)
    aux_weight: float = 0.5  # weight of the image-only and audio-only auxiliary losses
    image_augment: float = 0.0  # fraction of training images moved by a small random affine (jitter_images)
    feature_augment: float = 0.5  # fraction of training clips whose log-mel gets VTLP and SpecAugment
    vtlp: float = 0.08  # vocal-tract-length perturbation: mel axis warped by a factor in 1 ± vtlp
    freq_masks: int = 1  # SpecAugment: masks of up to 5 mel bands and of up to 10 frames
    time_masks: int = 1
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"  # torch device of the model and the batches ("cuda" where there is one)
    limit: int | None = None  # use only the first N training samples (tiny runs, tests)
    model: dict = field(default_factory=lambda: TeacherConfig().to_dict())
    data: AVDigitsConfig = AVDigitsConfig()


@dataclass
class Tensors:
    image: torch.Tensor
    audio: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def of(cls, samples) -> "Tensors":
        """Preprocessed numpy samples (a CalibrationSet) as tensors; labels -1 where unlabelled."""
        return cls(torch.from_numpy(samples.image), torch.from_numpy(samples.audio), torch.from_numpy(np.asarray(samples.labels, np.int64)))


def to_tensors(split: Split, image_spec: ImageSpec, audio_spec: AudioSpec) -> Tensors:
    image, audio = split_tensors(split, image_spec, audio_spec)
    return Tensors(torch.from_numpy(image), torch.from_numpy(audio), torch.from_numpy(split.labels))


@torch.no_grad()
def predict_logits(model: torch.nn.Module, data: Tensors, mode: str = "fused", batch: int = 256) -> torch.Tensor:
    """Logits of `model` on all of `data` with one modality pattern (fused, image-only, audio-only)."""
    model.eval()
    device = module_device(model)
    outs = []
    for s in range(0, len(data.labels), batch):
        img, aud = data.image[s : s + batch].to(device), data.audio[s : s + batch].to(device)
        present = torch.tensor(MODALITY_PATTERNS[mode], device=device).expand(len(img), 2)
        outs.append(model(img, aud, present)[0].cpu())
    return torch.cat(outs) if outs else torch.zeros(0, 10)


def accuracy(model: torch.nn.Module, data: Tensors, mode: str = "fused") -> float:
    return float((predict_logits(model, data, mode).argmax(1) == data.labels).float().mean())


def random_presence(n: int, p_drop: float, generator: torch.Generator) -> torch.Tensor:
    """(n, 2) presence flags: each modality dropped with `p_drop`, never both."""
    u = torch.rand(n, generator=generator)
    present = torch.ones(n, 2)
    present[u < p_drop, 0] = 0
    present[(u >= p_drop) & (u < 2 * p_drop), 1] = 0
    return present


def presence(contract: ModelContract, n: int, p_drop: float, generator: torch.Generator) -> torch.Tensor:
    """(n, 2) presence rows a model with `contract` is fed: modality dropout where it allows every pattern, else its
    only pattern."""
    if len(contract.patterns) == 3:
        return random_presence(n, p_drop, generator)
    return torch.tensor(next(iter(contract.patterns.values()))).expand(n, 2)


class FeatureAugmentSettings(Protocol):
    """The feature-augmentation fields a training or distillation config carries."""

    feature_augment: float
    vtlp: float
    freq_masks: int
    time_masks: int


def augment_features(audio: torch.Tensor, config: FeatureAugmentSettings, generator: torch.Generator) -> torch.Tensor:
    """VTLP and SpecAugment on a `feature_augment` fraction of a batch of normalised log-mels (B, 1, M, T): the mel
    axis stretched or squeezed by a factor in 1 ± `vtlp` (linear interpolation, the top band repeated), then
    frequency and time masks set to the mean (0)."""
    b, _, m, t = audio.shape
    chosen = torch.rand(b, generator=generator) < config.feature_augment
    alpha = torch.where(chosen, 1 + config.vtlp * (2 * torch.rand(b, generator=generator) - 1), torch.ones(b))
    pos = (torch.arange(m)[None] * alpha[:, None]).clamp(max=m - 1)
    lo = pos.floor().long()
    hi, w = (lo + 1).clamp(max=m - 1), (pos - lo)[:, None, :, None]
    pick = lambda idx: audio.gather(2, idx[:, None, :, None].expand(b, 1, m, t))  # noqa: E731
    out = pick(lo) * (1 - w) + pick(hi) * w
    for count, size, axis in ((config.freq_masks, 5, 2), (config.time_masks, 10, 3)):
        length = out.shape[axis]
        idx = torch.arange(length)
        for _ in range(count):
            width = torch.randint(0, size + 1, (b,), generator=generator) * chosen
            start = (torch.rand(b, generator=generator) * (length - width + 1)).long()
            mask = (idx[None] >= start[:, None]) & (idx[None] < (start + width)[:, None])
            out = out.masked_fill(mask[:, None, :, None] if axis == 2 else mask[:, None, None, :], 0.0)
    return out


def jitter_images(image: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """A `fraction` of a batch of images (B, C, H, W) rotated by up to ±10°, scaled by 0.9–1.1 and shifted by up to
    a tenth of their size (bilinear, borders repeat the edge); the other rows unchanged."""
    chosen = torch.rand(len(image), generator=generator) < fraction
    u = (torch.rand(len(image), 4, generator=generator) * 2 - 1) * chosen[:, None]  # in [-1, 1]; 0: identity
    angle, scale = u[:, 0] * math.radians(10), 1 + 0.1 * u[:, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, 0.2 * u[:, 2]], 1), torch.stack([sin, cos, 0.2 * u[:, 3]], 1)], 1)
    moved = F.grid_sample(image, F.affine_grid(theta, list(image.shape), align_corners=False), padding_mode="border", align_corners=False)
    return torch.where(chosen[:, None, None, None], moved, image)


def training_device(name: str) -> torch.device:
    """The torch device a run asked for, refused with a `RecipeError` when it is not a device name or this torch
    cannot use it here."""
    try:
        device = torch.device(name) if isinstance(name, str) else None
    except RuntimeError:
        device = None
    if device is None:
        raise RecipeError(f"device: {name!r} is not a torch device name (cpu, cuda, cuda:1, …)")
    if device.type not in ("cpu", "cuda"):
        raise RecipeError(f"device: {name!r}; training runs on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"device: {name!r}, but this torch ({torch.__version__}) sees no CUDA GPU here")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise RecipeError(f"device: {name!r}, but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def to_device(device: torch.device | str, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Batches made (and augmented) on the CPU, moved to where the model is."""
    return tuple(t.to(device, non_blocking=True) for t in tensors)


def train(config: TrainConfig, progress: bool = True) -> Checkpoint:
    """Train a model per `config`; returns the best-on-validation checkpoint (not yet saved)."""
    started = time.perf_counter()
    device = training_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train_split = load_split("train", config.data)
    if config.limit:
        train_split = train_split.subset(np.arange(min(config.limit, len(train_split))))
    image_spec = ImageSpec(height=config.model["image_shape"][1], width=config.model["image_shape"][2])
    audio_spec = fit_audio_norm(train_split.audio, AudioSpec())
    model_config = {**config.model, "audio_shape": list(audio_spec.shape), "image_shape": list(image_spec.shape)}
    train_data = to_tensors(train_split, image_spec, audio_spec)
    val_data = to_tensors(load_split("val", config.data), image_spec, audio_spec)

    model = build_model(model_config).to(device)
    steps = config.epochs * -(-len(train_data.labels) // config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=max(steps, 1), pct_start=0.15)
    history, best, best_state = [], -1.0, None
    bar = tqdm(total=steps, desc="train", unit="step", disable=not progress)
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(train_data.labels), generator=generator)
        for s in range(0, len(order), config.batch_size):
            idx = order[s : s + config.batch_size]
            present = random_presence(len(idx), config.modality_dropout, generator)
            audio = augment_features(train_data.audio[idx], config, generator)
            image = jitter_images(train_data.image[idx], config.image_augment, generator) if config.image_augment > 0 else train_data.image[idx]
            image, audio, present, y = to_device(device, image, audio, present, train_data.labels[idx])
            logits, _, aux_img, aux_aud = model.forward_train(image, audio, present)
            loss = F.cross_entropy(logits, y) + config.aux_weight * (F.cross_entropy(aux_img, y) + F.cross_entropy(aux_aud, y))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        val = {mode: accuracy(model, val_data, mode) for mode in MODALITY_PATTERNS}
        history.append({"epoch": epoch + 1, **{f"val_{k}": round(v, 4) for k, v in val.items()}})
        bar.write(f"epoch {epoch + 1}/{config.epochs}: val fused {val['fused']:.3f}  image-only {val['image_only']:.3f}  audio-only {val['audio_only']:.3f}")
        if val["fused"] > best:
            best, best_state = val["fused"], copy.deepcopy(model.state_dict())
    bar.close()
    model.load_state_dict(best_state)
    model.cpu()
    record = {
        "data": {"name": "av-digits", **asdict(config.data)},
        "training": {
            **{k: v for k, v in asdict(config).items() if k not in ("data", "model")},
            "history": history,
            "best_val_fused": round(best, 4),
            "train_samples": len(train_data.labels),
            "seconds": round(time.perf_counter() - started, 1),
            "parameters": count_parameters(model),
        },
    }
    return Checkpoint(model.eval(), model_config, image_spec, audio_spec, list(LABELS), record)


def tiny_config(**overrides) -> TrainConfig:
    """A seconds-long configuration for tests: small data set, narrow model, twelve short epochs."""
    model = replace(TeacherConfig(), width=8, dim=32, heads=2, embedding_dim=16).to_dict()
    data = AVDigitsConfig(per_class=30, prosodies=1)
    return replace(TrainConfig(epochs=12, batch_size=16, lr=3e-3, model=model, data=data), **overrides)
