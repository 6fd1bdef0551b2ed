"""OpenVINO export and backend on a tiny model trained for real; auto backend choice; bad inputs."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import without_package
from edgemm.runtimes import ChecksumError, load_bundle
from edgemm.runtimes.backends import preference

pytest.importorskip("openvino")

@pytest.fixture(scope="module")
def ov_bundle_master(tiny_student, tmp_path_factory):
    from edgemm.exporting import export_checkpoint

    out = tmp_path_factory.mktemp("ov") / "ov.edgemm"
    export_checkpoint(tiny_student, "onnx,openvino", out, samples=32, log=lambda _: None)
    return out

@pytest.fixture
def ov_bundle(ov_bundle_master, tmp_path):
    import shutil

    return shutil.copytree(ov_bundle_master, tmp_path / "ov.edgemm")

def test_openvino_fp32_and_fp16_exported_and_verified(ov_bundle, tiny_test_split):
    manifest = json.loads((ov_bundle / "manifest.json").read_text())
    arts = {a["file"]: a for a in manifest["artifacts"]}
    fp32, fp16 = arts["openvino/model.xml"], arts["openvino/model.fp16.xml"]
    assert fp32["verification"]["passed"] and fp32["verification"]["max_abs_diff"] <= 1e-4
    assert fp32["verification"]["backend"] == "openvino"
    v16 = fp16["verification"]
    assert v16["passed"] and v16["max_rel_diff"] <= 5e-3, v16
    assert fp32["parts"][0]["file"] == "openvino/model.bin"
    ov = load_bundle(ov_bundle, backend="openvino", threads=1)
    ort = load_bundle(ov_bundle, backend="onnxruntime", threads=1)
    s = tiny_test_split
    a = ov.predict_batch(images=list(s.images[:5]), audios=[s.audio[0], None, *s.audio[2:5]], sample_rate=16000)
    b = ort.predict_batch(images=list(s.images[:5]), audios=[s.audio[0], None, *s.audio[2:5]], sample_rate=16000)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.probabilities, y.probabilities, atol=1e-5)
    assert ov.artifact.format == "openvino"

def test_auto_order_follows_the_machine(ov_bundle):
    assert preference("x86_64", "GenuineIntel", gpu=False)[:2] == ["openvino", "onnxruntime"]
    assert preference("x86_64", "GenuineIntel", gpu=True)[:3] == ["tensorrt", "openvino", "onnxruntime"]
    assert preference("aarch64", "", gpu=True)[:3] == ["tensorrt", "litert", "onnxruntime"]  # a Jetson
    assert preference("aarch64", "", gpu=False)[:2] == ["litert", "onnxruntime"]  # a phone-class board
    assert preference("x86_64", "AuthenticAMD", gpu=False)[0] == "onnxruntime"
    expected = "openvino" if preference()[0] == "openvino" else "onnxruntime"
    assert load_bundle(ov_bundle).backend.name == expected

def test_xml_without_bin_is_a_clear_error(ov_bundle):
    (ov_bundle / "openvino" / "model.bin").unlink()
    with pytest.raises(ChecksumError, match="model.bin: companion file of openvino/model.xml listed in the manifest is missing"):
        load_bundle(ov_bundle, artifact="openvino/model.xml")

def test_missing_converter_keeps_the_other_formats(tiny_student, tmp_path):
    code = without_package("openvino") + textwrap.dedent(f"""
        import sys
        from edgemm.cli import main
        sys.exit(main(["export", {str(tiny_student)!r}, "--to", "onnx,openvino", "-o", {str(tmp_path / "b.edgemm")!r}, "--samples", "8"]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "openvino fp32,fp16: skipped" in proc.stdout and "pip install 'edgemm[openvino]'" in proc.stdout
    manifest = json.loads((tmp_path / "b.edgemm" / "manifest.json").read_text())
    assert [a["file"] for a in manifest["artifacts"]] == ["model.onnx"] and manifest["artifacts"][0]["verification"]["passed"]
    assert manifest["failures"][0]["format"] == "openvino"

@pytest.mark.slow
def test_openvino_int8_through_nncf_passes_here(shipped_bundle_master):
    """The shipped student's NNCF INT8 IR: 7-bit weights in every layer (no saturation on x86 without VNNI),
    accuracy control within budget, verified through OpenVINO on this machine."""
    from edgemm.export.registry import FORMATS
    from edgemm.runtimes.manifest import Manifest

    ov_int8 = FORMATS["openvino"].int8_file
    art = Manifest.read(shipped_bundle_master).artifact(ov_int8)
    q, v = art.extra["quantization"], art.verification.to_dict()
    assert art.verified, v
    assert q["tool"] == "nncf.quantize_with_accuracy_control" and q["fake_quantize_ops"] > 0 and "7-bit in every layer" in q["weights"]
    assert q["drop_points"] <= 1.0 and v["top1_agreement_by_mode"]["fused"] >= 0.99 and v["backend"] == "openvino"
    assert art.parts[0]["file"] == "openvino/model.int8.bin" and q["calibration"]["source"] == "av-digits:train"
    assert v["tools"]["nncf"] and v["tools"]["openvino"] and "FakeQuantize" in (shipped_bundle_master / ov_int8).read_text()
    assert load_bundle(shipped_bundle_master, backend="openvino", precision="int8").artifact.file == ov_int8
