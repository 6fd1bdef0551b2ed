"""Held-out reference samples with a reference model's outputs: what every machine verifies an artifact on.

Numpy only, so a device checks artifacts against the bundle's `reference.npz` without torch. The file stores
the inputs as 8-bit codes on a power-of-two grid per sample (exactly decodable, ~4x smaller than float32),
and the reference outputs are computed on the decoded inputs: every machine sees exactly the tensors the
reference model saw.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BundleError
from .modalities import MODALITY_PATTERNS

INPUT_NAMES = ("image", "audio", "present")
OUTPUT_NAMES = ("logits", "embedding")
REFERENCE_FILE = "reference.npz"

Infer = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]  # (image, audio, present) → outputs


def encode_inputs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample uint8 codes, offset and power-of-two step (offset a multiple of it): decoding is exact in
    float32 for ordinary inputs, and decoded values encode to a grid they lie on exactly."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    lo, hi = flat.min(1, keepdims=True), flat.max(1, keepdims=True)
    step = 2.0 ** np.ceil(np.log2(np.maximum(hi - lo, 2.0**-60) / 255))
    step = np.where(np.round((hi - np.floor(lo / step) * step) / step) > 255, 2 * step, step)  # the floored offset can cost one code
    offset = np.floor(lo / step) * step
    codes = np.round((flat - offset) / step).astype(np.uint8)
    return codes.reshape(x.shape), offset.astype(np.float32).ravel(), step.astype(np.float32).ravel()


def decode_inputs(codes: np.ndarray, offset: np.ndarray, step: np.ndarray) -> np.ndarray:
    """float32 inputs from `encode_inputs`' codes."""
    shape = (-1,) + (1,) * (codes.ndim - 1)
    return (offset.reshape(shape) + codes.astype(np.float32) * step.reshape(shape)).astype(np.float32)


def on_grid(x: np.ndarray) -> np.ndarray:
    """`x` as the reference file will store it (compute reference outputs on this)."""
    return decode_inputs(*encode_inputs(x))


@dataclass
class ReferenceSet:
    """Preprocessed held-out samples in every modality pattern, with a reference model's outputs on them."""

    image: np.ndarray
    audio: np.ndarray
    present: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    embedding: np.ndarray
    name: str = "torch"  # what produced the reference outputs

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())

    @staticmethod
    def patterns(image: np.ndarray, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The samples repeated as fused, image-only and audio-only rows (absent modality zeroed)."""
        present = np.repeat(np.array(list(MODALITY_PATTERNS.values()), np.float32), len(image), axis=0)
        image = (np.tile(image, (3, 1, 1, 1)) * present[:, :1, None, None]).astype(np.float32)
        audio = (np.tile(audio, (3, 1, 1, 1)) * present[:, 1:, None, None]).astype(np.float32)
        return image, audio, present

    @classmethod
    def build(cls, infer: Infer, image: np.ndarray, audio: np.ndarray, labels: np.ndarray, name: str = "torch", batch: int = 256) -> "ReferenceSet":
        """Repeat the samples as fused, image-only and audio-only; `infer` gives the reference outputs."""
        image, audio, present = cls.patterns(image, audio)
        outs = [infer(image[s : s + batch], audio[s : s + batch], present[s : s + batch]) for s in range(0, len(present), batch)]
        logits, embedding = (np.concatenate([o[k] for o in outs]) for k in OUTPUT_NAMES)
        return cls(image, audio, present, np.tile(labels, 3), logits, embedding, name)

    def save(self, path: Path) -> None:
        """Write as compressed .npz, the fused rows' inputs only (the masked rows are rebuilt on load): as exact
        8-bit codes when the inputs lie on the storage grid (build the set from `on_grid` inputs), else float32."""
        n = len(self) // 3
        image, audio = encode_inputs(self.image[:n]), encode_inputs(self.audio[:n])
        if np.array_equal(decode_inputs(*image), self.image[:n]) and np.array_equal(decode_inputs(*audio), self.audio[:n]):
            inputs = {"image_codes": image[0], "image_offset": image[1], "image_step": image[2],
                      "audio_codes": audio[0], "audio_offset": audio[1], "audio_step": audio[2]}  # fmt: skip
        else:
            inputs = {"image": self.image[:n], "audio": self.audio[:n]}
        np.savez_compressed(path, **inputs, labels=self.labels[:n], logits=self.logits, embedding=self.embedding, name=self.name)

    @classmethod
    def load(cls, path: Path) -> "ReferenceSet":
        """Read a set written by `save` (or by edgemm 0.1's float32 form)."""
        try:
            with np.load(path) as data:
                if "image_codes" in data:
                    image = decode_inputs(data["image_codes"], data["image_offset"], data["image_step"])
                    audio = decode_inputs(data["audio_codes"], data["audio_offset"], data["audio_step"])
                else:
                    image, audio = data["image"], data["audio"]
                image, audio, present = cls.patterns(image, audio)
                return cls(image, audio, present, np.tile(data["labels"], 3), data["logits"], data["embedding"], str(data["name"]))
        except (OSError, KeyError, ValueError, EOFError) as exc:
            raise BundleError(f"{path}: unreadable reference samples ({type(exc).__name__}: {exc})") from exc
