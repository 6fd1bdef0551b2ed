"""Voices the models never heard: audio-only accuracy of checkpoints on the held-out voice families (clean clips),
on the test split (noisy, unseen voices of the trained families), on another synthesiser and on real recordings.

    .venv/bin/python bench/voices.py [--before REV] [--real DIR] [--checkpoint NAME=PATH ...]

Columns: the shipped teacher and student, and with `--before REV` the ones shipped at that git revision, side by
side on the same clips. The real-speech row reads DIR/0.wav … DIR/9.wav (default: Asterisk's Allison prompts,
Debian package asterisk-core-sounds-en-wav, CC-BY-SA 3.0, a human voice recorded for telephony at 8 kHz);
absent, the row says so. The other synthesiser is CMU Flite (Debian package flite: its kal16 diphone voice and
the awb, rms and slt voices built from recordings of three real speakers), each digit at three speaking rates;
never used for training or tuning.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile
from edgemm.runtimes.preprocess import preprocess_audio

from edgemm.checkpoint import Checkpoint, default_checkpoint, load_checkpoint, sidecar
from edgemm.data.avdigits import load_split
from edgemm.data.speech import DIGIT_WORDS
from edgemm.data.voices import held_out_family
from edgemm.tables import format_table
from edgemm.train import Tensors, accuracy, to_tensors

FLITE_VOICES = ("kal16", "awb", "rms", "slt")
ALLISON = Path("/usr/share/asterisk/sounds/en_US_f_Allison/digits")


def checkpoints_at(rev: str, folder: Path) -> dict[str, Path]:
    """The teacher and student shipped at git revision `rev`, written to `folder`."""
    out = {}
    for name in ("teacher", "student"):
        path = default_checkpoint(name)
        for file in (path, sidecar(path)):
            rel = file.relative_to(Path(__file__).resolve().parents[1])
            blob = subprocess.run(["git", "show", f"{rev}:{rel}"], capture_output=True, check=True).stdout
            (folder / f"{rev}-{file.name}").write_bytes(blob)
        out[f"{name} @{rev}"] = folder / f"{rev}-{path.name}"
    return out


def audio_tensors(files: list[Path], labels: list[int], ckpt: Checkpoint) -> Tensors:
    """Audio files as the checkpoint's tensors, images absent (zeros)."""
    import torch

    audio = np.stack([preprocess_audio(*soundfile.read(f, dtype="float32"), ckpt.audio) for f in files])
    return Tensors(torch.zeros((len(files), *ckpt.image.shape)), torch.from_numpy(audio), torch.tensor(labels))


def real_clips(folder: Path, ckpt: Checkpoint) -> Tensors | None:
    """DIR/<digit>.wav as the checkpoint's audio tensors (images absent), or None without them."""
    files = [folder / f"{d}.wav" for d in range(10)]
    return audio_tensors(files, list(range(10)), ckpt) if all(f.is_file() for f in files) else None


def flite_clips(ckpt: Checkpoint, folder: Path) -> dict[str, Tensors] | None:
    """Per Flite voice, the ten digits said at 0.8x, 1x and 1.3x duration, as the checkpoint's audio tensors."""
    if shutil.which("flite") is None:
        return None
    out = {}
    for voice in FLITE_VOICES:
        files, labels = [], []
        for digit, word in enumerate(DIGIT_WORDS):
            for stretch in (0.8, 1.0, 1.3):
                wav = folder / f"flite-{voice}-{digit}-{stretch}.wav"
                if not wav.is_file():
                    subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "-t", word, "-o", str(wav)], check=True)
                files.append(wav)
                labels.append(digit)
        out[voice] = audio_tensors(files, labels, ckpt)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="also the checkpoints shipped at this git revision (e.g. HEAD~5)")
    parser.add_argument("--real", type=Path, default=ALLISON, help="folder with 0.wav … 9.wav of a real voice")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH")
    args = parser.parse_args()
    paths = {name: default_checkpoint(name) for name in ("teacher", "student")}
    tmp = tempfile.TemporaryDirectory()
    if args.before:
        paths.update(checkpoints_at(args.before, Path(tmp.name)))
    paths.update(dict(item.split("=", 1) for item in args.checkpoint))
    heldout, test = load_split("heldout"), load_split("test")
    families = np.array([held_out_family(v) for v in heldout.voice])
    rows: dict[str, list[str]] = {}
    for name, path in paths.items():
        ckpt = load_checkpoint(path)
        model = ckpt.model
        held, noisy = to_tensors(heldout, ckpt.image, ckpt.audio), to_tensors(test, ckpt.image, ckpt.audio)
        cells = {f"held-out voices, clean: all ({len(heldout)} clips)": accuracy(model, held, "audio_only")}
        for family in sorted(set(families)):
            idx = np.flatnonzero(families == family)
            cells[f"  {family} ({len(idx)})"] = accuracy(model, subset(held, idx), "audio_only")
        light = np.flatnonzero(~test.heavy_audio)
        cells[f"test split (unseen voices, noisy): audio-only ({len(test)})"] = accuracy(model, noisy, "audio_only")
        cells[f"  light audio: noise 0-20 dB SNR ({len(light)})"] = accuracy(model, subset(noisy, light), "audio_only")
        cells[f"  heavy audio: a louder other digit ({len(test) - len(light)})"] = accuracy(model, subset(noisy, np.flatnonzero(test.heavy_audio)), "audio_only")
        cells["test split: fused"] = accuracy(model, noisy, "fused")
        flite = flite_clips(ckpt, Path(tmp.name))
        for voice in FLITE_VOICES:
            cells[f"CMU Flite voice {voice} (30)"] = flite[voice] if flite is not None else None
        real = real_clips(args.real, ckpt)
        cells[f"real voice: {args.real} (10)"] = real
        for row, value in cells.items():
            value = accuracy(model, value, "audio_only") if isinstance(value, Tensors) else value
            rows.setdefault(row, []).append("not installed" if value is None else f"{value:.3f}")
    print(format_table(["audio-only accuracy unless named", *paths], [[row, *cells] for row, cells in rows.items()],
                       "bench/voices.py: voices the models never heard"))  # fmt: skip


def subset(data: Tensors, idx: np.ndarray) -> Tensors:
    return Tensors(data.image[idx], data.audio[idx], data.labels[idx])


if __name__ == "__main__":
    main()
