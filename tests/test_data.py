"""The built-in av-digits data set: real digits, synthesised speech, disjoint splits, determinism."""
import json

import numpy as np

from edgemm.data.avdigits import AVDigitsConfig, build, load_split
from edgemm.data.mnist import load_mnist_5k
from edgemm.data.speech import DIGIT_WORDS, Espeak, Voice

SMALL = AVDigitsConfig(per_class=20, prosodies=1)


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


def test_splits_are_disjoint_in_images_and_voices(tmp_path):
    folder = build(SMALL, tmp_path)
    splits = {name: load_split(name, SMALL, tmp_path) for name in ("train", "val", "test")}
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


def test_build_is_deterministic_and_cached(tmp_path):
    a = load_split("val", SMALL, tmp_path / "a")
    b = load_split("val", SMALL, tmp_path / "b")
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.voice, b.voice)
    np.testing.assert_array_equal(a.audio, b.audio)  # although this process's espeak-ng has spoken before
    folder = build(SMALL, tmp_path / "a")
    stamp = (folder / "val.npz").stat().st_mtime_ns
    build(SMALL, tmp_path / "a")
    assert (folder / "val.npz").stat().st_mtime_ns == stamp
