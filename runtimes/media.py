"""Reading image and audio files (OpenCV for images, soundfile for audio: the `app` extra)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import BackendUnavailableError, MediaReadError


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 HxWx3 RGB (or HxW for grey files)."""
    try:
        import cv2
    except ImportError as exc:
        raise BackendUnavailableError("reading image files", "opencv-python-headless", "app") from exc
    path = Path(path)
    if not path.is_file():
        raise MediaReadError(f"{path}: no such image file")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise MediaReadError(f"{path}: not a readable image")
    if image.dtype != np.uint8:
        image = (image / (np.iinfo(image.dtype).max / 255.0)).astype(np.uint8) if image.dtype.kind == "u" else None
        if image is None:
            raise MediaReadError(f"{path}: unsupported pixel type")
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        image = cv2.cvtColor(image, code)
    return image


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 HxW or HxWx3 RGB image (format from the suffix)."""
    import cv2

    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    if not cv2.imwrite(str(path), out):
        raise MediaReadError(f"{path}: cannot write image")


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file (WAV/FLAC/OGG) as float32 (samples,) or (samples, channels) and its rate."""
    try:
        import soundfile as sf
    except ImportError as exc:
        raise BackendUnavailableError("reading audio files", "soundfile", "app") from exc
    path = Path(path)
    if not path.is_file():
        raise MediaReadError(f"{path}: no such audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except (RuntimeError, sf.LibsndfileError, ValueError) as exc:
        raise MediaReadError(f"{path}: not a readable audio file ({exc})") from exc
    if data.size == 0:
        raise MediaReadError(f"{path}: audio file holds no samples")
    return data, int(rate)


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono/multi-channel audio as 16-bit PCM WAV."""
    import soundfile as sf

    sf.write(str(path), audio, sample_rate, subtype="PCM_16")
