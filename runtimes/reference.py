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

REFERENCE_FILE = "reference.npz"

Infer = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]  # canonical (image, audio, present) → outputs
ALL_PATTERNS = tuple(MODALITY_PATTERNS.values())


def encode_inputs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample uint8 codes, offset and power-of-two step (offset a multiple of it): decoding is exact in
    float32 for ordinary inputs, and decoded values encode to a grid they lie on exactly."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    if flat.shape[1] == 0:  # a modality the model does not take
        return np.zeros(x.shape, np.uint8), np.zeros(len(x), np.float32), np.ones(len(x), np.float32)
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
    """Preprocessed held-out samples in every modality pattern the model's contract allows (canonical tensors,
    the absent modality filled), with a reference model's outputs on them; `logits` or `embedding` is None for
    a model without that output (an embedding model is judged on its embedding)."""

    image: np.ndarray
    audio: np.ndarray
    present: np.ndarray
    labels: np.ndarray
    logits: np.ndarray | None
    embedding: np.ndarray | None
    name: str = "torch"  # what produced the reference outputs
    fill: float = 0.0

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def output(self) -> str:
        """The output artifacts are judged on: `logits` when the model gives class scores, else `embedding`."""
        return "logits" if self.logits is not None else "embedding"

    @property
    def outputs(self) -> np.ndarray:
        """The reference outputs artifacts are judged against (see `output`)."""
        return self.logits if self.logits is not None else self.embedding

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())

    @property
    def pattern_rows(self) -> np.ndarray:
        """The distinct `present` rows, in the order the samples repeat in (the first block has every input the
        model takes)."""
        _, first = np.unique(self.present, axis=0, return_index=True)
        return self.present[np.sort(first)]

    @staticmethod
    def patterns(image: np.ndarray, audio: np.ndarray, rows=ALL_PATTERNS, fill: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The samples repeated once per modality pattern in `rows` (default fused, image-only, audio-only), the
        absent modality set to `fill`."""
        rows = np.asarray(rows, np.float32)
        present = np.repeat(rows, len(image), axis=0)
        return fill_absent(image, present[:, 0], fill), fill_absent(audio, present[:, 1], fill), present

    @classmethod
    def build(
        cls, infer: Infer, image: np.ndarray, audio: np.ndarray, labels: np.ndarray, name: str = "torch", batch: int = 256,
        rows=ALL_PATTERNS, fill: float = 0.0,
    ) -> "ReferenceSet":
        """Repeat the samples in every pattern of `rows`; `infer` gives the reference outputs."""
        image, audio, present = cls.patterns(image, audio, rows, fill)
        outs = [infer(image[s : s + batch], audio[s : s + batch], present[s : s + batch]) for s in range(0, len(present), batch)]
        logits, embedding = (np.concatenate([o[k] for o in outs]) if k in outs[0] else None for k in ("logits", "embedding"))
        return cls(image, audio, present, np.tile(labels, len(rows)), logits, embedding, name, fill)

    def save(self, path: Path) -> None:
        """Write as compressed .npz, the first pattern's inputs only (the masked rows are rebuilt on load): as exact
        8-bit codes when the inputs lie on the storage grid (build the set from `on_grid` inputs), else float32."""
        n = len(self) // len(self.pattern_rows)
        image, audio = encode_inputs(self.image[:n]), encode_inputs(self.audio[:n])
        if np.array_equal(decode_inputs(*image), self.image[:n]) and np.array_equal(decode_inputs(*audio), self.audio[:n]):
            inputs = {"image_codes": image[0], "image_offset": image[1], "image_step": image[2],
                      "audio_codes": audio[0], "audio_offset": audio[1], "audio_step": audio[2]}  # fmt: skip
        else:
            inputs = {"image": self.image[:n], "audio": self.audio[:n]}
        outputs = {k: v for k, v in (("logits", self.logits), ("embedding", self.embedding)) if v is not None}
        np.savez_compressed(path, **inputs, **outputs, labels=self.labels[:n], name=self.name, patterns=self.pattern_rows, fill=self.fill)

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
                rows = data["patterns"] if "patterns" in data else ALL_PATTERNS  # edgemm 0.1 files: the three patterns
                fill = float(data["fill"]) if "fill" in data else 0.0
                image, audio, present = cls.patterns(image, audio, rows, fill)
                logits, embedding = (data[k] if k in data else None for k in ("logits", "embedding"))
                if logits is None and embedding is None:
                    raise KeyError("logits or embedding")
                return cls(image, audio, present, np.tile(data["labels"], len(rows)), logits, embedding, str(data["name"]), fill)
        except (OSError, KeyError, ValueError, EOFError) as exc:
            raise BundleError(f"{path}: unreadable reference samples ({type(exc).__name__}: {exc})") from exc


def fill_absent(x: np.ndarray, keep: np.ndarray, fill: float) -> np.ndarray:
    """`x` repeated to `len(keep)` rows, rows with keep 0 set to `fill` (how an absent modality is fed)."""
    tiled = np.tile(x, (len(keep) // len(x),) + (1,) * (x.ndim - 1))
    return np.where(keep.reshape((-1,) + (1,) * (x.ndim - 1)) > 0, tiled, np.float32(fill)).astype(np.float32)
