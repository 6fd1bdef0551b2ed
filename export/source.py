"""What an export starts from: a torch model with its contract, and the fixed calling form exporters trace."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from edgemm.runtimes.contract import ModelContract
from edgemm.runtimes.errors import EdgemmError
from edgemm.runtimes.reference import Infer
from torch import nn


class ModelSpecError(EdgemmError):
    """A model whose call does not match its contract (inputs it cannot take, outputs missing or misshaped)."""


def outputs_in_order(raw: Any, names: list[str]) -> tuple[torch.Tensor, ...]:
    """A model's return value — one tensor, a tuple in `names` order, or a dict by name — as a tuple in `names` order."""
    if isinstance(raw, torch.Tensor):
        raw = (raw,)
    if isinstance(raw, dict):
        missing = [n for n in names if n not in raw]
        if missing:
            raise ModelSpecError(f"the model returned outputs {list(raw)}; the spec names {', '.join(map(repr, missing))}, which it lacks")
        return tuple(raw[n] for n in names)
    if isinstance(raw, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in raw):
        if len(raw) != len(names):
            raise ModelSpecError(f"the model returned {len(raw)} tensors; the spec names {len(names)} outputs ({', '.join(names)})")
        return tuple(raw)
    raise ModelSpecError(f"the model returned {type(raw).__name__}: return a tensor, a tuple of tensors or a dict of them")


class ContractModule(nn.Module):
    """A model with a fixed calling form: positional inputs in `contract.input_names` order, a tuple of outputs
    in `contract.output_names` order — what ONNX, OpenVINO and LiteRT trace."""

    def __init__(self, model: nn.Module, contract: ModelContract) -> None:
        super().__init__()
        self.model, self.names = model, contract.output_names

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return outputs_in_order(self.model(*inputs), self.names)


@dataclass
class ExportSource:
    """A model in eval mode, its contract and descriptive info for the manifest."""

    model: nn.Module
    contract: ModelContract
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def traceable(self) -> ContractModule:
        return ContractModule(self.model, self.contract).eval()

    def example(self, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
        """Example inputs by name, shaped as the contract says (the mask all ones); batch 2 by default: a batch-1
        example lets exporters freeze the batch axis."""
        gen = torch.Generator().manual_seed(seed)
        mask = self.contract.mask_input if self.contract.missing == "presence-mask" else None
        return {name: torch.ones(shape) if name == mask else torch.randn(*shape, generator=gen) for name, shape in self.contract.input_shapes(batch).items()}


def module_device(module: nn.Module) -> torch.device:
    """Where a module's weights are (the CPU for one without any)."""
    return next((t.device for t in itertools.chain(module.parameters(), module.buffers())), torch.device("cpu"))


def canonical_outputs(module: ContractModule, contract: ModelContract, image: torch.Tensor, audio: torch.Tensor, present: torch.Tensor) -> dict[str, torch.Tensor]:
    """A contract module's canonical outputs (`logits`, `embedding`) on canonical torch batches: the absent modality
    filled, then named, laid out and masked by `contract.feeds` as for every backend; gradients reach the weights."""

    def filled(x: torch.Tensor, k: int) -> np.ndarray:
        return torch.where(present[:, k].reshape((-1,) + (1,) * (x.dim() - 1)) > 0, x, torch.full_like(x, contract.fill)).numpy()

    feeds = contract.feeds(filled(image, 0), filled(audio, 1), present.numpy())
    device = module_device(module)
    return contract.outputs(dict(zip(contract.output_names, module(*(torch.from_numpy(feeds[n]).to(device) for n in contract.input_names)))))


def torch_infer(model: nn.Module, contract: ModelContract) -> Infer:
    """An `infer(image, audio, present)` callable for a torch model (eval mode, no grad), numpy in and out,
    canonical outputs: fed and read through its contract, as every backend is."""
    module = ContractModule(model, contract).eval()

    @torch.no_grad()
    def infer(image: np.ndarray, audio: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
        outputs = canonical_outputs(module, contract, *(torch.from_numpy(x) for x in (image, audio, present)))
        return {k: v.cpu().numpy() for k, v in outputs.items()}

    return infer
