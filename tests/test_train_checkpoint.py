"""Training a tiny teacher for real, and the checkpoint format around it."""
import json

import pytest
import torch

from edgemm.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from edgemm.models import Teacher, TeacherConfig, build_model, count_parameters


def test_default_teacher_is_a_few_million_parameters():
    assert 1_000_000 < count_parameters(Teacher()) < 10_000_000


def test_absent_modality_input_is_ignored():
    model = build_model(TeacherConfig(width=8, dim=32, heads=2, embedding_dim=16).to_dict()).eval()
    img, aud = torch.randn(3, 1, 32, 32), torch.randn(3, 1, 40, 98)
    present = torch.tensor([[1.0, 0.0]] * 3)
    with torch.no_grad():
        a = model(img, aud, present)[0]
        b = model(img, torch.randn_like(aud) * 100, present)[0]
    torch.testing.assert_close(a, b)


def test_tiny_training_learns(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    assert ckpt.record["training"]["best_val_fused"] > 0.3  # chance is 0.1
    assert ckpt.audio.std > 0 and ckpt.audio.mean != 0.0  # normalisation fitted on training audio


def test_checkpoint_roundtrip_and_errors(tiny_checkpoint, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    path = save_checkpoint(tmp_path / "copy.safetensors", ckpt)
    again = load_checkpoint(path)
    for k, v in ckpt.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[k], v)
    assert again.audio == ckpt.audio and again.labels == ckpt.labels

    meta = json.loads(path.with_suffix(".json").read_text())
    meta["model"]["width"] = 16  # weights no longer fit the config
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit the config"):
        load_checkpoint(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="missing or unreadable checkpoint config"):
        load_checkpoint(path)
