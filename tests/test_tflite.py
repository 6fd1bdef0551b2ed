"""TFLite/LiteRT: fp32, fp16 and full-integer INT8 exported from a tiny student trained for real, run
through the real LiteRT interpreter, verified; truncated files; INT8 without the checkpoint."""
import json
import shutil

import numpy as np
import pytest
from edgemm.runtimes import ChecksumError, load_bundle
from edgemm.runtimes.errors import ModelFileError
from edgemm.runtimes.manifest import Manifest

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

FP32, FP16, INT8 = "tflite/model.tflite", "tflite/model.fp16.tflite", "tflite/model.int8.tflite"


@pytest.fixture(scope="module")
def tflite_bundle_master(tiny_student, tmp_path_factory):
    from edgemm.export.onnx_int8 import Int8Options

    from edgemm.exporting import export_checkpoint

    out = tmp_path_factory.mktemp("tflite") / "t.edgemm"
    logs = []
    export_checkpoint(tiny_student, "tflite", out, samples=32, log=logs.append, int8_calib="av-digits", int8=Int8Options(max_drop=100.0))
    assert any("onnx added" in line for line in logs)  # INT8 is measured against the fp32 ONNX
    return out


@pytest.fixture
def tflite_bundle(tflite_bundle_master, tmp_path):
    return shutil.copytree(tflite_bundle_master, tmp_path / "t.edgemm")


def test_fp32_and_fp16_exported_and_verified_through_litert(tflite_bundle_master):
    arts = {a["file"]: a for a in json.loads((tflite_bundle_master / "manifest.json").read_text())["artifacts"]}
    v32, v16 = arts[FP32]["verification"], arts[FP16]["verification"]
    assert v32["backend"] == "litert" and v32["passed"] and v32["max_abs_diff"] <= 1e-4
    assert v16["backend"] == "litert" and v16["passed"] and v16["max_rel_diff"] <= 5e-3, v16
    from ai_edge_litert.interpreter import Interpreter

    dtypes = {np.dtype(t["dtype"]) for t in Interpreter(model_path=str(tflite_bundle_master / FP16)).get_tensor_details()}
    assert np.dtype(np.float16) in dtypes  # weights stored as fp16, computed in float


def test_int8_is_full_integer_and_runs_batches_row_by_row(tflite_bundle_master, tiny_test_split):
    manifest = json.loads((tflite_bundle_master / "manifest.json").read_text())
    art = next(a for a in manifest["artifacts"] if a["file"] == INT8)
    q = art["extra"]["quantization"]
    assert q["tool"] == "litert_torch PT2E" and q["calibration"]["source"] == "av-digits:train"
    assert set(q["int8"]) == {"fused", "image_only", "audio_only"} and art["verification"]["backend"] == "litert"
    model = load_bundle(tflite_bundle_master, artifact=INT8, threads=1)
    # float inputs and outputs (the converter's strict Q/DQ mode keeps the boundary quantize/dequantize ops), int8 inside
    assert q["io"].startswith("float") and model.backend.name == "litert" and not model.backend.integer_io and model.backend.batch == 1
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_bundle_master / INT8))
    assert {np.dtype(d["dtype"]) for d in interpreter.get_input_details() + interpreter.get_output_details()} == {np.dtype(np.float32)}
    assert np.dtype(np.int8) in {np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
    s = tiny_test_split
    batch = model.predict_batch(images=list(s.images[:4]), audios=[s.audio[0], None, s.audio[2], s.audio[3]], sample_rate=16000)
    single = [model.predict(s.images[i], s.audio[i] if i != 1 else None, 16000) for i in range(4)]
    for b, one in zip(batch, single):  # larger batches run row by row through the batch-1 graph
        np.testing.assert_allclose(b.probabilities, one.probabilities, atol=1e-6)
    assert batch[1].modalities == ("image",)


@pytest.mark.slow
def test_shipped_student_int8_tflite_passes_here(shipped_bundle_master):
    """The shipped student's full-integer TFLite: within the accuracy budget and ≥ 99 % fused agreement, verified
    through LiteRT on this machine, and chosen by the runtime when asked for LiteRT INT8."""
    art = Manifest.read(shipped_bundle_master).artifact(INT8)
    q, v = art.extra["quantization"], art.verification.to_dict()
    assert art.verified, v
    assert q["drop_points"] <= 1.0 and v["budget_met"] and v["top1_agreement_by_mode"]["fused"] >= 0.99
    assert v["backend"] == "litert" and v["tools"]["ai-edge-litert"] and art.extra["made_with"]["tools"]["litert-torch"]
    assert load_bundle(shipped_bundle_master, backend="litert", precision="int8").artifact.file == INT8


def test_litert_matches_onnxruntime_on_fp32(tflite_bundle_master, tiny_test_split):
    s = tiny_test_split
    lite = load_bundle(tflite_bundle_master, backend="litert", precision="fp32")
    ort = load_bundle(tflite_bundle_master, backend="onnxruntime", precision="fp32")
    a = lite.predict_batch(images=list(s.images[:6]), audios=list(s.audio[:6]), sample_rate=16000)
    b = ort.predict_batch(images=list(s.images[:6]), audios=list(s.audio[:6]), sample_rate=16000)
    np.testing.assert_allclose([p.probabilities for p in a], [p.probabilities for p in b], atol=1e-5)


def test_truncated_tflite_is_a_clear_error(tflite_bundle, tmp_path):
    from edgemm.runtimes.backends.litert_backend import LiteRtBackend

    data = (tflite_bundle / FP32).read_bytes()
    (tflite_bundle / FP32).write_bytes(data[: len(data) // 3])
    with pytest.raises(ChecksumError, match="model.tflite"):
        load_bundle(tflite_bundle, artifact=FP32)
    with pytest.raises(ModelFileError, match="model.tflite: LiteRT cannot load it .*truncated"):
        LiteRtBackend(tflite_bundle / FP32)


def test_tflite_int8_needs_the_checkpoint(tflite_bundle):
    from edgemm.export.onnx_int8 import Int8Options

    from edgemm.quantizing import quantize_bundle

    manifest = quantize_bundle(tflite_bundle, "av-digits", Int8Options(max_drop=100.0), size=20, log=lambda _: None)
    failure = next(f for f in manifest.failures if f.format == "tflite")
    assert failure.precision == "int8" and failure.skipped and "give --checkpoint" in failure.error
    assert "model.int8.onnx" in [a.file for a in manifest.artifacts]  # the other INT8 artifacts are still made (and judged)


def test_bench_measures_every_artifact_and_writes_the_plot(tflite_bundle, tmp_path, capsys):
    from edgemm.cli import main

    png = tmp_path / "plots" / "bench.png"
    assert main(["bench", str(tflite_bundle), "--plot", str(png), "--runs", "10", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((tflite_bundle / "manifest.json").read_text())
    table = {line.split()[0]: line.split() for line in out.splitlines() if line and line.split()[0] in {a["file"] for a in manifest["artifacts"]}}
    assert set(table) == {a["file"] for a in manifest["artifacts"]}
    assert table[FP32][3] == "litert" and table["model.onnx"][3] == "onnxruntime"
    p50, p95, throughput = (float(v.replace(",", "")) for v in table[INT8][9:12])
    assert 0 < p50 <= p95 and throughput > 0
    assert "accuracy on av-digits:test" in out and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
