"""Calibration sets from files: a folder of paired image+audio files, a CSV list, or a recorded stream."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
from edgemm.runtimes.contract import ModelContract
from edgemm.runtimes.errors import InputError, MediaReadError
from edgemm.runtimes.media import (
    examples_in,
    read_audio,
    read_image,
    read_video_frames,
)
from edgemm.runtimes.preprocess import preprocess_audio, preprocess_image, to_mono_float

from .sets import (
    DEFAULT_SIZE,
    CalibrationError,
    CalibrationReport,
    CalibrationSet,
    finish,
    stratified_order,
)

Example = tuple[dict[str, Path], int]  # the files of one sample by modality, and its label (-1: unlabelled)
NOTHING = np.zeros(0, np.float32)  # a modality the model does not take: an empty tensor per sample


def _read_examples(examples: list[Example], contract: ModelContract, report: CalibrationReport, size: int, seed: int) -> CalibrationSet:
    """Read the modalities the contract takes, in stratified order, until `size` samples are usable; skipped ones
    are counted by reason."""
    report.available = len(examples)
    images, audios, labels = [], [], []
    for i in stratified_order(np.asarray([label for _, label in examples], np.int64), seed):
        if len(labels) >= size:
            break
        files, label = examples[i]
        try:
            image = preprocess_image(read_image(files["image"]), contract.image, name=str(files["image"])) if contract.image else NOTHING
            audio, rate = read_audio(files["audio"]) if contract.audio else (None, None)
            if contract.audio and rate != contract.audio.sample_rate:
                report.skipped[f"sample rate {rate} Hz, not {contract.audio.sample_rate}"] += 1
                continue
            audio = preprocess_audio(audio, rate, contract.audio, name=str(files["audio"])) if contract.audio else NOTHING
        except MediaReadError:
            report.skipped["unreadable file"] += 1
            continue
        except InputError:
            report.skipped["unusable content"] += 1
            continue
        images.append(image)
        audios.append(audio)
        labels.append(label)
    return finish(images, audios, labels, report, contract)


def from_folder(
    folder: str | Path, contract: ModelContract, size: int = DEFAULT_SIZE, seed: int = 0) -> CalibrationSet:
    """Samples `name.png|jpg` + `name.wav` anywhere under `folder` (the files of the modalities the contract takes);
    a parent folder named after one of the contract's labels labels them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"{folder}: not a folder")
    report = CalibrationReport(str(folder))
    groups, report.skipped = examples_in(folder)
    examples, labels = [], list(contract.labels)
    for (parent, _), files in groups.items():
        missing = [m for m in contract.modalities if m not in files]
        if missing:
            report.skipped[f"unpaired {next(iter(files))}"] += 1
            continue
        label = labels.index(parent.name) if parent != folder and parent.name in labels else -1
        examples.append((files, label))
    return _read_examples(examples, contract, report, size, seed)


def from_csv(
    path: str | Path, contract: ModelContract, size: int = DEFAULT_SIZE, seed: int = 0) -> CalibrationSet:
    """A CSV with a column per modality the contract takes (image, audio) and an optional label column (paths
    relative to the CSV file)."""
    path = Path(path)
    report = CalibrationReport(str(path))
    try:
        rows = list(csv.DictReader(path.open(newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CalibrationError(f"{path}: unreadable CSV ({exc})") from exc
    columns = set(contract.modalities)
    if rows and not columns <= set(rows[0]):
        raise CalibrationError(f"{path}: needs columns {','.join(contract.modalities)}[,label], found {list(rows[0])}")
    examples, labels = [], list(contract.labels)
    for row in rows:
        files = {m: path.parent / row[m] for m in contract.modalities}
        label_name = (row.get("label") or "").strip()
        if label_name and label_name not in labels:
            report.skipped[f"label {label_name!r} not in the model's labels"] += 1
            continue
        if not all(f.is_file() for f in files.values()):
            report.skipped["missing file"] += 1
            continue
        examples.append((files, labels.index(label_name) if label_name else -1))
    return _read_examples(examples, contract, report, size, seed)


def from_stream(video: str | Path, contract: ModelContract, size: int = DEFAULT_SIZE) -> CalibrationSet:
    """A recorded stream: `clip.mp4` with `clip.wav` (or .flac) beside it on the same timeline.

    Frames are taken evenly over the video; each is paired with the audio window ending at its time,
    as the live synchroniser does."""
    video = Path(video)
    if contract.image is None or contract.audio is None:
        raise CalibrationError(f"{video}: a recorded stream calibrates a model that takes an image and a sound; give a folder or a CSV")
    audio_path = next((video.with_suffix(s) for s in (".wav", ".flac", ".ogg") if video.with_suffix(s).is_file()), None)
    if audio_path is None:
        raise CalibrationError(f"{video}: no audio file of the same name (.wav/.flac/.ogg) beside the video")
    report = CalibrationReport(f"{video} + {audio_path.name}")
    frames, times, _ = read_video_frames(video, size)
    report.available = len(frames)
    audio, rate = read_audio(audio_path)
    if rate != contract.audio.sample_rate:
        raise CalibrationError(f"{audio_path}: sample rate {rate} Hz, the model expects {contract.audio.sample_rate}")
    mono = to_mono_float(audio, str(audio_path))
    clip = contract.audio.clip_samples
    images, audios = [], []
    for frame, t in zip(frames, times):
        end = int(round(t * rate))
        if end > len(mono):
            report.skipped["frame after the end of the audio"] += 1
            continue
        window = mono[max(0, end - clip) : end]
        window = np.pad(window, (clip - len(window), 0))
        images.append(preprocess_image(frame, contract.image))
        audios.append(preprocess_audio(window, rate, contract.audio))
    return finish(images, audios, [-1] * len(images), report, contract)


def skipped_summary(skipped: Counter) -> str:
    """'3 unreadable file, 1 unpaired audio' (or 'none')."""
    return ", ".join(f"{n} {why}" for why, n in skipped.most_common()) or "none"
