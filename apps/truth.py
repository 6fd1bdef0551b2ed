"""Scoring live answers against a recorded stream's ground truth (JSON: labelled segments, and an .npz of
the raw samples so the same bundle can be run on them offline for comparison)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgemm.runtimes.live import LiveEvent
from edgemm.runtimes.model import BundleModel


@dataclass
class GroundTruth:
    """Segments with labels; an answer counts when its frame time is in a segment's scored window."""

    segments: list[dict]
    segment_s: float
    scored_s: tuple[float, float]
    offline_samples: Path | None = None  # .npz: images, audio, sample_rate — one per segment

    @classmethod
    def load(cls, path: str | Path) -> "GroundTruth":
        path = Path(path)
        data = json.loads(path.read_text())
        offline = path.parent / data["offline_samples"] if data.get("offline_samples") else None
        return cls(data["segments"], float(data["segment_s"]), tuple(data["scored_s"]), offline)

    def segment_at(self, t_s: float) -> int | None:
        """The segment playing at `t_s` (a looped stream starts again after the last), if t_s is in its scored window."""
        if t_s < 0:
            return None
        k = int(t_s // self.segment_s)
        return k % len(self.segments) if self.scored_s[0] <= t_s - k * self.segment_s <= self.scored_s[1] else None

    def label_at(self, t_s: float) -> str | None:
        k = self.segment_at(t_s)
        return None if k is None else self.segments[k]["label"]


class Scorer:
    """A sink that counts correct scored answers — those from every input the model takes (for a camera+mic model,
    fused answers only: that is what the stream tests)."""

    def __init__(self, truth: GroundTruth, takes: int = 2) -> None:
        self.truth, self.takes = truth, takes
        self.correct = 0
        self.scored = 0
        self.segments: set[int] = set()

    def __call__(self, event: LiveEvent) -> None:
        k = self.truth.segment_at(event.t_ms / 1000)
        if k is None or event.frame_index is None or len(event.prediction.modalities) < self.takes:
            return
        self.scored += 1
        self.correct += event.prediction.label == self.truth.segments[k]["label"]
        self.segments.add(k)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None


def offline_accuracy(model: BundleModel, scorer: Scorer) -> float | None:
    """The same bundle on the scored segments' raw samples, aligned exactly (no live timing); None when the
    ground truth carries no offline samples."""
    truth = scorer.truth
    if truth.offline_samples is None:
        return None
    segments = sorted(scorer.segments) or range(len(truth.segments))
    with np.load(truth.offline_samples) as data:
        images, audio, rate = data["images"], data["audio"], int(data["sample_rate"])
    c = model.contract
    preds = model.predict_batch(images=[images[k] if c.image else None for k in segments], audios=[audio[k] if c.audio else None for k in segments],
                                sample_rate=rate, color_order="RGB")  # fmt: skip
    return sum(p.label == truth.segments[k]["label"] for p, k in zip(preds, segments)) / len(preds)
