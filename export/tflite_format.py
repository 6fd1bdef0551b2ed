"""TFLite / LiteRT export through litert-torch: fp32, fp16 weights (ai-edge-quantizer float casting).

The graph has a fixed batch of 1 (the form phones and microcontrollers run): litert-torch 0.10
cannot lower this model with a dynamic batch (its slicing of the `present` flags breaks on the
symbolic size), and XNNPACK cannot resize the static graph afterwards. The LiteRT backend runs
larger batches row by row.
"""
from __future__ import annotations

import os
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from .source import ExportSource


class NamedOutputs(nn.Module):
    """Wraps a model so the TFLite signature names its outputs as the contract does."""

    def __init__(self, source: ExportSource) -> None:
        super().__init__()
        self.model, self.names = source.traceable, source.contract.output_names

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.model(*inputs.values())))


@contextmanager
def quiet_converter():
    """litert-torch, its converter and ai-edge-quantizer print stages, C++ logs and summaries on stdout and
    stderr: keep them out of the user's terminal (shown only if the conversion fails)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as captured:
        for fd in saved:
            os.dup2(captured.fileno(), fd)
        try:
            from litert_torch import progress

            progress.console.quiet = True
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        except BaseException:
            restore(saved)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace")[-4000:])
            raise
        finally:
            restore(saved)


def restore(saved: dict[int, int]) -> None:
    """Put the saved stdout/stderr file descriptors back (idempotent)."""
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, copy in list(saved.items()):
        os.dup2(copy, fd)
        os.close(copy)
        del saved[fd]


def export_tflite(source: ExportSource, path: Path) -> None:
    """Write the fp32 `.tflite` (batch 1; the signature's inputs and outputs named as the contract says)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_converter():
        import litert_torch

        edge = litert_torch.convert(NamedOutputs(source).eval(), sample_kwargs=source.example(1))
        edge.export(str(path))


def tflite_fp16(fp32: Path, out: Path, precision: str = "fp16") -> None:
    """fp16 weights, float compute: ai-edge-quantizer's float-casting weight-only recipe on the fp32 file."""
    with quiet_converter():
        from ai_edge_quantizer import qtyping, quantizer, recipe_manager
        from ai_edge_quantizer.algorithm_manager import AlgorithmName

        recipe = recipe_manager.RecipeManager()
        recipe.add_weight_only_config(
            regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING
        )
        result = quantizer.Quantizer(str(fp32), recipe.get_quantization_recipe()).quantize()
        result.export_model(str(out), overwrite=True)
