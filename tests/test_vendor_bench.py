"""Vendor benchmark tools beside `edgemm bench` (issue 11): their real output parsed, the bench rows given their
figure, and the backends' tuned configuration giving the same answers as a plainly configured runtime.

Artifacts are tiny and made here (an ONNX graph by hand, its OpenVINO IRs, a torch module through litert-torch):
seconds, not an export."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from edgemm.runtimes.reference import ReferenceSet

from edgemm.bundle_bench import BenchRow, Subject, bench, render_bench
from edgemm.vendor_bench import (
    TOOLS,
    find_tool,
    parse_benchmark_app,
    parse_litert_benchmark,
    vendor_command,
    vendor_latency,
)

SHAPES = {"image": (1, 8, 8), "present": (2,)}


def feeds(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.standard_normal((n, *SHAPES["image"])).astype(np.float32), "present": rng.integers(0, 2, (n, 2)).astype(np.float32)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """model.onnx (dynamic batch: image (N,1,8,8) + present (N,2) → embedding (N,16), logits (N,6)), its IR in f32
    and with fp16-compressed weights."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(a.astype(np.float32), name) for name, a in
               (("w1", rng.standard_normal((66, 16)) * 0.2), ("b1", rng.standard_normal(16) * 0.1), ("w2", rng.standard_normal((16, 6)) * 0.3))]  # fmt: skip
    nodes = [helper.make_node("Flatten", ["image"], ["flat"], axis=1), helper.make_node("Concat", ["flat", "present"], ["x"], axis=1),
             helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["embedding"]), helper.make_node("MatMul", ["embedding", "w2"], ["logits"])]  # fmt: skip
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 8, 8]),
                                              helper.make_tensor_value_info("present", TensorProto.FLOAT, ["N", 2])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 16]),
                               helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 6])], weights)  # fmt: skip
    out = tmp_path_factory.mktemp("tiny")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), out / "model.onnx")
    files = {"onnx": out / "model.onnx"}
    try:
        import openvino as ov
    except ImportError:
        return files
    ir = ov.convert_model(str(out / "model.onnx"))
    ov.save_model(ir, str(out / "model.xml"), compress_to_fp16=False)
    ov.save_model(ir, str(out / "model.fp16.xml"), compress_to_fp16=True)
    return {**files, "ir": out / "model.xml", "ir16": out / "model.fp16.xml"}


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    """An fp32 and a full-integer (int8 I/O) .tflite of a small conv net, through litert-torch (~5 s)."""
    torch = pytest.importorskip("torch")
    litert_torch = pytest.importorskip("litert_torch")
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4 * 8 * 8 + 2, 6)

        def forward(self, image, present):
            return {"logits": self.fc(torch.cat([torch.relu(self.conv(image)).flatten(1), present], 1))}

    torch.manual_seed(0)
    model = Tiny().eval()
    example = {name: torch.from_numpy(v) for name, v in feeds(1).items()}
    out = tmp_path_factory.mktemp("tflite")
    litert_torch.convert(model, sample_kwargs=example).export(str(out / "model.tflite"))
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    prepared = quantize_pt2e.prepare_pt2e(torch.export.export(model, (), example).module(), quantizer)
    with torch.no_grad():
        for i in range(16):
            prepared(**{name: torch.from_numpy(v) for name, v in feeds(1, seed=i).items()})
    converted = move_exported_model_to_eval(quantize_pt2e.convert_pt2e(prepared, fold_quantize=False))
    litert_torch.convert(converted, sample_kwargs=example, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(out / "model.int8.tflite"))
    return {"fp32": out / "model.tflite", "int8": out / "model.int8.tflite"}


def needs(tool: str):
    return pytest.mark.skipif(find_tool(tool) is None, reason=f"{tool} is not installed here")


# --- the tools' real output ---------------------------------------------------------------------------------------


@needs("benchmark_app")
def test_benchmark_app_output_is_parsed(tiny, tmp_path):
    command, parse = vendor_command(tiny["ir"], "openvino", 1, 50, 5, tmp_path)
    assert "-load_config" in command and command[command.index("-shape") + 1] == "image[1,1,8,8],present[1,2]"
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout + done.stderr
    median, mean = parse(text)
    assert 0 < median < 50 and 0 < mean < 50
    assert "INFERENCE_NUM_THREADS: 1" in text and "PERFORMANCE_HINT: LATENCY" in text and "Start inference synchronously" in text
    line = next(line for line in text.splitlines() if "Median:" in line)  # e.g. "[ INFO ]    Median:        48.21 us"
    value, unit = line.split()[-2:]
    assert median == pytest.approx(float(value) / (1000 if unit == "us" else 1))
    assert parse_benchmark_app(text.replace(line, line.replace(f"{value} {unit}", "1.25 ms"))) == (1.25, mean)


@needs("litert-benchmark")
def test_litert_benchmark_output_is_parsed(tiny_tflite, tmp_path):
    """This environment's litert-benchmark runs its own main() with its median read before the report rounds it to
    0.01 ms; the installed executable's rounded report is read as well (a tool from elsewhere runs that way)."""
    command, parse = vendor_command(tiny_tflite["int8"], "tflite", 2, 50, 5, tmp_path)
    assert command[:2] == [sys.executable, "-c"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Num threads:     2" in done.stderr
    median, mean = parse(done.stdout)
    from_text = parse_litert_benchmark(done.stdout + done.stderr)  # the printed table, without the JSON file
    assert (median, mean) == from_text and 0 < median < 50 and 0 <= mean < 50
    printed = next(line for line in done.stdout.splitlines() if line.startswith("Inference (median):"))
    assert printed.split()[-2] == f"{median:.2f}"  # the unrounded median is the one the tool printed, rounded
    rounded = [find_tool("litert-benchmark"), *command[3:]]  # the executable itself: its 0.01 ms figure
    done = subprocess.run(rounded, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "unrounded" not in done.stdout and parse_litert_benchmark(done.stdout)[0] == float(
        next(line for line in done.stdout.splitlines() if line.startswith("Inference (median):")).split()[-2])


def test_no_tool_missing_tool_and_failing_tool_are_notes(tiny, tmp_path, monkeypatch):
    assert vendor_latency(tiny["onnx"], "onnx", 2) is None  # onnxruntime's wheel has no benchmark CLI
    monkeypatch.setitem(TOOLS, "tflite", "no-such-benchmark-tool")
    missing = vendor_latency(tiny["onnx"], "tflite", 2)
    assert missing.p50_ms is None and "no-such-benchmark-tool is not installed" in missing.note
    monkeypatch.undo()
    if find_tool("litert-benchmark") is not None:
        broken = tmp_path / "broken.tflite"
        broken.write_bytes(b"TFL3" + b"\0" * 60)
        failed = vendor_latency(broken, "tflite", 1, runs=5)
        assert failed.p50_ms is None and failed.note.startswith("litert-benchmark ")  # failed, or crashed: never raises


# --- the bench table ----------------------------------------------------------------------------------------------


def subject(name, fmt, backend, path) -> Subject:
    def infer(image, audio, present):
        return backend.run({"image": image, "present": present})

    return Subject(name, fmt, "fp32", infer, path.stat().st_size, "passed", backend.name, path=path)


@pytest.mark.skipif(find_tool("benchmark_app") is None and find_tool("litert-benchmark") is None, reason="no vendor tool here")
def test_bench_rows_get_the_vendor_figure(tiny, tiny_tflite, tmp_path, monkeypatch):
    import edgemm.bundle_bench as bundle_bench
    from edgemm.runtimes.backends import format_backend

    calls, at_tool = Counter(), {}  # per subject: its calls so far, and how many had been made when its tool ran

    def counted(sub: Subject) -> Subject:
        infer = sub.infer
        sub.infer = lambda *x: (calls.update([sub.path]), infer(*x))[1]
        return sub

    def tool(path, *args):
        at_tool[path] = calls[path]
        return vendor_latency(path, *args)

    monkeypatch.setattr(bundle_bench, "vendor_latency", tool)

    x = feeds(24)
    data = ReferenceSet(x["image"], np.zeros((24, 1), np.float32), np.ones((24, 2), np.float32), np.arange(24) % 6, np.zeros((24, 6), np.float32), None, "tiny")
    subjects = [subject("model.onnx", "onnx", format_backend("onnx").open(tiny["onnx"], threads=1), tiny["onnx"])]
    if "ir" in tiny and find_tool("benchmark_app"):
        subjects.append(subject("model.xml", "openvino", format_backend("openvino").open(tiny["ir"], threads=1), tiny["ir"]))
    if find_tool("litert-benchmark"):
        subjects.append(subject("model.tflite", "tflite", format_backend("tflite").open(tiny_tflite["fp32"], threads=1), tiny_tflite["fp32"]))
        broken = tmp_path / "broken.tflite"
        broken.write_bytes(b"TFL3" + b"\0" * 60)
        subjects.append(subject("broken.tflite", "tflite", format_backend("tflite").open(tiny_tflite["fp32"], threads=1), broken))
    rows = bench([counted(sub) for sub in subjects], data, runs=20, vendor=True, threads=1)
    assert len(at_tool) == len(subjects)
    for path, before in at_tool.items():  # accuracy and the first 10 timed calls before its tool, 10 timed + batch 8 after
        assert 0 < before < calls[path] - 10, (path, before, calls[path])
    by_name = {r.subject.name: r for r in rows}
    assert by_name["model.onnx"].vendor is None
    measured = [r for r in rows if r.vendor is not None and r.vendor.p50_ms is not None]
    assert {"model.xml"} & set(by_name) <= {r.subject.name for r in measured} <= {"model.xml", "model.tflite"}
    if "model.tflite" in by_name:  # read unrounded: a figure even where this tiny net runs in < 0.01 ms
        assert by_name["model.tflite"].vendor.p50_ms > 0, by_name["model.tflite"].vendor.note
    table = render_bench(rows, "tiny")
    assert "vendor p50 ms" in table and "x vendor" in table
    for r in measured:
        line = next(line for line in table.splitlines() if line.startswith(r.subject.name))
        assert line.split()[-2:] == [f"{r.vendor.p50_ms:.3f}", f"{r.p50_ms / r.vendor.p50_ms:.2f}"]
    if "broken.tflite" in by_name:
        assert by_name["broken.tflite"].vendor.p50_ms is None and "no vendor figure for broken.tflite: litert-benchmark" in table
    assert "vendor" not in render_bench([BenchRow(r.subject, r.accuracy, r.p50_ms, r.p95_ms, r.throughput) for r in rows], "tiny")


def test_bench_imports_neither_the_export_side_nor_torch():
    code = "import sys, edgemm.bundle_bench, edgemm.vendor_bench; print([m for m in sys.modules if m.startswith('edgemm.export') or m.split('.')[0] == 'torch'])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_cli_bench_takes_no_vendor():
    from edgemm.cli import build_parser

    assert build_parser().parse_args(["bench", "b.edgemm", "--no-vendor"]).no_vendor is True
    assert build_parser().parse_args(["bench", "b.edgemm"]).no_vendor is False


# --- the tuned backends answer as a plainly configured runtime does ------------------------------------------------


def test_onnxruntime_backend_matches_a_plain_session(tiny):
    ort = pytest.importorskip("onnxruntime")
    from edgemm.runtimes.backends.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(tiny["onnx"], threads=2)
    assert backend._session.get_session_options().get_session_config_entry("session.intra_op.spin_duration_us") == "300"
    plain = ort.InferenceSession(str(tiny["onnx"]), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        x = feeds(n, seed=n)
        ours, theirs = backend.run(x), dict(zip(["embedding", "logits"], plain.run(["embedding", "logits"], x)))
        for name, value in theirs.items():
            np.testing.assert_allclose(ours[name], value, rtol=0, atol=1e-5)


def test_openvino_backend_matches_a_plain_compiled_model(tiny):
    ov = pytest.importorskip("openvino")
    from edgemm.runtimes.backends.openvino_backend import OpenVinoBackend

    core = ov.Core()
    for ir in (tiny["ir"], tiny["ir16"]):
        backend = OpenVinoBackend(ir, threads=2)
        plain = core.compile_model(str(ir), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})  # the precision every artifact is verified at
        for n in (1, 3, 1, 3):  # batch 1 and 3: the static requests (f32 IR) or the dynamic one rebound (fp16 IR), twice
            x = feeds(n, seed=n)
            ours, theirs = backend.run(x), plain.create_infer_request().infer(x)
            for name in ("embedding", "logits"):
                np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-5)
        request = next(iter(backend._static.values()), None) or backend._dynamic
        compiled = request.request.get_compiled_model()
        assert str(compiled.get_property("PERFORMANCE_HINT")).endswith("LATENCY")
        assert compiled.get_property("INFERENCE_NUM_THREADS") == 2 and compiled.get_property("ENABLE_CPU_PINNING") is False
    with pytest.raises(ValueError, match="where the model takes"):
        backend.run({"image": feeds(1)["image"], "present": np.ones((1, 1), np.float32)})  # never broadcast into the input
    x = feeds(1, seed=7)
    wide = backend.run({name: value.astype(np.float64) for name, value in x.items()})  # cast in (same kind), as the float32 feed
    np.testing.assert_array_equal(wide["logits"], backend.run(x)["logits"])
    with pytest.raises(TypeError, match="same_kind"):
        backend.run({**x, "present": np.ones((1, 2), np.complex64)})


def test_litert_backend_matches_a_plain_interpreter_and_compiled_model(tiny_tflite):
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.interpreter import Interpreter
    from edgemm.runtimes.backends.litert_backend import (
        LiteRtBackend,
        from_model_dtype,
        to_model_dtype,
    )

    rng = np.random.default_rng(7)
    for precision, path in tiny_tflite.items():
        backend = LiteRtBackend(path, threads=2)
        assert backend.integer_io == (precision == "int8")
        runner = Interpreter(model_path=str(path)).get_signature_runner()  # default options, the signature runner
        cm = CompiledModel.from_file(str(path))  # litert-benchmark's API, default options
        ins, outs = cm.get_input_tensor_details("serving_default"), cm.get_output_tensor_details("serving_default")
        in_buffers = {n: cm.create_input_buffer_by_name("serving_default", n) for n in ins}
        out_buffers = {n: cm.create_output_buffer_by_name("serving_default", n) for n in outs}
        if precision == "int8":
            with pytest.raises(ValueError, match="where the model takes"):  # never a reshaped (wrong-layout) input
                backend.run({"image": feeds(1)["image"].reshape(1, 8, 8, 1), "present": feeds(1)["present"]})
        x = feeds(4, seed=3)
        x["image"][0] *= 40  # far outside the calibrated range: the int8 inputs clip
        x["image"][1] = rng.uniform(-0.5, 0.5, x["image"][1].shape).round(2)  # values on rounding boundaries
        ours = backend.run(x)  # four rows through the batch-1 model
        for i in range(4):
            row = {k: v[i : i + 1] for k, v in x.items()}
            model_in = {k: to_model_dtype(v, runner.get_input_details()[k]) for k, v in row.items()}
            theirs = {k: from_model_dtype(v, runner.get_output_details()[k]) for k, v in runner(**model_in).items()}
            for k, buffer in in_buffers.items():
                buffer.write(model_in[k])
            cm.run_by_name("serving_default", in_buffers, out_buffers)
            compiled = {k: from_model_dtype(b.read(int(np.prod(outs[k]["shape"])), np.dtype(outs[k]["dtype"])).reshape(outs[k]["shape"]), runner.get_output_details()[k])
                        for k, b in out_buffers.items()}  # fmt: skip
            for name, value in theirs.items():
                if precision == "int8":  # same integers in, same kernels: the same answer to the bit
                    np.testing.assert_array_equal(ours[name][i : i + 1], value)
                np.testing.assert_allclose(ours[name][i : i + 1], value, rtol=0, atol=1e-5)
                np.testing.assert_allclose(ours[name][i : i + 1], compiled[name], rtol=0, atol=1e-5)
