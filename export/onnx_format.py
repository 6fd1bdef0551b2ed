"""ONNX export (torch.onnx, dynamo exporter) with a dynamic batch axis."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from .source import ExportSource, ModelSpecError

OPSET = 18
MAX_BATCH = 1024


def export_onnx(source: ExportSource, path: Path) -> None:
    """Write `source.model` as ONNX (opset 18) with its contract's input/output names and, when the contract
    says so, a dynamic batch axis."""
    import onnx

    contract = source.contract
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    dynamic = (tuple({0: batch} if contract.dynamic_batch else None for _ in contract.input_names),)  # forward(*inputs)
    for name in ("torch.onnx", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            source.traceable,
            tuple(source.example(2 if contract.dynamic_batch else 1).values()),
            dynamo=True,
            opset_version=OPSET,
            input_names=contract.input_names,
            output_names=contract.output_names,
            dynamic_shapes=dynamic,
            verbose=False,
        )
    program.optimize()
    model = program.model_proto
    fixed = [i.name for i in model.graph.input if contract.dynamic_batch and i.type.tensor_type.shape.dim[0].dim_value]
    if fixed:  # torch.onnx falls back to the example's shapes when the dynamic export fails
        raise ModelSpecError(
            f"the model fixes the batch size of {', '.join(fixed)} while tracing (len(x), or a batch size baked into a reshape/expand): "
            "use x.shape[0] in forward, or set `batch: 1` in the spec"
        )
    model.producer_name = "edgemm"
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
