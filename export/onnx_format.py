"""ONNX export (torch.onnx, dynamo exporter) with a dynamic batch axis."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from edgemm.runtimes.reference import INPUT_NAMES, OUTPUT_NAMES

from .source import ExportSource

OPSET = 18
MAX_BATCH = 1024


def export_onnx(source: ExportSource, path: Path) -> None:
    """Write `source.model` as ONNX (opset 18) with named inputs/outputs and a dynamic batch axis."""
    import onnx

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    dynamic = {name: {0: batch} for name in INPUT_NAMES}
    for name in ("torch.onnx", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            source.model.eval(),
            source.example(2),
            dynamo=True,
            opset_version=OPSET,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=dynamic,
            verbose=False,
        )
    program.optimize()
    model = program.model_proto
    model.producer_name = "edgemm"
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
