"""Teaching from several teachers at once (an ensemble), the image-jitter training option and the training device."""
import json
import subprocess
import sys

import pytest
import torch
from edgemm.runtimes.manifest import sha256_file

from edgemm.checkpoint import load_checkpoint, save_checkpoint
from edgemm.ensemble import TeacherEnsemble
from edgemm.models import Teacher, TeacherConfig
from edgemm.train import jitter_images, tiny_config, train


def edgemm(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgemm", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def jitter_teacher(tmp_path_factory):
    """A second tiny teacher, trained for real with the image-jitter option and another seed."""
    return save_checkpoint(tmp_path_factory.mktemp("jitter") / "teacher-jitter.safetensors", train(tiny_config(image_augment=0.5, seed=1), progress=False))


def test_ensemble_answers_with_the_mean_probabilities():
    torch.manual_seed(0)
    config = TeacherConfig(width=8, dim=32, heads=2, embedding_dim=16)
    members = [Teacher(config).eval(), Teacher(config).eval()]
    image, audio, present = torch.randn(5, *config.image_shape), torch.randn(5, *config.audio_shape), torch.tensor([[1.0, 1.0], [1, 0], [0, 1], [1, 1], [1, 0]])
    with torch.no_grad():
        logits, embedding = TeacherEnsemble(members)(image, audio, present)
        answers = [m(image, audio, present) for m in members]
    mean = torch.stack([torch.softmax(lg, 1) for lg, _ in answers]).mean(0)
    torch.testing.assert_close(torch.softmax(logits, 1), mean)
    torch.testing.assert_close(embedding, torch.cat([e for _, e in answers], 1))


def test_distil_from_two_teachers(tiny_checkpoint, jitter_teacher, tmp_path):
    assert load_checkpoint(jitter_teacher).record["training"]["image_augment"] == 0.5
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("batch_size: 16\nlr: 0.004\nstudent:\n  widths: [8, 16]\n  dim: 16\n  hidden: 32\n  embedding_dim: 16\n")
    out = tmp_path / "student.safetensors"
    proc = edgemm("distill", "--teacher", tiny_checkpoint, "--teacher", jitter_teacher, "--recipe", recipe, "--epochs", 12, "--device", "cpu", "-o", out, "-q")
    assert proc.returncode == 0, proc.stderr
    student = load_checkpoint(out)
    run = student.record["distillation"]
    members = run["teacher"]["members"]
    assert [m["sha256"] for m in members] == [sha256_file(tiny_checkpoint), sha256_file(jitter_teacher)]
    assert run["teacher"]["parameters"] == sum(m["parameters"] for m in members)
    kd = [epoch["kd"] for epoch in run["history"]]
    assert kd[-1] < kd[0]
    assert run["best_val_fused"] >= 0.2, run["history"]  # ten classes, 60 val samples: chance is 0.1 (the tiny teachers: ~0.4)
    assert student.contract.embedding_dim == 16 and student.image == load_checkpoint(tiny_checkpoint).image


def test_ensemble_refuses_an_unlike_teacher(tiny_checkpoint, jitter_teacher, tmp_path):
    other = tmp_path / "other.safetensors"
    other.write_bytes(jitter_teacher.read_bytes())
    meta = json.loads(jitter_teacher.with_suffix(".json").read_text())
    meta["preprocessing"]["audio"]["mean"] += 1.0
    other.with_suffix(".json").write_text(json.dumps(meta))
    proc = edgemm("distill", "--teacher", tiny_checkpoint, "--teacher", other, "-o", tmp_path / "s.safetensors")
    assert proc.returncode == 2 and f"{other}: not a teacher like {tiny_checkpoint}" in proc.stderr and "Traceback" not in proc.stderr
    meta = json.loads(jitter_teacher.with_suffix(".json").read_text())
    meta["data"]["seed"] = 7  # trained on another draw of the data set
    other.with_suffix(".json").write_text(json.dumps(meta))
    proc = edgemm("distill", "--teacher", tiny_checkpoint, "--teacher", other, "-o", tmp_path / "s.safetensors")
    assert proc.returncode == 2 and f"{other}: not a teacher like {tiny_checkpoint}" in proc.stderr
    proc = edgemm("distill", "--teacher", "model.py:build", "--teacher", tiny_checkpoint, "-o", tmp_path / "s.safetensors")
    assert proc.returncode == 2 and "comes alone" in proc.stderr


def test_training_device_refused_by_name(tiny_checkpoint, tmp_path):
    proc = edgemm("distill", "--teacher", tiny_checkpoint, "--device", "gpu0", "-o", tmp_path / "s.safetensors")
    assert proc.returncode == 2 and "'gpu0' is not a torch device name" in proc.stderr and "Traceback" not in proc.stderr
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("device: null\n")
    proc = edgemm("distill", "--teacher", tiny_checkpoint, "--recipe", recipe, "-o", tmp_path / "s.safetensors")
    assert proc.returncode == 2 and "None is not a torch device name" in proc.stderr and "Traceback" not in proc.stderr
    if not torch.cuda.is_available():
        proc = edgemm("train", "--tiny", "--device", "cuda", "-o", tmp_path / "t.safetensors")
        assert proc.returncode == 2 and "sees no CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "s.safetensors").exists() and not (tmp_path / "t.safetensors").exists()


def test_jitter_moves_only_the_chosen_images():
    image = torch.rand(64, 1, 16, 16)
    assert torch.equal(jitter_images(image, 0.0, torch.Generator().manual_seed(0)), image)
    moved = jitter_images(image, 0.5, torch.Generator().manual_seed(0))
    changed = (moved != image).flatten(1).any(1)
    assert 16 < int(changed.sum()) < 48  # about half the rows
    assert moved.min() >= image.min() and moved.max() <= image.max()  # bilinear, borders repeated: no new values


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (this torch sees none)")
def test_train_and_distil_on_cuda(tiny_checkpoint):
    """On a GPU: a teacher trained and a student distilled there, with online and with cached teacher answers, come
    back on the CPU and answer."""
    from edgemm.distill import DistillConfig, distill_checkpoint
    from edgemm.models import StudentConfig

    teacher = train(tiny_config(epochs=2, device="cuda"), progress=False)
    assert all(p.device.type == "cpu" for p in teacher.model.parameters())
    small = StudentConfig(widths=(8, 16), dim=16, hidden=32, embedding_dim=16)
    for cached in (False, True):
        plain = {"repair": 0.0, "image_augment": 0.0, "feature_augment": 0.0} if cached else {}
        student = distill_checkpoint(tiny_checkpoint, DistillConfig(epochs=2, batch_size=16, device="cuda", student=small, **plain), progress=False)
        assert all(p.device.type == "cpu" for p in student.model.parameters())
        assert len(student.record["distillation"]["history"]) == 2
