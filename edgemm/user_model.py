"""Bring your own model: a factory `path/models.py:build`, weights without pickle, a spec file, one traced check.

The user's module is called positionally with its contract's inputs (image, audio, mask — those it takes, in
that order, as `ModelContract.input_names`) and may return one tensor, a tuple in `output_names` order, or
a dict keyed by the output names (`edgemm.export.source.ContractModule` fixes that form for the exporters).
"""
from __future__ import annotations

import importlib.util
import json
import pickle
import sys
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgemm.export.source import ExportSource, ModelSpecError, outputs_in_order
from edgemm.runtimes.contract import ContractError, ModelContract
from edgemm.runtimes.errors import one_line


def read_spec(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a `model.yaml` (or .json) spec file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError(f"{path}: unreadable spec ({exc})") from exc
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError: both name line and column
        raise ContractError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} ({exc})") from exc


def load_spec(path: str | Path) -> ModelContract:
    """The contract a `model.yaml` (or .json) spec file declares."""
    return ModelContract.from_spec(read_spec(path), str(path))


def load_factory(ref: str) -> nn.Module:
    """Import `path/to/models.py:build` (or `package.module:build`) and call it with no arguments."""
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise ModelSpecError(f"--model {ref!r}: give FILE.py:FUNCTION or module:FUNCTION (e.g. models.py:build)")
    try:
        if target.endswith(".py"):
            path = Path(target).resolve()
            if not path.is_file():
                raise ModelSpecError(f"{target}: no such file")
            sys.path.insert(0, str(path.parent))  # its own sibling imports work, as when run as a script
            try:
                spec = importlib.util.spec_from_file_location(f"edgemm_user_{path.stem}", path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.parent))
        else:
            module = importlib.import_module(target)
        factory = getattr(module, attr)
    except ModelSpecError:
        raise
    except AttributeError:
        raise ModelSpecError(f"{target} has no {attr!r}") from None
    except Exception as exc:
        raise ModelSpecError(f"importing {target} failed: {type(exc).__name__}: {exc}") from exc
    try:
        model = factory()
    except Exception as exc:
        raise ModelSpecError(f"{ref}() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelSpecError(f"{ref}() returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a safetensors file or a state_dict saved by torch.save (read with weights_only: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise ModelSpecError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ModelSpecError(f"{path}: unreadable safetensors file ({exc})") from exc
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ModelSpecError(
                f"{path}: holds pickled objects, not only tensors (a whole saved model?); edgemm does not run pickled code: "
                "save model.state_dict() with torch.save or safetensors instead"
            ) from exc
        except (RuntimeError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ModelSpecError(f"{path}: not a torch state_dict file ({one_line(exc)})") from exc
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]  # the common {"state_dict": ..., "epoch": ...} training checkpoint
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ModelSpecError(f"{path}: not a state_dict (a mapping of names to tensors)")
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in state][:5] + [f"unexpected {k}" for k in state if k not in own][:5]
    problems += [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items() if k in own and v.shape != own[k].shape][:5]
    if problems:
        raise ModelSpecError(f"{path}: the weights do not fit the model ({'; '.join(problems)})")
    model.load_state_dict(state)
    return model.eval()


def user_source(model: nn.Module, contract: ModelContract, name: str) -> ExportSource:
    """Your module as an export source: checked against its contract by one traced call, described for the manifest."""
    from edgemm.models import count_parameters

    info = {"name": name, "arch": type(model).__name__, "parameters": count_parameters(model), "source": "user"}
    return ExportSource(model.eval(), check_model(model, contract), info)


def check_model(model: nn.Module, contract: ModelContract) -> ModelContract:
    """One call on example inputs (batch 2) before any export: every output present and shaped as the spec says.
    Returns the contract with the embedding size filled in from the model when the spec left it out."""
    shapes = contract.input_shapes(2)
    described = ", ".join(f"{name} {tuple(shape)}" for name, shape in shapes.items())
    try:
        with torch.no_grad():
            raw = model.eval()(*ExportSource(model, contract).example(2).values())
    except Exception as exc:
        raise ModelSpecError(f"the model cannot take the spec's inputs ({described}): {one_line(exc)}") from exc
    outputs = dict(zip(contract.output_names, outputs_in_order(raw, contract.output_names)))
    for name, tensor in outputs.items():
        if tensor.ndim != 2 or tensor.shape[0] != 2:
            raise ModelSpecError(f"output {name!r} has shape {tuple(tensor.shape)} for a batch of 2; edgemm needs (batch, values)")
    if contract.logits_output is not None and outputs[contract.logits_output].shape[1] != len(contract.labels):
        got = outputs[contract.logits_output].shape[1]
        raise ModelSpecError(f"output {contract.logits_output!r} gives {got} class scores; the spec lists {len(contract.labels)} labels")
    if contract.embedding_output is not None:
        dim = int(outputs[contract.embedding_output].shape[1])
        if contract.embedding_dim not in (None, dim):
            raise ModelSpecError(f"output {contract.embedding_output!r} is {dim}-dimensional; the spec says embedding_dim {contract.embedding_dim}")
        contract = replace(contract, embedding_dim=dim)
    return contract
