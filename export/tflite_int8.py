"""Full-integer TFLite INT8 through PT2E: litert-torch's quantizer (symmetric int8, per-channel weights),
observers calibrated on the same samples as the other INT8 artifacts, float inputs and outputs.

The LiteRT converter's strict Q/DQ mode keeps the quantize ops at the inputs and the dequantize ops at the outputs
as the PT2E graph has them (QUANTIZE/DEQUANTIZE in the file, every other op int8 as before); its default mode folds
them into int8 inputs and outputs, which the runtime then (de)quantized in numpy: ~8 numpy calls per call, ~40 µs
at batch 1 on the default student (0.24 → 0.20 ms, 2 threads, AMD EPYC AVX2, two cores busy). litert-torch sets the
converter's mode itself and exposes no flag for it in the path that takes a PT2E quantizer: `strict_qdq` sets it on
the converter's config for one conversion; a litert-torch without that config keeps int8 I/O (the runtime handles
both, and the manifest says which)."""
from __future__ import annotations

import contextlib
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
        with strict_qdq() as strict:
            edge = litert_torch.convert(converted, sample_kwargs=example, quant_config=QuantConfig(pt2e_quantizer=quantizer))
        out.parent.mkdir(parents=True, exist_ok=True)
        edge.export(str(out))
    io = "float (quantize/dequantize ops in the model)" if strict else "int8 (the runtime quantizes inputs and dequantizes outputs)"
    return {"tool": "litert_torch PT2E", "weights": "int8 symmetric, " + ("per-channel" if per_channel else "per-tensor"),
            "activations": "int8", "io": io}  # fmt: skip


@contextlib.contextmanager
def strict_qdq():
    """Within: litert-torch's conversions run the LiteRT converter in strict Q/DQ mode (see the module docstring).
    Yields whether it could be set."""
    try:
        from litert_torch._convert import litert_converter

        config_class = litert_converter.converter_api_ext.ConvertToTFLConfig
    except (ImportError, AttributeError):
        yield False
        return
    if not hasattr(config_class(), "strict_qdq_mode"):
        yield False
        return

    def strict_config():
        config = config_class()
        config.strict_qdq_mode = True
        return config

    litert_converter.converter_api_ext.ConvertToTFLConfig = strict_config
    try:
        yield True
    finally:
        litert_converter.converter_api_ext.ConvertToTFLConfig = config_class
