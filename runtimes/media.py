"""Reading image and audio files (OpenCV for images, soundfile for audio: the `app` extra)."""
from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np

from .errors import BackendUnavailableError, MediaReadError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov"}


def examples_in(folder: Path) -> tuple[dict[tuple[Path, str], dict[str, Path]], Counter]:
    """The image and audio files under `folder` grouped by (parent folder, file stem): `name.png` + `name.wav`
    are one example; with the count of files skipped by reason."""
    skipped: Counter = Counter()
    groups: dict[tuple[Path, str], dict[str, Path]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        kind = "image" if path.suffix.lower() in IMAGE_SUFFIXES else "audio" if path.suffix.lower() in AUDIO_SUFFIXES else None
        if kind is None:
            skipped["not an image or audio file"] += 1
            continue
        groups.setdefault((path.parent, path.stem), {})[kind] = path
    return groups, skipped


def _library(module: str, package: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(what, package, "app") from exc


def _existing(path: str | Path, kind: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MediaReadError(f"{path}: no such {kind} file")
    return path


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 HxWx3 RGB (or HxW for grey files)."""
    cv2 = _library("cv2", "opencv-python-headless", "reading image files")
    path = _existing(path, "image")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise MediaReadError(f"{path}: not a readable image")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise MediaReadError(f"{path}: unsupported pixel type {image.dtype}")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return image


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 HxW or HxWx3 RGB image (format from the suffix)."""
    cv2 = _library("cv2", "opencv-python-headless", "writing image files")
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    if not cv2.imwrite(str(path), out):
        raise MediaReadError(f"{path}: cannot write image")


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file (WAV/FLAC/OGG) as float32 (samples,) or (samples, channels) and its rate."""
    sf = _library("soundfile", "soundfile", "reading audio files")
    path = _existing(path, "audio")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except (RuntimeError, sf.LibsndfileError, ValueError) as exc:
        raise MediaReadError(f"{path}: not a readable audio file ({exc})") from exc
    if data.size == 0:
        raise MediaReadError(f"{path}: audio file holds no samples")
    return data, int(rate)


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono/multi-channel audio as 16-bit PCM WAV."""
    sf = _library("soundfile", "soundfile", "writing audio files")
    sf.write(str(path), audio, sample_rate, subtype="PCM_16")


def read_video_frames(path: str | Path, count: int) -> tuple[list[np.ndarray], np.ndarray, float]:
    """Up to `count` RGB frames spread evenly over a video file, their times (s) and the frame rate."""
    cv2 = _library("cv2", "opencv-python-headless", "reading video files")
    path = _existing(path, "video")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise MediaReadError(f"{path}: not a readable video")
        fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if fps <= 0 or total <= 0:
            raise MediaReadError(f"{path}: video reports no frame rate or frame count")
        wanted = set(np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int)).tolist())
        frames, times = [], []
        for index in range(total):
            ok, frame = cap.read()
            if not ok:
                break
            if index in wanted:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                times.append(index / fps)
    finally:
        cap.release()
    if not frames:
        raise MediaReadError(f"{path}: no frame could be decoded")
    return frames, np.asarray(times), float(fps)
