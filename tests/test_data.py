"""The built-in av-digits data set: real digits, synthesised speech, disjoint splits, held-out voice families,
training augmentation, determinism."""
import json

import numpy as np
import pytest

from edgemm.data.avdigits import AVDigitsConfig, build, load_split
from edgemm.data.mnist import load_mnist_5k
from edgemm.data.speech import DIGIT_WORDS, Espeak, Voice
from edgemm.data.voices import (
    BASES,
    HELD_OUT_BASES,
    HELD_OUT_VARIANTS,
    VARIANTS,
    held_out,
)

SMALL = AVDigitsConfig(per_class=20, prosodies=1)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One small data set built for the module's tests (a build takes ~20 s)."""
    folder = tmp_path_factory.mktemp("av-digits")
    build(SMALL, folder)
    return folder


def test_mnist_file_is_real_digits():
    images, labels = load_mnist_5k()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert images[:, :3, :3].max() == 0 and images.max() == 255  # dark border, bright strokes


def test_espeak_speaks_every_digit():
    tts = Espeak.get()
    for word in DIGIT_WORDS:
        pcm = tts.say(word, Voice("gmw/en-US", 150))
        assert pcm.dtype == np.int16 and 0.2 * tts.sample_rate < len(pcm) < 1.5 * tts.sample_rate
        assert np.abs(pcm).max() > 3000


def test_splits_are_disjoint_in_images_and_voices(root):
    folder = build(SMALL, root)
    splits = {name: load_split(name, SMALL, root) for name in ("train", "val", "test")}
    meta = json.loads((folder / "meta.json").read_text())
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(splits[a].source) & set(splits[b].source)
        assert not set(splits[a].voice) & set(splits[b].voice)
        assert not set(meta["voices"][a]) & set(meta["voices"][b])
    test = splits["test"]
    assert test.images.shape[1:] == (28, 28) and test.audio.shape[1:] == (16000,) and test.audio.dtype == np.int16
    assert np.bincount(test.labels).min() == np.bincount(test.labels).max()  # class-balanced
    assert 0.15 < test.heavy_image.mean() < 0.45 and 0.15 < test.heavy_audio.mean() < 0.45
    assert not (test.heavy_image & test.heavy_audio).any()


def test_held_out_families_are_never_trained_on(root):
    splits = {name: load_split(name, SMALL, root) for name in ("train", "val", "test", "heldout")}
    trained = {v for name in ("train", "val", "test") for v in splits[name].voice}
    assert not any(held_out(v) for v in trained)
    assert {v.partition("+")[0] for v in trained} == set(BASES) - set(HELD_OUT_BASES)
    assert len({v.partition("+")[2] for v in trained}) == len(VARIANTS) - len(HELD_OUT_VARIANTS)
    heldout = splits["heldout"]
    assert all(held_out(v) for v in heldout.voice)
    assert len(set(heldout.voice)) == len(BASES) * len(VARIANTS) - (len(BASES) - len(HELD_OUT_BASES)) * (len(VARIANTS) - len(HELD_OUT_VARIANTS))
    assert np.bincount(heldout.labels).min() == np.bincount(heldout.labels).max()
    assert not heldout.heavy_audio.any() and (np.abs(heldout.audio).max(axis=1) > 3000).all()  # clean, audible
    # each held-out clip's audio is the word alone: silent outside it (no noise was added)
    quiet = np.abs(heldout.audio[:, :100]).max(axis=1) <= 2
    assert quiet.mean() > 0.5


def test_build_is_deterministic_and_cached(root, tmp_path):
    a = load_split("val", SMALL, root)
    b = load_split("val", SMALL, tmp_path)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.voice, b.voice)
    np.testing.assert_array_equal(a.audio, b.audio)  # although this process's espeak-ng has spoken before
    train_a, train_b = load_split("train", SMALL, root), load_split("train", SMALL, tmp_path)
    np.testing.assert_array_equal(train_a.audio, train_b.audio)  # the augmentation is seeded too
    folder = build(SMALL, tmp_path)
    stamp = (folder / "val.npz").stat().st_mtime_ns
    build(SMALL, tmp_path)
    assert (folder / "val.npz").stat().st_mtime_ns == stamp
