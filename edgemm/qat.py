"""Quantization-aware fine-tuning: the fallback when post-training INT8 cannot meet the accuracy budget.

Fake quantization is placed where onnxruntime's QDQ export puts Q/DQ pairs: the weights of every
Conv1d/Conv2d/Linear (per-channel symmetric int8), their input activations and their outputs (for a conv,
after the batch norm that the export folds into it), per-tensor symmetric int8 with ranges calibrated
on the same samples as the export. Batch norm statistics are frozen, and the model — any model with a
contract, fed through it — is fine-tuned for a few epochs against its own fp32 outputs (KD, or cosine for an
embedding) and the labels where the data has them. The adapted weights are then exported and quantized
post-training as usual: the weights have learned to sit where int8 rounding costs the least.
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
from edgemm.distill import kd_loss
from edgemm.export.source import (
    ContractModule,
    ExportSource,
    canonical_outputs,
    torch_infer,
)
from edgemm.runtimes.reference import ReferenceSet
from edgemm.runtimes.verification import accuracy_by_mode, agreement_by_mode, run_model
from edgemm.train import Tensors, presence


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
    return [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def _output_points(model: nn.Module) -> list[nn.Module]:
    """Modules whose output is a quantized Conv/Gemm output once exported: a conv's batch norm
    (folded into it), a conv without one, every linear."""
    points = []
    for seq in (m for m in model.modules() if isinstance(m, nn.Sequential)):
        layers = list(seq)
        for i, layer in enumerate(layers):
            if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
                follows = layers[i + 1] if i + 1 < len(layers) else None
                points.append(follows if isinstance(follows, (nn.BatchNorm1d, nn.BatchNorm2d)) else layer)
    return points + [m for m in model.modules() if isinstance(m, nn.Linear)]


def qat_finetune(
    source: ExportSource, train: Tensors, held_out: ReferenceSet, calibration: CalibrationSet, config: QATConfig = QATConfig(), progress: bool = True
) -> tuple[nn.Module, dict]:
    """Fine-tune a copy of `source`'s model with int8 fake quantization, activation ranges calibrated on the
    same `calibration` set the INT8 export uses, against its own fp32 outputs (KD on class scores, cosine on an
    embedding) and the labels where `train` has them, fed through its contract; scored each epoch on
    `held_out`. Returns the tuned model without the fake-quant ops, and the record of the run."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    contract = source.contract
    reference = ContractModule(copy.deepcopy(source.model), contract).eval()
    model = copy.deepcopy(source.model)
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
    net = ContractModule(model, contract)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    score = accuracy_by_mode if held_out.labelled else agreement_by_mode
    history = []
    steps = config.epochs * -(-len(train.labels) // config.batch_size)
    bar = tqdm(total=steps, desc="qat", unit="step", disable=not progress)
    for epoch in range(config.epochs):
        model.train()
        for bn in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
            bn.eval()  # frozen statistics: the export folds them into the convs
        order = torch.randperm(len(train.labels), generator=generator)
        for s in range(0, len(order), config.batch_size):
            idx = order[s : s + config.batch_size]
            batch = (train.image[idx], train.audio[idx], presence(contract, len(idx), config.modality_dropout, generator))
            with torch.no_grad():
                target = canonical_outputs(reference, contract, *batch)
            out = canonical_outputs(net, contract, *batch)
            if "logits" in out:
                y = train.labels[idx]
                known = y >= 0
                loss = kd_loss(out["logits"], target["logits"], config.temperature)
                loss = loss + (F.cross_entropy(out["logits"][known], y[known]) if known.any() else 0.0)
            else:
                loss = (1 - F.cosine_similarity(out["embedding"], target["embedding"], dim=1)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update(1)
        model.eval()
        val = score(run_model(torch_infer(model, contract), held_out), held_out)
        history.append({"epoch": epoch + 1, **val})
        bar.write(f"qat epoch {epoch + 1}/{config.epochs}: held-out (fake-quant) " + "  ".join(f"{k} {v:.3f}" for k, v in val.items()))
    bar.close()
    for hook in hooks:
        hook.remove()
    for layer in _quantizable(model):
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
    return model.eval(), {**config.__dict__, "history": history, "train_samples": len(train.labels), "seconds": round(time.perf_counter() - started, 1)}


__all__ = ["QATConfig", "qat_finetune"]
