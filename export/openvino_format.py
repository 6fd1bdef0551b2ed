"""OpenVINO IR export (fp32 and fp16 weights) through the ONNX graph, input shapes fixed except batch."""
from __future__ import annotations

import tempfile
from pathlib import Path

from .onnx_format import export_onnx
from .source import ExportSource


def companion(xml: str) -> tuple[str, ...]:
    """The weights file an IR `.xml` needs beside it."""
    return (str(Path(xml).with_suffix(".bin")),)


def export_openvino(source: ExportSource, path: Path, precision: str) -> None:
    """Write `path` (.xml) and its .bin; fp16 compresses the weights (compute precision is the device's)."""
    import openvino as ov

    with tempfile.TemporaryDirectory(prefix="edgemm-ov-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(source, onnx_path, "fp32")
        model = ov.convert_model(str(onnx_path))
    model.reshape({"image": [-1, *source.image.shape], "audio": [-1, *source.audio.shape], "present": [-1, 2]})
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(path), compress_to_fp16=precision == "fp16")
