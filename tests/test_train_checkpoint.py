"""Training a tiny teacher for real, and the checkpoint format around it."""
import json

import pytest
import torch

from edgemm.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from edgemm.models import Teacher, TeacherConfig, build_model, count_parameters
from edgemm.train import TrainConfig, augment_features


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


def test_vtlp_warps_the_mel_axis_and_spec_augment_masks():
    audio = torch.zeros(64, 1, 40, 98)
    audio[:, :, 20] = 5.0  # one bright mel band
    warped = augment_features(audio, TrainConfig(feature_augment=1.0, vtlp=0.1, freq_masks=0, time_masks=0), torch.Generator().manual_seed(0))
    peak = warped[:, 0].mean(dim=2).argmax(dim=1)  # where the band went, per sample
    assert peak.min() >= 18 and peak.max() <= 22 and len(set(peak.tolist())) > 1  # 20 / (1 ± 0.1), not all alike
    assert torch.equal(augment_features(audio, TrainConfig(vtlp=0.0, freq_masks=0, time_masks=0), torch.Generator()), audio)
    ones = torch.ones(64, 1, 40, 98)
    masked = augment_features(ones, TrainConfig(vtlp=0.0), torch.Generator().manual_seed(0))
    rows, cols = (masked[:, 0] == 0).all(dim=2).sum(dim=1), (masked[:, 0] == 0).all(dim=1).sum(dim=1)
    assert rows.max() <= 5 and cols.max() <= 10 and rows.sum() > 0 and cols.sum() > 0  # a mask of ≤ 5 bands, ≤ 10 frames
    touched = (masked != 1).flatten(1).any(dim=1).float().mean()
    assert 0.2 < touched < 0.6  # on about half the clips
