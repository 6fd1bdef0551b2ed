"""Distillation and INT8 quantization with the accuracy guard, on tiny models trained for real."""
import json
import subprocess
import sys

import pytest
import yaml
from edgemm.export.onnx_int8 import Int8Options, QuantizationError
from edgemm.runtimes import BundleError, load_bundle
from edgemm.runtimes.manifest import Manifest

from edgemm.checkpoint import load_checkpoint
from edgemm.models import count_parameters
from edgemm.quantizing import INT8_FILE, quantize_bundle


def test_distillation_lowers_kd_loss_and_saves_recipe(tiny_student, tiny_checkpoint):
    student = load_checkpoint(tiny_student)
    run = student.record["distillation"]
    kd = [epoch["kd"] for epoch in run["history"]]
    assert kd[-1] < kd[0]
    assert student.model_config["arch"] == "student"
    assert count_parameters(student.model) < count_parameters(load_checkpoint(tiny_checkpoint).model)
    recipe = yaml.safe_load(tiny_student.with_suffix(".recipe.yaml").read_text())
    assert recipe["epochs"] == 6  # the flag overrode the recipe file
    assert recipe["batch_size"] == 16 and recipe["student"]["widths"] == [8, 16]  # the rest came from the file
    assert run["recipe"] == recipe


def test_bad_recipe_and_mismatched_teacher(tmp_path, tiny_checkpoint):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\nlearning_rate: 0.1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "edgemm", "distill", "--teacher", tiny_checkpoint, "--recipe", bad, "-o", tmp_path / "s.safetensors"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "unknown keys ['learning_rate']" in proc.stderr
    meta = json.loads(tiny_checkpoint.with_suffix(".json").read_text())
    meta["model"]["dim"] = 64
    broken = tmp_path / "teacher.safetensors"
    broken.write_bytes(tiny_checkpoint.read_bytes())
    broken.with_suffix(".json").write_text(json.dumps(meta))
    proc = subprocess.run(
        [sys.executable, "-m", "edgemm", "distill", "--teacher", broken, "-o", tmp_path / "s.safetensors"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "do not fit the config" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_quantize_adds_verified_int8(shipped_bundle_master):
    """The shipped student's ONNX INT8: QDQ, a configuration measured on both int8 kernel families, within budget
    on each, verified on this machine and recorded with the machine and the tools that made and checked it."""
    import onnx
    from edgemm.runtimes.machine import this_machine

    manifest = Manifest.read(shipped_bundle_master)
    art = manifest.artifact(INT8_FILE)
    q, v = art.extra["quantization"], art.verification.to_dict()
    assert art.precision == "int8" and q["format"] == "QDQ" and q["calibration"]["used"] == 300 and q["calibration"]["stratified"]
    assert art.verified, v
    assert v["top1_agreement_by_mode"]["fused"] >= 0.99 and q["within_budget"] and q["drop_points"] <= 1.0
    families = q["kernel_families"]
    assert set(families) == {"exact", "x86-avx2"}
    assert all(f["drop_points"] <= 1.0 and f["fused_agreement"] >= 99.0 for f in families.values()), families
    assert len(q["candidates"]) == 4 and q["config"]["name"] in q["config_reason"]
    assert v["machine"]["key"] == this_machine().key and v["tools"]["onnxruntime"] and v["backend_version"] == v["tools"]["onnxruntime"]
    assert art.extra["made_with"]["tools"]["onnx"] and v["reference_check"]["top1_agreement_by_mode"]["fused"] >= 0.99
    ops = {n.op_type for n in onnx.load(str(shipped_bundle_master / INT8_FILE)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    model = load_bundle(shipped_bundle_master, backend="onnxruntime", precision="int8")
    assert model.artifact.file == INT8_FILE


def test_guard_keeps_sensitive_nodes_in_float(tiny_bundle, tmp_path):
    """Calibrating on blank frames and silence clips real activations; the guard must then keep the most
    sensitive nodes in float until the drop is within budget, and record them."""
    calib = _blank_calibration(tmp_path / "blank")
    lines = []
    with pytest.warns(UserWarning, match="only 4 calibration samples"):
        manifest = quantize_bundle(tiny_bundle, str(calib), Int8Options(max_drop=1.0, max_float=1.0), log=lines.append)
    q = manifest.artifact(INT8_FILE).extra["quantization"]
    assert q["excluded_nodes"], lines
    assert q["drop_points"] <= 1.0 and q["within_budget"]
    assert len(q["sensitivity"]) >= len(q["excluded_nodes"])
    assert any("keep" in line and "in float" in line for line in lines)
    assert manifest.artifact(INT8_FILE).verification.budget_met


def test_quantize_bad_input(tiny_student_bundle, tmp_path):
    with pytest.raises(QuantizationError, match="--max-drop must be ≥ 0"):
        Int8Options(max_drop=-1)
    with pytest.raises(QuantizationError, match="--method must be one of"):
        Int8Options(method="magic")
    before = (tiny_student_bundle / "manifest.json").read_bytes()
    (tmp_path / "empty").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "edgemm", "quantize", tiny_student_bundle, "--calib", tmp_path / "empty"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "no usable calibration samples" in proc.stderr
    assert (tiny_student_bundle / "manifest.json").read_bytes() == before
    assert not (tiny_student_bundle / INT8_FILE).exists()
    (tiny_student_bundle / "model.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        quantize_bundle(tiny_student_bundle, "av-digits", Int8Options(), log=lambda _: None)


def _blank_calibration(folder):
    import numpy as np
    from edgemm.runtimes.media import write_audio, write_image

    folder.mkdir()
    for i in range(4):
        write_image(folder / f"b{i}.png", np.zeros((28, 28), np.uint8))
        write_audio(folder / f"b{i}.wav", np.zeros(16000, np.float32), 16000)
    return folder


@pytest.mark.filterwarnings("ignore:.*calibration samples")
def test_qat_fallback_runs_when_ptq_cannot_meet_the_budget(tiny_student_bundle, tiny_student, tiny_checkpoint, tmp_path):
    """PTQ on blank calibration data with no node allowed in float and a zero budget cannot pass: the QAT fallback
    fine-tunes with fake quantization of the chosen configuration (its weight range too), quantizes again, and
    an artifact still over budget is recorded as failed and refused by the runtime, with the reason."""
    from edgemm.checkpoint import CheckpointError
    from edgemm.qat import QATConfig

    calib = str(_blank_calibration(tmp_path / "blank"))
    options = Int8Options(method="minmax", max_drop=0.0, max_float=0.0, per_channel=False)
    with pytest.raises(CheckpointError, match="not the checkpoint this bundle was exported from"):
        quantize_bundle(tiny_student_bundle, calib, options, checkpoint=tiny_checkpoint, log=lambda _: None)
    lines = []
    manifest = quantize_bundle(tiny_student_bundle, calib, options, checkpoint=tiny_student, qat=QATConfig(epochs=1), log=lines.append)
    art = manifest.artifact(INT8_FILE)
    q = art.extra["quantization"]
    assert any("PTQ cannot meet the budget" in line for line in lines) and any(line.startswith("QAT fallback") for line in lines)
    assert len(q["qat"]["history"]) == 1 and q["excluded_nodes"] == [] and q["qat"]["per_channel"] is False
    assert q["qat"]["reduce_range"] == ("7-bit" in q["config"]["weights"]) and q["weights"].endswith("per-tensor")
    assert not art.verified and not q["within_budget"]
    with pytest.raises(BundleError, match=rf"no int8 artifact passed verification: {INT8_FILE}: failed verification at export"):
        load_bundle(tiny_student_bundle, precision="int8")


@pytest.mark.filterwarnings("ignore:.*calibration samples")
def test_guard_respects_the_float_node_cap(tiny_bundle, tmp_path):
    calib = str(_blank_calibration(tmp_path / "blank"))
    manifest = quantize_bundle(tiny_bundle, calib, Int8Options(max_drop=0.0, max_float=0.1), log=lambda _: None)
    art = manifest.artifact(INT8_FILE)
    q = art.extra["quantization"]
    assert len(q["excluded_nodes"]) <= 0.1 * len(q["sensitivity"]) + 1e-9
    assert not q["within_budget"] and not art.verified  # recorded as failed: never chosen by the runtime


def test_online_distillation_targets_and_repairing(tiny_checkpoint):
    """Each augmented batch's teacher targets are the teacher's answer to that row's own modality pattern, filled as
    the reference sets fill it; re-pairing swaps images only within a label and never for unlabelled rows."""
    import numpy as np
    import torch
    from edgemm.export.source import torch_infer
    from edgemm.runtimes.reference import ReferenceSet

    from edgemm.distill import Repairing, builtin_data, online_targets
    from edgemm.sources import source_from_checkpoint

    source = source_from_checkpoint(load_checkpoint(tiny_checkpoint), tiny_checkpoint)
    contract, data = source.contract, builtin_data(load_checkpoint(tiny_checkpoint)).train
    infer = torch_infer(source.model, contract)
    rows = list(contract.patterns.values())
    image, audio = data.image[:6], data.audio[:6]
    present = torch.tensor([rows[k % len(rows)] for k in range(6)], dtype=torch.float32)
    got = online_targets(infer, image, audio, present, contract.fill)["logits"].numpy()
    for k in range(6):
        want = infer(*ReferenceSet.patterns(image[k : k + 1].numpy(), audio[k : k + 1].numpy(), [rows[k % len(rows)]], contract.fill))["logits"]
        np.testing.assert_allclose(got[k : k + 1], want, atol=1e-5)

    labels = torch.tensor([0, 0, 1, 1, 1, 2, -1, 2])
    repairing, generator = Repairing(labels, 1.0), torch.Generator().manual_seed(0)
    idx = torch.arange(8)
    picked = torch.stack([repairing(idx, labels, generator) for _ in range(50)])
    assert (labels[picked] == labels).all()  # always the same label
    assert (picked[:, 6] == 6).all()  # an unlabelled row keeps its own image
    assert (picked[:, :6] != idx[:6]).any(0).all()  # every labelled row gets other images
    assert (Repairing(labels, 0.0)(idx, labels, generator) == idx).all()


def test_distillation_keeps_the_weights_moving_average(tiny_checkpoint):
    """With `ema_decay`, what each epoch validates and the run keeps is the moving average of the weights (BatchNorm
    statistics included), not the raw weights: the same seed's training path, a different student, and the kept
    student scores on the val data exactly what its epoch recorded."""
    import dataclasses

    import numpy as np
    import torch
    from edgemm.export.source import torch_infer
    from edgemm.runtimes.reference import ReferenceSet
    from edgemm.runtimes.verification import accuracy_by_mode, run_model

    from edgemm.distill import DistillConfig, builtin_data, distill_checkpoint
    from edgemm.models import StudentConfig
    from edgemm.recipes import RecipeError

    teacher = load_checkpoint(tiny_checkpoint)
    data = builtin_data(teacher)
    data = dataclasses.replace(data, val=type(data.val)(data.val.image[:200], data.val.audio[:200], data.val.labels[:200]))
    base = DistillConfig(epochs=2, batch_size=32, limit=320, threads=2, student=StudentConfig(widths=(8, 16), dim=16, hidden=32, embedding_dim=16))
    raw = distill_checkpoint(tiny_checkpoint, base, data, progress=False)
    averaged = distill_checkpoint(tiny_checkpoint, dataclasses.replace(base, ema_decay=0.999), data, progress=False)
    assert averaged.record["distillation"]["recipe"]["ema_decay"] == 0.999
    raw_state, ema_state = raw.model.state_dict(), averaged.model.state_dict()
    assert raw_state.keys() == ema_state.keys()
    assert any(not torch.equal(raw_state[k], ema_state[k]) for k in raw_state if "running_mean" in k)  # BN statistics averaged too
    assert [e["kd"] for e in raw.record["distillation"]["history"]] == [e["kd"] for e in averaged.record["distillation"]["history"]]
    held_out = ReferenceSet.build(torch_infer(teacher.model, teacher.contract), data.val.image.numpy(), data.val.audio.numpy(),
                                  data.val.labels.numpy(), name="teacher", rows=list(teacher.contract.patterns.values()), fill=teacher.contract.fill)  # fmt: skip
    kept = accuracy_by_mode(run_model(torch_infer(averaged.model, averaged.contract), held_out), held_out)
    best = averaged.record["distillation"]["best_val_fused"]
    assert np.isclose(next(iter(kept.values())), best, atol=1e-4)
    with pytest.raises(RecipeError, match="ema_decay"):
        distill_checkpoint(tiny_checkpoint, dataclasses.replace(base, ema_decay=1.0), data, progress=False)


def test_the_moving_average_warms_up():
    """The average follows the weights from the start (decay min(d, (1 + n) / (10 + n)) at the n-th update), where a
    fixed 0.999 would hold the initial weights for thousands of steps; integer buffers are averaged too, not refused."""
    import torch
    from torch import nn
    from torch.optim.swa_utils import AveragedModel

    from edgemm.distill import warmed_ema

    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    average = AveragedModel(model, multi_avg_fn=warmed_ema(0.999), use_buffers=True)
    weight = model[0].weight
    expected = 0.0
    for n, value in enumerate([0.0, 1.0, 1.0, 1.0, 5.0]):
        with torch.no_grad():
            weight.fill_(value)
        average.update_parameters(model)
        decay = min(0.999, (1 + n) / (10 + n)) if n else 0.0  # the first update copies
        expected = decay * expected + (1 - decay) * value
    assert abs(average.module[0].weight.item() - expected) < 1e-6
    assert expected > 1.0  # (a fixed 0.999 would have left it at ~0.008)
