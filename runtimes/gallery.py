"""Enrolled examples for an embedding model: a query is answered with the label of its nearest example.

The CLIP-style use of a model with an embedding output: no retraining for new classes, only a folder of
labelled examples — `FOLDER/<label>/<name>.png` and/or `<name>.wav` (an image, a sound or both per example) —
embedded by the same artifact that answers the queries.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import EdgemmError, InputError, MediaReadError
from .media import examples_in, read_audio, read_image


class EnrollmentError(EdgemmError):
    """An enrollment folder without usable labelled examples, or a model without an embedding output."""


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass
class Gallery:
    """Enrolled unit embeddings and the label of each; `labels` lists the distinct labels in enrollment order."""

    labels: tuple[str, ...]
    vectors: np.ndarray  # (K, D) unit length
    owners: np.ndarray  # (K,) index into labels
    source: str = ""

    def similarities(self, embedding: np.ndarray) -> np.ndarray:
        """(N, labels): each query's cosine similarity to the nearest enrolled example of each label."""
        sims = unit(np.atleast_2d(embedding)) @ self.vectors.T
        return np.stack([sims[:, self.owners == k].max(1) for k in range(len(self.labels))], axis=1)

    @classmethod
    def from_examples(cls, embeddings: np.ndarray, labels: list[str], source: str = "") -> "Gallery":
        names = tuple(dict.fromkeys(labels))
        return cls(names, unit(embeddings), np.asarray([names.index(x) for x in labels]), source)


def enroll_folder(folder: str | Path, embed: Callable[[np.ndarray | None, np.ndarray | None, int | None], np.ndarray],
                  warn: Callable[[str], None] = lambda _: None) -> Gallery:
    """Embed every example of `FOLDER/<label>/…` (an image, a sound or both sharing a file name) with
    `embed(image, audio, sample_rate)`; an unreadable or unusable example is skipped with a warning naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EnrollmentError(f"{folder}: not a folder of enrollment examples")
    groups, _ = examples_in(folder)
    loose = sorted(str(p) for (parent, _), files in groups.items() if parent == folder for p in files.values())
    if loose:
        warn(f"{folder}: skipping {len(loose)} file(s) outside a label folder (put them in {folder}/<label>/): {', '.join(loose[:3])}")
    vectors, labels = [], []
    for (parent, _), files in groups.items():
        if parent == folder:
            continue
        try:
            image = read_image(files["image"]) if "image" in files else None
            audio, rate = read_audio(files["audio"]) if "audio" in files else (None, None)
            vectors.append(embed(image, audio, rate))
        except (MediaReadError, InputError) as exc:
            warn(f"enrollment: skipping {' + '.join(map(str, files.values()))}: {exc}")
            continue
        labels.append(parent.name)
    if not labels:
        raise EnrollmentError(f"{folder}: no usable labelled examples (expected {folder}/<label>/<name>.png and/or <name>.wav)")
    return Gallery.from_examples(np.stack(vectors), labels, str(folder))
