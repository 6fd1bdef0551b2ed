"""Numpy preprocessing: shapes, references, and equality between training features and the runtime."""
import numpy as np
import pytest
from edgemm.runtimes.errors import InputError
from edgemm.runtimes.preprocess import (
    AudioSpec,
    ImageSpec,
    clip_frames,
    log_mel,
    preprocess_audio,
    preprocess_image,
    resample,
    to_mono_float,
)


def test_training_features_equal_runtime_preprocessing(tiny_test_split, tiny_checkpoint):
    """What the model sees in training is exactly what a device computes from the same raw input."""
    from edgemm.checkpoint import load_checkpoint
    from edgemm.data.features import split_tensors

    ckpt = load_checkpoint(tiny_checkpoint)
    split = tiny_test_split.subset(np.arange(8))
    image, audio = split_tensors(split, ckpt.image, ckpt.audio)
    for i in range(len(split)):
        np.testing.assert_array_equal(image[i], preprocess_image(split.images[i], ckpt.image))
        np.testing.assert_array_equal(audio[i], preprocess_audio(split.audio[i], 16000, ckpt.audio))


def test_log_mel_matches_torch_stft():
    torch = pytest.importorskip("torch")
    spec = AudioSpec()
    clip = np.random.default_rng(0).normal(0, 0.1, spec.clip_samples).astype(np.float32)
    ours = log_mel(clip[None], spec)[0, 0]
    window = torch.hann_window(spec.win_length, periodic=True)
    pad = (spec.n_fft - spec.win_length) // 2  # our frames are the 400 windowed samples, zero-padded to 512
    stft = torch.stft(torch.nn.functional.pad(torch.from_numpy(clip), (pad, pad)), spec.n_fft, spec.hop_length, spec.win_length, window, center=False, return_complex=True)
    from edgemm.runtimes.preprocess import mel_filterbank

    power = stft.abs().numpy() ** 2
    ref = np.log(mel_filterbank(16000, 512, 40, 20.0, 8000.0).T @ power + spec.log_floor)
    assert ours.shape == ref.shape == (40, 98)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_log_mel_of_a_clip_does_not_depend_on_the_calls_before(monkeypatch):
    """The log-mel's work buffers are kept per thread (preprocess.scratch, up to SCRATCH_BYTES), with the views of them
    every call takes: a clip's features equal those computed in fresh buffers, after a longer batch and after a batch
    too big for the buffers, in threads too, and whatever the kept buffer held before."""
    from concurrent.futures import ThreadPoolExecutor

    from edgemm.runtimes import preprocess

    spec, rng = AudioSpec(), np.random.default_rng(3)
    clip, batch = rng.normal(0, 0.1, (1, spec.clip_samples)).astype(np.float32), rng.normal(0, 0.1, (5, spec.clip_samples)).astype(np.float32)
    first = log_mel(clip, spec)
    monkeypatch.setattr(preprocess, "SCRATCH_BYTES", 0)  # every call in fresh buffers
    fresh = log_mel(clip, spec)
    monkeypatch.undo()
    np.testing.assert_array_equal(first, fresh)
    batched = log_mel(batch, spec)
    np.testing.assert_array_equal(log_mel(clip, spec), fresh)
    monkeypatch.setattr(preprocess, "SCRATCH_BYTES", 3 * spec.frames * spec.n_fft * 4)  # the batch of 5 is too big for them
    np.testing.assert_array_equal(log_mel(batch, spec), batched)
    np.testing.assert_array_equal(log_mel(clip, spec), fresh)
    monkeypatch.undo()
    inputs, expected = [clip[0], batch[1]] * 8, [fresh, batched[1:2]] * 8
    with ThreadPoolExecutor(2) as pool:
        for out, want in zip(pool.map(lambda x: log_mel(x[None], spec), inputs), expected):
            np.testing.assert_array_equal(out, want)
    assert not np.shares_memory(log_mel(clip, spec), log_mel(clip, spec))
    held = vars(preprocess._scratch)["mel-frames"]
    for forget in (True, False):  # NaN in every kept float, under new rows and under the thread's last ones
        held[:] = 255
        if forget:
            vars(preprocess._MelRows._last).clear()
        np.testing.assert_array_equal(log_mel(clip, spec), fresh)
    monkeypatch.setattr(preprocess, "_opencv", lambda: None)  # numpy's DFT: the frames buffer kept, the spectrum not
    numpy_clip = log_mel(clip, spec)
    np.testing.assert_allclose(numpy_clip, fresh, atol=1e-4)
    np.testing.assert_allclose(log_mel(batch, spec), batched, atol=1e-4)
    np.testing.assert_array_equal(log_mel(clip, spec), numpy_clip)


@pytest.mark.parametrize("spec", [AudioSpec(), AudioSpec(n_fft=256, win_length=256, n_mels=96, fmin=0.0, mean=50.0)])
def test_opencv_windowing_gives_numpys_products(spec):
    """Up to a clip's frames, OpenCV windows the frames into the work array in place, one multiply per hop-wide piece of
    the window; the log-mel is bit-identical to numpy's broadcast multiply, for one clip, a live front-end's few new
    frames and frames filling the work rows exactly; a batch of clips goes to numpy."""
    from edgemm.runtimes import preprocess

    cv2 = pytest.importorskip("cv2", reason="OpenCV (the app extra) is what numpy is compared with")

    class Counted:  # OpenCV, counting the window multiplies
        multiplies = 0

        def __getattr__(self, name):
            return getattr(cv2, name)

        def multiply(self, *args, **kwargs):
            Counted.multiplies += 1
            return cv2.multiply(*args, **kwargs)

    with_cv, numpy_window = preprocess._MelPlan(spec, Counted()), preprocess._MelPlan(spec, cv2)
    numpy_window.pieces = []
    pieces = -(-spec.win_length // spec.hop_length)  # 3 for 400 / 160, 2 for 256 / 160
    clips = np.random.default_rng(5).normal(0, 0.2, (3, spec.clip_samples)).astype(np.float32)
    for frames, by_opencv in [(clip_frames(clips[:1], spec), pieces), (clip_frames(clips[0], spec), pieces),
                              (clip_frames(clips[0, : 4 * spec.hop_length + spec.win_length], spec), pieces), (clip_frames(clips, spec), 0)]:  # fmt: skip
        before = Counted.multiplies
        got = with_cv(frames)
        assert Counted.multiplies - before == by_opencv
        np.testing.assert_array_equal(got, numpy_window(frames))
        assert np.isfinite(got).all()


@pytest.mark.parametrize("spec", [AudioSpec(mean=-3.0, std=2.0), AudioSpec(n_fft=256, win_length=256, n_mels=96, fmin=0.0, mean=50.0),
                                  AudioSpec(sample_rate=8000, n_fft=1024, win_length=800, hop_length=80, n_mels=64, fmax=4000.0)])
def test_log_mel_projects_on_the_banks_non_zero_blocks(spec):
    """The mel projection multiplies only blocks of neighbouring filters and the bins they span (each under the size
    OpenBLAS runs on one thread): together they hold every non-zero of the bank, and the log-mel equals the plain
    whole-bank computation, for specs with empty filters too."""
    from edgemm.runtimes import preprocess

    for cv2 in {preprocess._opencv(), None}:
        plan = preprocess._MelPlan(spec, cv2)
        rebuilt, covered = np.zeros_like(plan.bank), np.zeros(spec.n_mels, int)
        for bins, filters, block in plan.blocks:
            rebuilt[bins, filters] = block
            covered[filters] += 1
            assert block.size <= plan.budget or filters.stop - filters.start == 1
        assert (covered == 1).all()
        np.testing.assert_array_equal(rebuilt, plan.bank)
    clips = np.random.default_rng(4).normal(0, 0.1, (2, spec.clip_samples)).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(clips, spec.win_length, axis=1)[:, :: spec.hop_length]
    window = np.hanning(spec.win_length + 1)[:-1]
    power = np.abs(np.fft.rfft(frames * window, spec.n_fft)) ** 2
    bank = preprocess.mel_filterbank(spec.sample_rate, spec.n_fft, spec.n_mels, spec.fmin, spec.fmax)
    want = (np.log(power @ bank + spec.log_floor) - spec.mean) / spec.std
    np.testing.assert_allclose(log_mel(clips, spec)[:, 0], np.swapaxes(want, 1, 2), atol=1e-4)


def test_image_colour_grey_and_resize():
    spec = ImageSpec()
    grey = np.full((480, 640), 200, np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    a, b = preprocess_image(grey, spec), preprocess_image(rgb, spec)
    assert a.shape == (1, 32, 32) and a.dtype == np.float32
    out = np.full((1, 32, 32), np.nan, np.float32)  # written in place when given (the runtime's batch tensor)
    assert preprocess_image(rgb, spec, out=out) is out
    np.testing.assert_array_equal(out, b)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, (200 / 255 - spec.mean[0]) / spec.std[0], atol=1e-5)
    # BGR and RGB of the same scene give the same luma
    scene = np.random.default_rng(1).integers(0, 256, (60, 60, 3), dtype=np.uint8)
    np.testing.assert_allclose(preprocess_image(scene, spec, "RGB"), preprocess_image(scene[:, :, ::-1], spec, "BGR"), atol=1e-5)


def test_resample_keeps_a_tone():
    rate_in, rate_out, f = 22050, 16000, 440.0
    t = np.arange(rate_in) / rate_in
    y = resample(np.sin(2 * np.pi * f * t).astype(np.float32), rate_in, rate_out)
    assert len(y) == rate_out
    ref = np.sin(2 * np.pi * f * np.arange(rate_out) / rate_out)
    assert np.abs(y[100:-100] - ref[100:-100]).max() < 1e-3


def test_audio_dtypes_and_stereo_agree():
    spec = AudioSpec(mean=0, std=1)
    x = (np.random.default_rng(2).normal(0, 0.1, 16000)).astype(np.float32)
    pcm = np.round(x * 32767).astype(np.int16)
    stereo = np.stack([x, x], axis=1)
    a = preprocess_audio(x, 16000, spec)
    np.testing.assert_allclose(preprocess_audio(stereo, 16000, spec), a, atol=1e-5)
    np.testing.assert_allclose(preprocess_audio(pcm, 16000, spec), a, atol=5e-2)
    assert preprocess_audio(x[:8000], 16000, spec).shape == spec.shape  # short clips are padded
    assert preprocess_audio(resample(x, 16000, 44100), 44100, spec).shape == spec.shape
    wave = AudioSpec(features="waveform")
    for s in (spec, wave):  # written in place when given (the runtime's batch tensor), never the caller's audio
        out = np.full(s.shape, np.nan, np.float32)
        assert preprocess_audio(x, 16000, s, out=out) is out
        np.testing.assert_array_equal(out, preprocess_audio(x, 16000, s))
        assert not np.shares_memory(out, x)
        with pytest.raises(InputError, match="out must be float32"):
            preprocess_audio(x, 16000, s, out=np.zeros(s.shape, np.float64))


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((32, 32), np.float32), "uint8"),
        (np.zeros((32, 32, 5), np.uint8), "HxW or HxWx3"),
        (np.zeros((2, 3, 32, 32), np.uint8), "HxW or HxWx3"),
        ([[0, 1], [2, 3]], "numpy array"),
    ],
)
def test_bad_images(image, message):
    with pytest.raises(InputError, match=message):
        preprocess_image(image, ImageSpec())


@pytest.mark.parametrize(
    "audio, rate, message",
    [
        (np.array([0.1, np.nan] * 100, np.float32), 16000, "NaN or inf"),
        (np.array([0.1, np.inf] * 100, np.float32), 16000, "NaN or inf"),
        (np.array([[0.1, -np.inf]] * 100, np.float64), 16000, "NaN or inf"),
        (np.zeros(0, np.float32), 16000, "empty"),
        (np.zeros((2, 2, 2), np.float32), 16000, "shape"),
        (np.zeros(100, np.uint8), 16000, "float32, int16 or int32"),
        (np.zeros(100, np.float32), 0, "sample rate"),
    ],
)
def test_bad_audio(audio, rate, message):
    with pytest.raises(InputError, match=message):
        preprocess_audio(audio, rate, AudioSpec())


@pytest.mark.parametrize("spec", [AudioSpec(mean=-2.2, std=3.6), AudioSpec(mean=50.0, std=2.0)])  # mean folded into the bank, and not
def test_log_mel_energies_are_what_its_log_was_taken_of(spec):
    """`energies` receives exp(log-mel * std), the same log-mel beside it, for one clip and a batch."""
    clips = np.random.default_rng(5).normal(0, 0.1, (3, spec.clip_samples)).astype(np.float32)
    energies = np.empty((3, *spec.shape), np.float32)
    feats = log_mel(clips, spec, energies=energies)
    np.testing.assert_array_equal(feats, log_mel(clips, spec))
    np.testing.assert_allclose(energies, np.exp(feats.astype(np.float64) * spec.std), rtol=2e-5)
    one = np.empty(spec.shape, np.float32)
    np.testing.assert_array_equal(preprocess_audio(clips[1], spec.sample_rate, spec, energies=one), feats[1])
    np.testing.assert_allclose(one, energies[1], rtol=1e-6)
    with pytest.raises(InputError, match="energies must be"):
        log_mel(clips, spec, energies=energies[:, :, :, :5])
    into, kept = np.empty(spec.shape, np.float32), np.empty(spec.shape, np.float32)  # written in place, as predict() does
    assert preprocess_audio(clips[2], spec.sample_rate, spec, out=into, energies=kept) is into
    np.testing.assert_array_equal(into, feats[2])
    np.testing.assert_allclose(kept, energies[2], rtol=1e-6)
    strided = np.empty((*spec.shape[:-1], 2 * spec.shape[-1]), np.float32)[..., ::2]  # an `out` that is not C-contiguous
    assert preprocess_audio(clips[2], spec.sample_rate, spec, out=strided) is strided
    np.testing.assert_array_equal(strided, feats[2])
    with pytest.raises(InputError, match=r"energies must be C-contiguous float32 \(1, \d+, \d+\)"):
        preprocess_audio(clips[2], spec.sample_rate, spec, out=into, energies=kept[..., :5])


def test_huge_finite_audio_is_not_called_nan():
    """Finiteness is checked by a sum of squares, which overflows for samples of ~1e17 and more: such audio is
    finite, so it is not refused as NaN or inf (the exact check decides when the sum overflows)."""
    loud = np.full((100, 2), 1e30, np.float32)
    with np.errstate(over="ignore"):  # (the sum's overflow warning, as squaring such audio later warns anyway)
        np.testing.assert_array_equal(to_mono_float(loud), np.full(100, 1e30, np.float32))
