"""Write the example's data folder: DATA/{train,val,test}/<label>/<n>.png + <n>.wav.

Each sample shows a coloured blob (red, green or blue: the image tells the colour) and plays a tone
(low ~300 Hz or high ~1 kHz: the sound tells the pitch); the label is the pair, so one modality alone
narrows six classes to two or three, and both are needed. Images are 96x80 RGB PNGs (the model's
preprocessing crops and resizes them), audio 1.2 s 16 kHz mono WAVs (cut to the model's 1 s window).

    python make_data.py DATA [--per-class 40]
"""
from __future__ import annotations

import argparse
import wave
from pathlib import Path

import cv2
import numpy as np
from models import LABELS

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 70, 230)}
PITCHES = {"low": (260.0, 360.0), "high": (850.0, 1200.0)}
SPLITS = {"train": 1.0, "val": 0.25, "test": 0.5}  # samples per class, relative to --per-class
RATE = 16000


def image(colour: str, rng: np.random.Generator) -> np.ndarray:
    """96x80 RGB: grey noise, a blob of the colour (jittered) at a random place and size."""
    img = rng.integers(60, 190, (80, 96, 3)).astype(np.float32)
    centre = (int(rng.integers(25, 71)), int(rng.integers(20, 61)))
    tint = np.clip(np.array(COLOURS[colour]) + rng.normal(0, 18, 3), 0, 255)
    cv2.circle(img, centre, int(rng.integers(10, 22)), tint.tolist(), -1)
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


def sound(pitch: str, rng: np.random.Generator) -> np.ndarray:
    """1.2 s of noise with a 0.3-0.6 s tone in the pitch's band (with a harmonic), int16."""
    t = np.arange(int(1.2 * RATE)) / RATE
    freq = rng.uniform(*PITCHES[pitch])
    start, length = rng.uniform(0.2, 0.5), rng.uniform(0.3, 0.6)
    envelope = np.clip((t - start) / 0.02, 0, 1) * np.clip((start + length - t) / 0.02, 0, 1)
    tone = np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t + rng.uniform(0, 6))
    x = rng.uniform(0.2, 0.5) * envelope * tone + rng.normal(0, 0.03, t.shape)
    return (np.clip(x, -1, 1) * 32767).astype(np.int16)


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for split, share in SPLITS.items():
        for label in LABELS:
            colour, pitch = label.split("-")
            folder = args.out / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(max(1, round(share * args.per_class))):
                cv2.imwrite(str(folder / f"{n:04d}.png"), cv2.cvtColor(image(colour, rng), cv2.COLOR_RGB2BGR))
                write_wav(folder / f"{n:04d}.wav", sound(pitch, rng))
    print(f"wrote {args.out}/{{{','.join(SPLITS)}}}/<label>/*.png+.wav")


if __name__ == "__main__":
    main()
