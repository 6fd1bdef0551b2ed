"""The torch-free runtime on a real ONNX bundle: loading, prediction, parity and every bad input."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import without_package
from edgemm.runtimes import (
    BundleError,
    ChecksumError,
    InputError,
    ModelFileError,
    SchemaVersionError,
    load_bundle,
)


def test_runtime_never_imports_torch(tiny_bundle, tiny_test_split):
    np.save(tiny_bundle / "img.npy", tiny_test_split.images[0])
    np.save(tiny_bundle / "aud.npy", tiny_test_split.audio[0])
    code = textwrap.dedent(f"""
        import sys, numpy as np
        import edgemm.runtimes as rt
        model = rt.load_bundle({str(tiny_bundle)!r})
        pred = model.predict(image=np.load({str(tiny_bundle / 'img.npy')!r}), audio=np.load({str(tiny_bundle / 'aud.npy')!r}), sample_rate=16000)
        assert pred.label in model.labels
        heavy = [m for m in ("torch", "onnx", "onnxscript", "edgemm.export", "edgemm.calibration", "edgemm.models") if m in sys.modules]
        print("HEAVY", heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_predict_single_batch_and_missing_modalities(tiny_bundle, tiny_test_split):
    model = load_bundle(tiny_bundle, threads=1)
    s = tiny_test_split
    both = model.predict(image=s.images[0], audio=s.audio[0], sample_rate=16000)
    assert both.modalities == ("image", "audio")
    assert both.probabilities.shape == (10,) and abs(float(both.probabilities.sum()) - 1) < 1e-5
    assert both.embedding.shape == (model.contract.embedding_dim,)
    assert model.predict(image=s.images[0]).modalities == ("image",)
    assert model.predict(audio=s.audio[0], sample_rate=16000).modalities == ("audio",)
    batch = model.predict_batch(images=list(s.images[:4]), audios=[s.audio[0], None, s.audio[2], s.audio[3]], sample_rate=16000)
    assert [p.modalities for p in batch][1] == ("image",)
    np.testing.assert_allclose(batch[0].probabilities, both.probabilities, atol=1e-5)


def test_onnx_parity_recorded_and_reproduced(tiny_bundle, tiny_checkpoint, tiny_test_split):
    """The manifest records a passed fp32 check, and re-running torch vs runtime agrees to 1e-4."""
    import torch

    from edgemm.checkpoint import load_checkpoint
    from edgemm.data.features import split_tensors

    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    art = manifest["artifacts"][0]
    assert art["file"] == "model.onnx" and art["verification"]["passed"]
    assert art["verification"]["max_abs_diff"] <= 1e-4
    ckpt = load_checkpoint(tiny_checkpoint)
    image, audio = split_tensors(tiny_test_split.subset(np.arange(16)), ckpt.image, ckpt.audio)
    present = np.ones((16, 2), np.float32)
    present[::3, 0] = 0
    with torch.no_grad():
        ref = ckpt.model(torch.from_numpy(image), torch.from_numpy(audio), torch.from_numpy(present))[0].numpy()
    got = load_bundle(tiny_bundle).infer(image, audio, present)["logits"]
    assert np.abs(got - ref).max() <= 1e-4


def _manifest(bundle):
    return json.loads((bundle / "manifest.json").read_text())


def test_missing_bundle_and_manifest(tmp_path, tiny_bundle):
    with pytest.raises(BundleError, match="not a bundle folder"):
        load_bundle(tmp_path / "nope.edgemm")
    (tiny_bundle / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json: missing"):
        load_bundle(tiny_bundle)


def test_corrupt_manifest(tiny_bundle):
    (tiny_bundle / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable manifest"):
        load_bundle(tiny_bundle)
    (tiny_bundle / "manifest.json").write_text(json.dumps({"schema_version": 1, "model": {}}))
    with pytest.raises(BundleError, match="malformed manifest"):
        load_bundle(tiny_bundle)


def test_newer_schema(tiny_bundle):
    data = _manifest(tiny_bundle)
    data["schema_version"] = 99
    (tiny_bundle / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(SchemaVersionError, match="newer than this edgemm supports"):
        load_bundle(tiny_bundle)


def test_checksum_mismatch(tiny_bundle):
    path = tiny_bundle / "model.onnx"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match="sha256 does not match"):
        load_bundle(tiny_bundle)


def test_truncated_model(tiny_bundle):
    path = tiny_bundle / "model.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ChecksumError, match="truncated"):
        load_bundle(tiny_bundle)


def test_corrupt_model_with_matching_manifest(tiny_bundle):
    """A model file that is garbage but whose checksum was (wrongly) re-recorded still fails clearly."""
    from edgemm.runtimes.manifest import sha256_file

    path = tiny_bundle / "model.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    data = _manifest(tiny_bundle)
    data["artifacts"][0].update(bytes=1000, sha256=sha256_file(path))
    (tiny_bundle / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match="onnxruntime cannot load it"):
        load_bundle(tiny_bundle, artifact="model.onnx")
    with pytest.raises(BundleError, match=r"no usable artifact on this machine .*model.onnx: failed verification on this CPU .*: cannot load here: .*onnxruntime cannot load it"):
        load_bundle(tiny_bundle)


def test_no_verified_artifact(tiny_bundle):
    data = _manifest(tiny_bundle)
    data["artifacts"][0]["verification"]["passed"] = False
    (tiny_bundle / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="no artifact passed verification"):
        load_bundle(tiny_bundle)


def test_missing_backend_package_names_the_extra(tiny_bundle):
    """With onnxruntime not importable, loading says which extra to install."""
    code = without_package("onnxruntime") + textwrap.dedent(f"""
        from edgemm.runtimes import load_bundle, BackendUnavailableError
        try:
            load_bundle({str(tiny_bundle)!r})
        except BackendUnavailableError as exc:
            print("ERR", exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "ERR" in out and "pip install 'edgemm[onnx]'" in out


def test_bad_inputs_to_predict(tiny_bundle, tiny_test_split):
    model = load_bundle(tiny_bundle)
    with pytest.raises(InputError, match="give an image, audio or both"):
        model.predict()
    with pytest.raises(InputError, match="sample_rate"):
        model.predict(audio=tiny_test_split.audio[0])
    with pytest.raises(InputError, match="uint8"):
        model.predict(image=np.zeros((28, 28), np.float64))
    with pytest.raises(InputError, match="NaN"):
        model.predict(audio=np.full(16000, np.nan, np.float32), sample_rate=16000)
    with pytest.raises(InputError, match="empty"):
        model.predict(audio=np.zeros(0, np.float32), sample_rate=16000)
    with pytest.raises(InputError, match="expected float32"):
        model.infer(np.zeros((1, 1, 28, 28), np.float32), np.zeros((1, 1, 40, 98), np.float32), np.ones((1, 2), np.float32))
    image, audio, present = np.zeros((2, 1, 32, 32), np.float32), np.zeros((2, 1, 40, 98), np.float32), np.ones((2, 2), np.float32)
    assert model.infer(image, audio, present)["logits"].shape == (2, 10)
    with pytest.raises(InputError, match=r"audio tensor: expected float32 \(2, 1, 40, 98\), got float64"):
        model.infer(image, audio.astype(np.float64), present)
    with pytest.raises(InputError, match=r"image tensor: expected float32 \(1, 1, 32, 32\), got float32 \(2, 1, 32, 32\)"):
        model.infer(image, audio[:1], present[:1])
    with pytest.raises(InputError, match=r"present tensor: expected float32 \(2, 2\), got float32 \(2, 3\)"):
        model.infer(image, audio, np.ones((2, 3), np.float32))
    with pytest.raises(BundleError, match="unknown backend 'nope'"):
        load_bundle(tiny_bundle, backend="nope")


def test_unreadable_media(tmp_path):
    from edgemm.runtimes import MediaReadError
    from edgemm.runtimes.media import read_audio, read_image

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(MediaReadError, match="bad.png: not a readable image"):
        read_image(bad)
    wav = tmp_path / "bad.wav"
    wav.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(MediaReadError, match="bad.wav: not a readable audio file"):
        read_audio(wav)
    with pytest.raises(MediaReadError, match="no such"):
        read_audio(tmp_path / "missing.wav")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_softmax_rows(dtype):
    from edgemm.runtimes.model import softmax

    logits = np.array([[1.0, 2.0, 3.0], [-np.inf, 0.0, 0.0], [-60.0, 0.0, 60.0]], dtype)
    probs = softmax(logits)
    assert probs.dtype == np.float32 and np.isfinite(probs).all()
    expected = np.exp(logits.astype(np.float64) - logits.astype(np.float64).max(1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(1, keepdims=True), rtol=1e-3 if dtype == np.float16 else 1e-6, atol=1e-7)
    assert logits[0, 0] == 1.0  # the input is left as it was
    for i in range(len(logits)):  # one row (a live answer) takes the Python-float path: the same answer
        one = softmax(logits[i : i + 1])
        assert one.dtype == np.float32 and one.shape == (1, 3)
        np.testing.assert_allclose(one, probs[i : i + 1], rtol=1e-3 if dtype == np.float16 else 1e-6, atol=1e-7)
