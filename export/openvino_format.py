"""OpenVINO IR export through the ONNX graph, input shapes fixed except batch; fp16 compresses weights."""
from __future__ import annotations

import tempfile
from pathlib import Path

from .onnx_format import export_onnx
from .source import ExportSource


def export_openvino(source: ExportSource, path: Path) -> None:
    """Write the fp32 IR `path` (.xml) and its .bin."""
    import openvino as ov

    with tempfile.TemporaryDirectory(prefix="edgemm-ov-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(source, onnx_path)
        model = ov.convert_model(str(onnx_path))
    model.reshape(source.contract.input_shapes())
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(path), compress_to_fp16=False)


def openvino_fp16(fp32: Path, out: Path, precision: str = "fp16") -> None:
    """The fp32 IR saved again with fp16 weights (compute precision stays the device's choice)."""
    import openvino as ov

    ov.save_model(ov.Core().read_model(str(fp32)), str(out), compress_to_fp16=True)
