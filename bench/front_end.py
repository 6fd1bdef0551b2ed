"""Front-end benchmark: what preprocessing costs per live answer, side by side in one run (median of repeated runs,
alternating order): image preprocessing with OpenCV and with numpy alone, and the audio of one answer at 30 fps
computed the old way (resample and log-mel the whole 1 s window) and by the streaming front-end (only the hops
that arrived since the last answer), at 16 kHz and from a 48 kHz microphone.

    .venv/bin/python bench/front_end.py [--answers 600] [--repeats 5]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from edgemm.runtimes import preprocess
from edgemm.runtimes.live import AudioRing, StreamFrontEnd
from edgemm.runtimes.preprocess import (
    AudioSpec,
    ImageSpec,
    preprocess_audio,
    preprocess_image,
)

from edgemm.tables import format_table

FPS = 30


def speech_like(rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    return (0.2 * np.sin(2 * np.pi * 300 * t) * np.sin(2 * np.pi * 2 * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def audio_costs(rate: int, spec: AudioSpec, answers: int, repeats: int) -> dict[str, float]:
    """Median µs per answer: the whole window (resampled, log-mel) vs the streaming front-end on the same stream."""
    audio = speech_like(rate, answers / FPS + 2)
    times: dict[str, list[float]] = {"whole window": [], "stream front-end": []}
    for r in range(repeats):
        ring = AudioRing(rate)
        front, written = StreamFrontEnd(ring, spec), rate
        ring.write(audio[:written], round(written * 1e6 / rate))
        for k in range(answers):
            end = rate + (k + 1) * rate // FPS
            ring.write(audio[written:end], round(end * 1e6 / rate))
            written = end
            calls = {"whole window": lambda: preprocess_audio(audio[end - rate : end], rate, spec),
                     "stream front-end": lambda: front.window(round(end * 1e6 / rate))}  # fmt: skip
            for name in list(calls) if (k + r) % 2 == 0 else list(calls)[::-1]:
                t0 = time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - t0)
    return {k: 1e6 * float(np.median(v)) for k, v in times.items()}


def image_costs(shape: tuple[int, ...], spec: ImageSpec, runs: int) -> dict[str, float]:
    """Median µs per frame with OpenCV and with numpy alone."""
    frame = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    with_cv, numpy_only = preprocess._opencv, lambda: None
    times: dict[str, list[float]] = {"opencv": [], "numpy": []}
    for k in range(runs):
        for name in ("opencv", "numpy") if k % 2 == 0 else ("numpy", "opencv"):
            preprocess._opencv = with_cv if name == "opencv" else numpy_only
            t0 = time.perf_counter()
            preprocess_image(frame, spec, "BGR")
            times[name].append(time.perf_counter() - t0)
    preprocess._opencv = with_cv
    return {k: 1e6 * float(np.median(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if preprocess._opencv() is None:
        raise SystemExit("bench/front_end.py: OpenCV is not installed (the app extra): nothing to compare numpy with")
    spec, image_spec = AudioSpec(), ImageSpec()
    rows = []
    for rate in (16000, 48000):
        c = audio_costs(rate, spec, args.answers, args.repeats)
        rows.append([f"audio per answer, {rate // 1000} kHz mic", f"{c['whole window']:.0f}", f"{c['stream front-end']:.0f}", f"{c['whole window'] / c['stream front-end']:.1f}x"])
    for shape in ((112, 148, 3), (480, 640, 3), (720, 1280, 3)):
        c = image_costs(shape, image_spec, args.answers * args.repeats // 2)
        rows.append([f"image {shape[1]}x{shape[0]} BGR → 1x32x32", f"{c['numpy']:.0f}", f"{c['opencv']:.0f}", f"{c['numpy'] / c['opencv']:.1f}x"])
    print(format_table(["step", "before / numpy (µs)", "after / OpenCV (µs)", "speed-up"], rows,
                       f"bench/front_end.py: median µs per live answer at {FPS} fps (audio: whole 1 s window vs streaming front-end)"))  # fmt: skip


if __name__ == "__main__":
    main()
