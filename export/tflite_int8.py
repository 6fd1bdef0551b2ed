"""Full-integer TFLite INT8 through PT2E: litert-torch's quantizer (symmetric int8, per-channel weights),
observers calibrated on the same samples as the other INT8 artifacts, float inputs and outputs.

The LiteRT converter's strict Q/DQ mode keeps the quantize ops at the inputs and the dequantize ops at the outputs
as the PT2E graph has them (QUANTIZE/DEQUANTIZE in the file, every other op int8 as before); its default mode folds
them into int8 inputs and outputs, which the runtime then (de)quantized in numpy: ~8 numpy calls per call, ~40 µs
at batch 1 on the default student (0.24 → 0.20 ms, 2 threads, AMD EPYC AVX2, two cores busy). litert-torch sets the
converter's mode itself and exposes no flag for it in the path that takes a PT2E quantizer: `strict_qdq` sets it on
the converter's config for one conversion; a litert-torch without that config keeps int8 I/O (the runtime handles
both, and the manifest says which, read from the written file)."""
from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import numpy as np
import torch
from edgemm.calibration import CalibrationSet
from edgemm.runtimes.backends.litert_backend import interpreter_class
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
        with strict_qdq():
            edge = litert_torch.convert(converted, sample_kwargs=example, quant_config=QuantConfig(pt2e_quantizer=quantizer))
        out.parent.mkdir(parents=True, exist_ok=True)
        edge.export(str(out))
    inputs = interpreter_class()(model_path=str(out)).get_input_details()  # what the file takes, as written
    floats = all(np.dtype(d["dtype"]).kind == "f" for d in inputs)
    io = "float (quantize/dequantize ops in the model)" if floats else "int8 (the runtime quantizes inputs and dequantizes outputs)"
    return {"tool": "litert_torch PT2E", "weights": "int8 symmetric, " + ("per-channel" if per_channel else "per-tensor"),
            "activations": "int8", "io": io}  # fmt: skip


_PATCH = threading.Lock()  # one conversion at a time in strict mode: the converter's config class is shared


@contextlib.contextmanager
def strict_qdq():
    """Within: litert-torch's conversions run the LiteRT converter in strict Q/DQ mode (see the module docstring);
    a litert-torch without that setting converts as it would anyway."""
    try:
        from litert_torch._convert import litert_converter

        module = litert_converter.converter_api_ext
        config_class = module.ConvertToTFLConfig
        settable = hasattr(config_class(), "strict_qdq_mode")
    except (ImportError, AttributeError):
        settable = False
    if not settable:
        yield
        return

    def strict_config(*args, **kwargs):
        config = config_class(*args, **kwargs)
        config.strict_qdq_mode = True
        return config

    with _PATCH:
        module.ConvertToTFLConfig = strict_config
        try:
            yield
        finally:
            module.ConvertToTFLConfig = config_class
