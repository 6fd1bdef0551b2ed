"""The live audio front-end (incremental log-mel in a ring) against the offline preprocessing, over long streams
with gaps, out-of-order, repeated and overflowing blocks, at the model's rate and resampled; and OpenCV against
numpy in the shared preprocessing."""
import numpy as np
import pytest

soxr = pytest.importorskip("soxr", reason="soxr (the app extra) resamples a live stream")
from edgemm.runtimes import preprocess
from edgemm.runtimes.live import AudioRing, StreamFrontEnd
from edgemm.runtimes.preprocess import AudioSpec, ImageSpec, log_mel, preprocess_image

SPEC = AudioSpec(mean=-6.0, std=3.5)
BLOCK_MS = 20


class Stream:
    """Writes a synthetic speech-like signal block by block with exact timestamps, keeping what an offline
    pipeline would see: every contiguous segment's samples and the time of its first sample."""

    def __init__(self, rate: int, seed: int = 0) -> None:
        self.rate, self.rng = rate, np.random.default_rng(seed)
        self.ring = AudioRing(rate, seconds=4.0)
        self.resets: list[str] = []
        self.front = StreamFrontEnd(self.ring, SPEC, on_reset=self.resets.append)
        self.t_us, self.segments = 0.0, [(0.0, [])]
        self.block = rate * BLOCK_MS // 1000

    def signal(self) -> np.ndarray:
        t = np.arange(self.block) / self.rate
        tone = np.sin(2 * np.pi * self.rng.uniform(100, 3000) * t + self.rng.uniform(0, 6))
        return (self.rng.uniform(0.01, 0.5) * tone + 0.05 * self.rng.standard_normal(self.block)).astype(np.float32)

    def write(self, gap_ms: float = 0.0, contiguous: bool | None = None) -> None:
        block = self.signal()
        if gap_ms or contiguous is False:
            self.segments.append((self.t_us + gap_ms * 1000, []))
        self.t_us += gap_ms * 1000 + self.block * 1e6 / self.rate
        self.ring.write(block, round(self.t_us), contiguous)
        self.segments[-1][1].append(block)

    def expected(self, t_us: int) -> tuple[np.ndarray, int] | None:
        """Offline: the current segment resampled in one go (soxr one-shot), the clip ending on its hop grid at or
        before `t_us`, its log-mel and the time of its last sample."""
        t0, blocks = self.segments[-1]
        if not blocks:
            return None
        source = np.concatenate(blocks)
        have = min(len(source), int(np.floor((t_us - t0) * self.rate / 1e6 + 1e-6)))  # samples captured by t_us
        audio = source if self.rate == SPEC.sample_rate else soxr.resample(source, self.rate, SPEC.sample_rate, quality="HQ")
        ready = len(audio) if self.rate == SPEC.sample_rate else len(soxr.ResampleStream(self.rate, SPEC.sample_rate, 1, dtype="float32").resample_chunk(source))
        stop = min(have * SPEC.sample_rate // self.rate, ready)
        start = (stop - SPEC.clip_samples) // SPEC.hop_length * SPEC.hop_length
        if start < 0:
            return None
        end_us = t0 + (start + SPEC.clip_samples) * 1e6 / SPEC.sample_rate
        return log_mel(audio[None, start : start + SPEC.clip_samples], SPEC)[0], round(end_us)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_stream_features_equal_offline_preprocessing_through_breaks(rate):
    """30 s of stream with a 150 ms gap, a repeated block, an out-of-order block and an overflow: every window
    equals the offline log-mel of the same samples (max |Δ| ≤ 1e-5), no window spans a break, each break restarts
    the features and says why."""
    s = Stream(rate)
    events = {300: ("gap", 150.0), 700: ("repeat", None), 1000: ("overflow", None), 1200: ("out-of-order", None)}
    worst, compared, refused_after_break = 0.0, 0, 0
    for k in range(1500):
        kind, arg = events.get(k, (None, None))
        if kind == "gap":
            s.write(gap_ms=arg)
        elif kind == "overflow":
            s.write(contiguous=False)
        elif kind in ("repeat", "out-of-order"):
            last = s.t_us
            s.ring.write(s.signal(), round(last if kind == "repeat" else last - 5000))  # dropped by the ring: a new stream follows
            s.segments.append((s.t_us, []))
        else:
            s.write()
        if k % 2:
            continue
        t = round(s.t_us) - int(s.rng.integers(0, 30_000))  # a frame captured up to 30 ms before the newest audio
        got, want = s.front.window(t), s.expected(t)
        assert (got is None) == (want is None), (k, got, want)
        if got is None:
            refused_after_break += k > 50
            continue
        worst = max(worst, float(np.abs(got.tensor - want[0]).max()))
        assert abs(got.end_us - want[1]) <= 1, (k, got.end_us, want[1])
        assert got.end_us <= t
        compared += 1
    assert worst <= 1e-5 and compared > 500
    assert refused_after_break >= 4 * 20  # about a clip of image-only answers after each of the four breaks
    assert s.front.resets == 4 and s.ring.dropped_blocks == 2
    reasons = " | ".join(s.resets)
    for words in ("a gap of 150.0 ms", "out of order or repeated", "a discontinuity the source reported"):
        assert words in reasons


def test_waveform_model_stream_equals_offline():
    spec = AudioSpec(features="waveform", clip_seconds=0.5)
    ring, rng = AudioRing(48000, 4.0), np.random.default_rng(3)
    front = StreamFrontEnd(ring, spec)
    audio = rng.standard_normal(48000 * 3).astype(np.float32) * 0.1
    for k, i in enumerate(range(0, len(audio), 960)):
        ring.write(audio[i : i + 960], end_us=round((i + 960) * 1e6 / 48000))
    got = front.window(ring.end_us)
    want = soxr.resample(audio, 48000, 16000, quality="HQ")
    stop = len(soxr.ResampleStream(48000, 16000, 1, dtype="float32").resample_chunk(audio))
    np.testing.assert_allclose(got.tensor[0], want[stop - spec.clip_samples : stop], atol=1e-6)


def test_opencv_and_numpy_preprocessing_agree(monkeypatch):
    """Resize (box + linear, down and up, colour and grey, odd sizes, a box alone, none) and the FFT behind the log-mel give the same
    numbers with OpenCV as with numpy alone."""
    pytest.importorskip("cv2", reason="OpenCV (the app extra) is what numpy is compared with")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(480, 640, 3), (112, 148, 3), (28, 28), (33, 47, 3), (721, 1283), (96, 128, 3), (32, 32, 3)]]
    specs = [ImageSpec(), ImageSpec(height=24, width=40, channels=3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), color_order="BGR")]
    clips = rng.normal(0, 0.2, (3, SPEC.clip_samples)).astype(np.float32)
    with_cv = [preprocess_image(f, s, "RGB") for f in frames for s in specs], log_mel(clips, SPEC)
    monkeypatch.setattr(preprocess, "_opencv", lambda: None)
    numpy_only = [preprocess_image(f, s, "RGB") for f in frames for s in specs], log_mel(clips, SPEC)
    for a, b in zip(with_cv[0], numpy_only[0]):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(with_cv[1], numpy_only[1], atol=1e-4)


def test_buffers_keep_the_newest_samples_in_place():
    """A block longer than the ring, or than what the front-end keeps, leaves exactly its newest samples, in order."""
    from edgemm.runtimes.live.features import Tail

    ring = AudioRing(10, seconds=1.0)
    ring.write(np.arange(3, dtype=np.float32), end_us=300_000)
    ring.write(np.arange(3, 15, dtype=np.float32), end_us=1_500_000, contiguous=True)
    got = ring.read_from(0)
    assert got.start == 5 and got.samples.tolist() == list(range(5, 15))
    tail = Tail(10)
    tail.append(np.arange(4, dtype=np.float32))
    tail.append(np.arange(4, 19, dtype=np.float32))
    assert not tail.held(0, 9) and tail.held(9, 19) and tail.get(9, 19).tolist() == list(range(9, 19))
