"""TensorRT without TensorRT (this machine has neither it nor a GPU): the export records the one-line
reason with the exact trtexec and build-engine commands; build-engine refuses clearly; the engine
target check; the reference samples a device verifies engines on."""
import json
import shlex
import subprocess
import sys

import numpy as np
import pytest
from edgemm.runtimes import load_bundle
from edgemm.runtimes.errors import BackendUnavailableError

pytestmark = pytest.mark.skipif(__import__("importlib").util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")


@pytest.fixture(scope="module")
def trt_export(tiny_student, tmp_path_factory):
    out = tmp_path_factory.mktemp("trt") / "trt.edgemm"
    proc = subprocess.run(
        [sys.executable, "-m", "edgemm", "export", str(tiny_student), "--to", "tensorrt", "-o", str(out), "--samples", "16"],
        capture_output=True, text=True,
    )  # fmt: skip
    return out, proc


def test_export_without_tensorrt_writes_the_commands(trt_export):
    out, proc = trt_export
    assert proc.returncode == 1, proc.stderr  # the engine is missing, the rest is usable
    assert "needs the 'tensorrt' package: it comes with JetPack" in proc.stdout
    assert f"build it on the device: edgemm build-engine {out}" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert [a["file"] for a in manifest["artifacts"]] == ["model.onnx"] and manifest["artifacts"][0]["verification"]["passed"]
    failure = next(f for f in manifest["failures"] if f["format"] == "tensorrt")
    assert failure["precision"] == "fp16" and failure["on_device"] == f"edgemm build-engine {out}"
    mkdir, _, command = failure["trtexec"].partition(" && ")
    args = shlex.split(command)
    assert mkdir == "mkdir -p tensorrt" and args[0] == "trtexec" and "--onnx=model.onnx" in args and "--fp16" in args and "--int8" not in args
    assert "--saveEngine=tensorrt/model.fp16.engine" in args
    assert "--minShapes=image:1x1x32x32,audio:1x1x40x98,present:1x2" in args
    assert "--maxShapes=image:64x1x32x32,audio:64x1x40x98,present:64x2" in args
    assert failure["trtexec"] in proc.stdout


def test_int8_engine_command_uses_the_qdq_onnx(trt_export):
    from edgemm.export.tensorrt_engine import trtexec_command
    from edgemm.runtimes.manifest import Manifest

    out, _ = trt_export
    args = shlex.split(trtexec_command("int8", Manifest.read(out)).partition(" && ")[2])
    assert "--onnx=model.int8.onnx" in args and "--int8" in args and "--saveEngine=tensorrt/model.int8.engine" in args


def test_build_engine_refuses_clearly_without_tensorrt(trt_export):
    out, _ = trt_export
    proc = subprocess.run([sys.executable, "-m", "edgemm", "build-engine", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "edgemm: error: edgemm build-engine needs the 'tensorrt' package: "
        "it comes with JetPack on a Jetson (apt install python3-libnvinfer), elsewhere pip install tensorrt"
    )
    with pytest.raises(BackendUnavailableError, match="tensorrt backend needs the 'tensorrt' package"):
        load_bundle(out, backend="tensorrt")


def test_bundle_carries_reference_samples_for_the_device(trt_export):
    from edgemm.runtimes.manifest import Manifest, sha256_file
    from edgemm.runtimes.reference import ReferenceSet

    out, _ = trt_export
    recorded = Manifest.read(out).model["reference"]
    assert sha256_file(out / recorded["file"]) == recorded["sha256"] and recorded["outputs_from"] == "torch"
    ref = ReferenceSet.load(out / recorded["file"])
    assert len(ref) == 3 * recorded["samples"] and ref.present[: recorded["samples"]].all()
    model = load_bundle(out, artifact="model.onnx")  # the ONNX reproduces torch's stored outputs
    logits = model.infer(ref.image, ref.audio, ref.present)["logits"]
    assert np.abs(logits - ref.logits).max() < 1e-4


def test_engine_for_another_gpu_or_version_is_refused(tmp_path):
    from edgemm.runtimes.backends.tensorrt_backend import (
        EngineMismatchError,
        check_engine_target,
    )

    built = {"tensorrt": "10.3.0", "gpu": {"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}}
    orin = {"tensorrt": "10.3.0", "gpu": {"index": 0, "name": "Orin", "compute_capability": "8.7"}}
    check_engine_target(tmp_path / "e.engine", tmp_path, built, {**built, "gpu": {**built["gpu"], "index": 0}})
    with pytest.raises(EngineMismatchError, match=r"built for NVIDIA GeForce RTX 4090 \(compute 8.9\) .* this machine has Orin \(compute 8.7\).*edgemm build-engine"):
        check_engine_target(tmp_path / "e.engine", tmp_path, built, orin)
    with pytest.raises(EngineMismatchError, match="TensorRT 10.0.1"):
        check_engine_target(tmp_path / "e.engine", tmp_path, built, {**built, "tensorrt": "10.0.1"})


def test_bench_uses_the_bundles_reference_samples_where_the_data_set_is_not_at_hand(trt_export, tmp_path):
    import shutil

    from edgemm.runtimes.manifest import Manifest

    from edgemm.bundle_bench import bench_bundle

    out, _ = trt_export
    bundle = shutil.copytree(out, tmp_path / "device.edgemm")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["model"]["data"] = {"name": "my-own-recordings"}  # as on a device with a user's model
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    rows, title = bench_bundle(bundle, threads=1, runs=5)
    assert "reference.npz (16 samples)" in title and [r.subject.name for r in rows] == ["model.onnx"]
    assert rows[0].accuracy is not None and rows[0].p50_ms > 0 and Manifest.read(bundle).artifacts[0].verified
