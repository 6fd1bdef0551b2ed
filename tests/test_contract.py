"""The model contract: one description of a model's interface that the runtime feeds and reads any model by —
other tensor names, NHWC RGB images, raw waveform audio, no presence input, 12 classes — and that older
bundles (schema 1, the built-in interface) still load into."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from edgemm.runtimes import InputError, load_bundle
from edgemm.runtimes.contract import ContractError, ModelContract
from edgemm.runtimes.manifest import Artifact, Manifest, Verification, sha256_file
from edgemm.runtimes.preprocess import (
    AudioSpec,
    ImageSpec,
    preprocess_audio,
    preprocess_image,
)
from onnx import TensorProto, helper, numpy_helper

LABELS = tuple(f"class-{i}" for i in range(12))
RGB = ImageSpec(height=64, width=64, channels=3, color_order="RGB", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
WAVE = AudioSpec(sample_rate=16000, clip_seconds=1.0, features="waveform")
WEIGHTS = np.random.default_rng(0).standard_normal((4, 12)).astype(np.float32)


def user_model(path: Path) -> None:
    """A model unlike ours: `rgb` (N, 64, 64, 3) and `wave` (N, 1, 16000) in, `scores` (N, 12) out, no mask input:
    scores = [mean R, mean G, mean B, mean wave] @ W."""
    rgb = helper.make_tensor_value_info("rgb", TensorProto.FLOAT, ["N", 64, 64, 3])
    wave = helper.make_tensor_value_info("wave", TensorProto.FLOAT, ["N", 1, 16000])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 12])
    nodes = [
        helper.make_node("ReduceMean", ["rgb", "axes_hw"], ["colour"], keepdims=0),
        helper.make_node("ReduceMean", ["wave", "axes_t"], ["level"], keepdims=0),
        helper.make_node("Concat", ["colour", "level"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "w"], ["scores"]),
    ]
    inits = [numpy_helper.from_array(np.array([1, 2], np.int64), "axes_hw"), numpy_helper.from_array(np.array([2], np.int64), "axes_t"),
             numpy_helper.from_array(WEIGHTS, "w")]  # fmt: skip
    graph = helper.make_graph(nodes, "user", [rgb, wave], [scores], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))


def user_bundle(folder: Path, missing: str = "zeros") -> Path:
    folder.mkdir()
    user_model(folder / "model.onnx")
    contract = ModelContract(image=RGB, audio=WAVE, image_input="rgb", audio_input="wave", image_layout="NHWC", missing=missing,
                             mask_input=None, logits_output="scores", embedding_output=None, labels=LABELS)  # fmt: skip
    art = Artifact("model.onnx", "onnx", "fp32", sha256_file(folder / "model.onnx"), (folder / "model.onnx").stat().st_size, Verification(passed=True))
    (folder / "manifest.json").write_text(json.dumps(Manifest(model={"name": "user"}, contract=contract, artifacts=[art]).to_dict()))
    return folder


def expected(image: np.ndarray | None, audio: np.ndarray | None) -> np.ndarray:
    img = preprocess_image(image, RGB) if image is not None else np.zeros(RGB.shape, np.float32)
    wav = preprocess_audio(audio, 16000, WAVE) if audio is not None else np.zeros(WAVE.shape, np.float32)
    return np.concatenate([img.mean((1, 2)), [wav.mean()]]) @ WEIGHTS


def test_a_model_with_its_own_interface_runs_through_the_runtime(tmp_path):
    bundle = user_bundle(tmp_path / "user.edgemm")
    model = load_bundle(bundle)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    audio = (rng.standard_normal(24000) * 0.1).astype(np.float32)  # 1.5 s at 16 kHz: cut to the 1 s window
    both = model.predict(image=image, audio=audio, sample_rate=16000)
    np.testing.assert_allclose(np.log(both.probabilities) - np.log(both.probabilities).mean(),
                               expected(image, audio) - expected(image, audio).mean(), atol=1e-4)  # fmt: skip
    assert both.label in LABELS and len(both.probabilities) == 12 and both.embedding is None
    alone = model.predict(image=image)  # the zeros convention: the absent waveform is fed as zeros, no mask input
    assert alone.modalities == ("image",) and alone.index == int(np.argmax(expected(image, None)))
    assert model.contract.input_shapes() == {"rgb": [-1, 64, 64, 3], "wave": [-1, 1, 16000]}
    out = subprocess.run([sys.executable, "-m", "edgemm", "info", str(bundle)], capture_output=True, text=True, check=True).stdout
    assert "image → 'rgb' (NHWC): 3x64x64" in out and "audio → 'wave': 16000 Hz, 1.0 s window, waveform 16000 samples" in out
    assert "missing modality: zeros" in out and "class scores 'scores' over 12 labels" in out


def test_a_model_that_needs_both_modalities_refuses_by_name(tmp_path):
    model = load_bundle(user_bundle(tmp_path / "user.edgemm", missing="required"))
    with pytest.raises(InputError, match="this model needs the audio input"):
        model.predict(image=np.zeros((64, 64, 3), np.uint8))
    assert model.contract.patterns == {"fused": (1.0, 1.0)}


def test_a_contract_that_does_not_fit_the_model_is_a_clear_error(tmp_path):
    from edgemm.runtimes import BundleError

    bundle = user_bundle(tmp_path / "user.edgemm")
    data = json.loads((bundle / "manifest.json").read_text())
    data["contract"]["modalities"]["audio"]["input"] = "waveform"
    (bundle / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"model.onnx: the model has no inputs \['waveform'\] that its contract names \(it has \['rgb', 'wave'\]\)"):
        load_bundle(bundle, self_check=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"labels": ("a",)}, "declares no modality"),
        ({"image": RGB, "labels": ("a",), "missing": "sometimes"}, "missing-modality convention 'sometimes'"),
        ({"image": RGB, "audio": WAVE, "labels": ("a",), "audio_input": "image"}, r"duplicate tensor names: \['image'\]"),
        ({"audio": AudioSpec(sample_rate=0), "labels": ("a",)}, "needs a positive integer sample_rate"),
        ({"image": RGB}, "'logits' gives class scores: list the labels"),
        ({"image": RGB, "labels": ("a", "a")}, r"duplicate labels: \['a'\]"),
        ({"image": RGB, "labels": ("a",), "logits_output": None, "embedding_output": None}, "declares no output"),
        ({"audio": AudioSpec(features="mfcc"), "labels": ("a",)}, "audio features 'mfcc'"),
    ],
)
def test_bad_contracts_name_what_is_wrong(kwargs, message):
    with pytest.raises(ContractError, match=message):
        ModelContract(**kwargs)


def test_an_output_the_contract_names_but_the_backend_did_not_give_is_a_clear_error():
    contract = ModelContract(image=RGB, labels=LABELS, logits_output="scores", embedding_output="vector")
    scores, vector = np.zeros((1, 12), np.float32), np.ones((1, 8), np.float32)
    outputs = contract.outputs({"scores": scores, "vector": vector, "extra": vector})
    assert list(outputs) == ["logits", "embedding"] and outputs["logits"] is scores and outputs["embedding"] is vector
    with pytest.raises(ContractError, match=r"the model gave no output vector \(it has scores, extra\)"):
        contract.outputs({"scores": scores, "extra": vector})


def test_schema_1_bundles_still_load(tiny_bundle, tiny_test_split):
    """An edgemm 0.1 manifest (preprocessing, inputs, outputs and missing_modality at the top level) is read as the
    built-in contract and answers exactly as its schema-2 form."""
    now = Manifest.read(tiny_bundle)
    c = now.contract
    v1 = {
        "schema_version": 1, "model": now.model, "labels": list(c.labels), "artifacts": [a.to_dict() for a in now.artifacts], "failures": [],
        "preprocessing": {"image": c.image.to_dict(), "audio": {k: v for k, v in c.audio.to_dict().items() if k != "features"}},
        "inputs": [{"name": n, "shape": s, "dtype": "float32"} for n, s in c.input_shapes().items()],
        "outputs": [{"name": "logits", "shape": [-1, len(c.labels)]}, {"name": "embedding", "shape": [-1, c.embedding_dim]}],
        "missing_modality": {"convention": "presence-mask", "mask_input": "present", "fill": 0.0},
    }  # fmt: skip
    s = tiny_test_split
    before = load_bundle(tiny_bundle).predict(s.images[0], s.audio[0], 16000)
    (tiny_bundle / "manifest.json").write_text(json.dumps(v1))
    old = Manifest.read(tiny_bundle)
    assert old.schema_version == 1 and old.contract == c
    after = load_bundle(tiny_bundle).predict(s.images[0], s.audio[0], 16000)
    np.testing.assert_array_equal(after.probabilities, before.probabilities)


def test_spec_file_form_and_its_mistakes():
    spec = {"image": {"input": "rgb", "height": 64, "width": 64, "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3},
            "audio": {"input": "wave", "sample_rate": 16000, "features": "waveform"},
            "missing": "zeros", "outputs": {"logits": "scores"}, "labels": list(LABELS)}  # fmt: skip
    contract = ModelContract.from_spec(spec, "model.yaml")
    assert contract.input_names == ["rgb", "wave"] and contract.output_names == ["scores"] and contract.mask_input is None
    assert contract.input_shapes() == {"rgb": [-1, 3, 64, 64], "wave": [-1, 1, 16000]}
    mistakes = {
        "unknown key 'heigth'": {**spec, "image": {**spec["image"], "heigth": 64}},
        "audio spec needs sample_rate": {**spec, "audio": {"input": "wave", "features": "waveform"}},
        "unknown key 'logit'": {**spec, "outputs": {"logit": "scores"}},
        "declares no modality": {k: v for k, v in spec.items() if k not in ("image", "audio")},
        "duplicate tensor names": {**spec, "audio": {**spec["audio"], "input": "rgb"}},
        "list the labels": {**spec, "labels": []},
    }
    for message, bad in mistakes.items():
        with pytest.raises(ContractError, match=message) as caught:
            ModelContract.from_spec(bad, "model.yaml")
        assert str(caught.value).startswith("model.yaml: ")


def test_float_verdict_lets_only_near_ties_flip():
    from edgemm.runtimes.reference import ReferenceSet
    from edgemm.runtimes.verification import compare

    logits = np.array([[3.0, 1.0, 0.0], [1.0, 1.0005, 0.0], [0.0, 2.0, 5.0]] * 10, np.float32)
    reference = ReferenceSet.build(lambda i, a, p: {"logits": logits[: len(p)]}, np.zeros((30, 1, 2, 2)), np.zeros((30, 1, 4)),
                                   np.full(30, -1), rows=[(1.0, 1.0)])  # fmt: skip
    near_tie = logits.copy()
    near_tie[1::3, 1] -= 0.001  # the near-tied rows flip, within fp16's bound (5e-3 of 5 = 2.5e-2)
    verdict = compare(near_tie, reference, "fp16")
    assert verdict["passed"] and verdict["top1_agreement"] < 0.7 and verdict["agreement_judged_on"].startswith("20 rows")
    decisive = logits.copy()
    decisive[0::3, 0] -= 2.5  # a clear answer changes: beyond the bound, and a disagreement
    assert "top-1 agreement" in compare(decisive, reference, "fp16")["reason"]
