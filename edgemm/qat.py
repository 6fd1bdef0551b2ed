"""Quantization-aware fine-tuning: the fallback when post-training INT8 cannot meet the accuracy budget.

Fake quantization is placed where onnxruntime's QDQ export puts Q/DQ pairs: the weights of every
Conv2d/Linear (per-channel symmetric int8), their input activations and their outputs (for a conv,
after the batch norm that the export folds into it), per-tensor symmetric int8 with ranges calibrated
on the same samples as the export. Batch norm statistics are frozen, and the student is fine-tuned for a few epochs against its own fp32 outputs (KD) and the
labels. The adapted weights are then exported and quantized post-training as usual: the weights have
learned to sit where int8 rounding costs the least.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from tqdm import tqdm

from edgemm.calibration import CalibrationSet
from edgemm.checkpoint import Checkpoint
from edgemm.data.avdigits import config_from_record, load_split
from edgemm.distill import kd_loss
from edgemm.runtimes.modalities import MODALITY_PATTERNS
from edgemm.train import accuracy, random_presence, to_tensors


@dataclass(frozen=True)
class QATConfig:
    epochs: int = 3
    batch_size: int = 64
    lr: float = 2e-4
    temperature: float = 2.0
    modality_dropout: float = 0.2
    per_channel: bool = True  # weight scales per output channel, as the export will use
    reduce_range: bool = False  # 7-bit weights ([-64, 64], onnxruntime's reduced range), as the chosen INT8 configuration uses
    seed: int = 0


class WeightFakeQuant(nn.Module):
    """Symmetric int8 (or 7-bit) fake quantization of a weight, per output channel or per tensor (straight-through)."""

    def __init__(self, per_channel: bool, reduce_range: bool = False) -> None:
        super().__init__()
        self.per_channel = per_channel
        self.qmax = 64 if reduce_range else 127

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        q = self.qmax
        if not self.per_channel:
            scale = (weight.detach().abs().max() / q).clamp(min=1e-12)
            return torch.fake_quantize_per_tensor_affine(weight, scale, torch.zeros((), dtype=torch.int32), -q, q)
        scale = (weight.detach().abs().flatten(1).amax(1) / q).clamp(min=1e-12)
        zero = torch.zeros(weight.shape[0], dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -q, q)


class ActivationFakeQuant:
    """Per-tensor symmetric int8 fake quantization of a layer's input.

    While `calibrating`, it only records the abs-max it sees (the range ORT's MinMax calibration takes
    on the same samples); afterwards that range is fixed."""

    def __init__(self) -> None:
        self.calibrating = True
        self.amax = torch.zeros(())

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            self.amax = torch.maximum(self.amax, x.detach().abs().max())
            return x
        scale = (self.amax / 127).clamp(min=1e-12).reshape(())
        return torch.fake_quantize_per_tensor_affine(x, scale, torch.zeros((), dtype=torch.int32), -128, 127)

    def on_input(self, module: nn.Module, args: tuple) -> tuple:
        return (self.quantize(args[0]), *args[1:])

    def on_output(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return self.quantize(output)


def _quantizable(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _output_points(model: nn.Module) -> list[nn.Module]:
    """Modules whose output is a quantized Conv/Gemm output once exported: a conv's batch norm
    (folded into it), a conv without one, every linear."""
    points = []
    for seq in (m for m in model.modules() if isinstance(m, nn.Sequential)):
        layers = list(seq)
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.Conv2d):
                follows = layers[i + 1] if i + 1 < len(layers) else None
                points.append(follows if isinstance(follows, nn.BatchNorm2d) else layer)
    return points + [m for m in model.modules() if isinstance(m, nn.Linear)]


def qat_finetune(student: Checkpoint, calibration: CalibrationSet, config: QATConfig = QATConfig(), progress: bool = True) -> Checkpoint:
    """Fine-tune a copy of `student` with int8 fake quantization, activation ranges calibrated on the
    same `calibration` set the INT8 export uses; returns it without the fake-quant ops."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    data_cfg = config_from_record(student.record.get("data", {}))
    train = to_tensors(load_split("train", data_cfg), student.image, student.audio)
    val = to_tensors(load_split("val", data_cfg), student.image, student.audio)
    reference = copy.deepcopy(student.model).eval()
    model = copy.deepcopy(student.model)
    quantizers, hooks = [], []
    for layer in _quantizable(model):
        parametrize.register_parametrization(layer, "weight", WeightFakeQuant(config.per_channel, config.reduce_range))
        quantizers.append(ActivationFakeQuant())
        hooks.append(layer.register_forward_pre_hook(quantizers[-1].on_input))
    for point in _output_points(model):
        quantizers.append(ActivationFakeQuant())
        hooks.append(point.register_forward_hook(quantizers[-1].on_output))
    model.eval()
    with torch.no_grad():
        for feed in calibration.feeds():
            model(*(torch.from_numpy(x) for x in feed.values()))  # the contract's input order: the model's arguments
    for quantizer in quantizers:
        quantizer.calibrating = False
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    history = []
    steps = config.epochs * -(-len(train.labels) // config.batch_size)
    bar = tqdm(total=steps, desc="qat", unit="step", disable=not progress)
    for epoch in range(config.epochs):
        model.train()
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.eval()  # frozen statistics: the export folds them into the convs
        order = torch.randperm(len(train.labels), generator=generator)
        for s in range(0, len(order), config.batch_size):
            idx = order[s : s + config.batch_size]
            present = random_presence(len(idx), config.modality_dropout, generator)
            with torch.no_grad():
                target = reference(train.image[idx], train.audio[idx], present)[0]
            logits = model(train.image[idx], train.audio[idx], present)[0]
            loss = F.cross_entropy(logits, train.labels[idx]) + kd_loss(logits, target, config.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update(1)
        val_acc = {mode: round(accuracy(model, val, mode), 4) for mode in MODALITY_PATTERNS}
        history.append({"epoch": epoch + 1, **val_acc})
        bar.write(f"qat epoch {epoch + 1}/{config.epochs}: val (fake-quant) " + "  ".join(f"{k} {v:.3f}" for k, v in val_acc.items()))
    bar.close()
    for hook in hooks:
        hook.remove()
    for layer in _quantizable(model):
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
    record = {**student.record, "qat": {**config.__dict__, "history": history, "seconds": round(time.perf_counter() - started, 1)}}
    return Checkpoint(model.eval(), student.model_config, student.image, student.audio, student.labels, record)


__all__ = ["QATConfig", "qat_finetune"]
