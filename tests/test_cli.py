"""The CLI end to end as a user runs it: train (tiny) → export → info → predict, and its error exits."""
import json
import subprocess
import sys

import numpy as np
import pytest


def edgemm(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "edgemm", *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"edgemm {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.mark.slow
def test_train_export_info_predict(tmp_path, tiny_test_split):
    from edgemm.runtimes.media import write_audio, write_image

    ckpt = tmp_path / "t.safetensors"
    out = edgemm("train", "--tiny", "--quiet", "-o", ckpt)
    assert "wrote" in out.stdout and ckpt.is_file() and ckpt.with_suffix(".json").is_file()
    bundle = tmp_path / "t.edgemm"
    out = edgemm("export", ckpt, "--to", "onnx", "-o", bundle, "--samples", "16")
    assert "passed" in out.stdout and (bundle / "model.onnx").is_file()
    info = edgemm("info", bundle).stdout
    assert "model.onnx" in info and "presence-mask" in info
    manifest = json.loads(edgemm("info", bundle, "--json").stdout)
    assert manifest["schema_version"] == 2 and manifest["artifacts"][0]["verification"]["passed"]
    write_image(tmp_path / "d.png", np.repeat(tiny_test_split.images[0][:, :, None], 3, axis=2))
    stereo = np.stack([tiny_test_split.audio[0]] * 2, axis=1).astype(np.float32) / 32768
    write_audio(tmp_path / "d.wav", stereo, 16000)
    pred = json.loads(edgemm("predict", bundle, "--image", tmp_path / "d.png", "--audio", tmp_path / "d.wav", "--json").stdout)
    assert pred["label"] in manifest["contract"]["labels"] and pred["modalities"] == ["image", "audio"]
    assert pred["backend"] == "onnxruntime"
    assert "from audio" in edgemm("predict", bundle, "--audio", tmp_path / "d.wav").stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["info", "nowhere.edgemm"], "not a bundle folder"),
        (["export", "missing.safetensors", "-o", "x.edgemm"], "no such checkpoint"),
        (["export", "missing.safetensors", "--to", "caffe", "-o", "x.edgemm"], "unknown format caffe"),
    ],
)
def test_errors_are_one_line_and_nonzero(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "edgemm", *args], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_predict_bad_files(tiny_bundle, tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"garbage")
    proc = edgemm("predict", tiny_bundle, "--audio", tmp_path / "bad.wav", check=False)
    assert proc.returncode == 2 and "bad.wav: not a readable audio file" in proc.stderr and "Traceback" not in proc.stderr
    proc = edgemm("predict", tiny_bundle, check=False)
    assert proc.returncode == 2 and "give --image, --audio or both" in proc.stderr


def test_export_keeps_the_old_bundle_when_it_fails(tiny_bundle, tmp_path):
    """A failing export (corrupt checkpoint) leaves the previous bundle byte-for-byte intact."""
    before = {p.relative_to(tiny_bundle): p.read_bytes() for p in tiny_bundle.rglob("*") if p.is_file()}
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    bad.with_suffix(".json").write_text(json.dumps({"format": "edgemm-checkpoint", "version": 1, "model": {}}))
    proc = edgemm("export", bad, "-o", tiny_bundle, check=False)
    assert proc.returncode == 2 and "corrupt safetensors file" in proc.stderr
    assert {p.relative_to(tiny_bundle): p.read_bytes() for p in tiny_bundle.rglob("*") if p.is_file()} == before
    assert not [p for p in tiny_bundle.parent.iterdir() if ".staging-" in p.name]


def test_verify_reruns_every_check(tiny_bundle, tiny_checkpoint, tiny_student):
    manifest_path = tiny_bundle / "manifest.json"
    data = json.loads(manifest_path.read_text())
    data["artifacts"][0]["verification"] = {"passed": False, "error": "stale"}
    manifest_path.write_text(json.dumps(data))
    out = edgemm("verify", tiny_bundle, "--checkpoint", tiny_checkpoint, "--samples", "16")
    assert "passed" in out.stdout
    art = json.loads(manifest_path.read_text())["artifacts"][0]
    assert art["verification"]["passed"] and art["verification"]["max_abs_diff"] <= 1e-4 and art["verification"]["samples"] == 48
    proc = edgemm("verify", tiny_bundle, "--checkpoint", tiny_student, check=False)
    assert proc.returncode == 2 and "not the checkpoint" in proc.stderr and "Traceback" not in proc.stderr
