"""Full-integer TFLite INT8 through PT2E: litert-torch's quantizer (symmetric int8, per-channel weights),
observers calibrated on the same samples as the other INT8 artifacts, int8 inputs and outputs."""
from __future__ import annotations

from pathlib import Path

import torch
from edgemm.calibration import CalibrationSet
from edgemm.runtimes.reference import ReferenceSet

from .onnx_int8 import Int8Options
from .source import ExportSource
from .tflite_format import NamedOutputs, quiet_converter


def pt2e_quantize(
    fp32: Path, out: Path, calibration: CalibrationSet, held_out: ReferenceSet, options: Int8Options, source: ExportSource
) -> dict:
    """Calibrate PT2E observers on the calibration rows and convert the torch graph of `source` (the fp32 `.tflite`
    is not re-read) to a full-integer `.tflite`; returns how, for the manifest."""
    per_channel = options.per_channel
    example = source.example(1)
    with quiet_converter():
        import litert_torch
        from litert_torch.quantize import pt2e_quantizer
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

        quantizer = pt2e_quantizer.PT2EQuantizer().set_global(pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=per_channel))
        graph = torch.export.export(NamedOutputs(source).eval(), (), example).module()
        prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for feed in calibration.feeds():  # batch-1 rows, each sample in every modality pattern its contract allows
                prepared(**{name: torch.from_numpy(x) for name, x in feed.items()})
        converted = move_exported_model_to_eval(quantize_pt2e.convert_pt2e(prepared, fold_quantize=False))
        edge = litert_torch.convert(converted, sample_kwargs=example, quant_config=QuantConfig(pt2e_quantizer=quantizer))
        out.parent.mkdir(parents=True, exist_ok=True)
        edge.export(str(out))
    return {"tool": "litert_torch PT2E", "weights": "int8 symmetric, " + ("per-channel" if per_channel else "per-tensor"),
            "activations": "int8", "io": "int8 (the runtime quantizes inputs and dequantizes outputs)"}  # fmt: skip
