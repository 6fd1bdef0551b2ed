"""Scoring live answers against a stream's ground truth (the built-in sample stream's JSON)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgemm.runtimes.live import LiveEvent


@dataclass
class GroundTruth:
    """Segments with labels; an answer counts when its frame time is in a segment's scored window."""

    segments: list[dict]
    segment_s: float
    scored_s: tuple[float, float]

    @classmethod
    def load(cls, path: str | Path) -> "GroundTruth":
        data = json.loads(Path(path).read_text())
        return cls(data["segments"], float(data["segment_s"]), tuple(data["scored_s"]))

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
    """A sink that counts correct scored answers (fused answers only: that is what the stream tests)."""

    def __init__(self, truth: GroundTruth) -> None:
        self.truth = truth
        self.correct = 0
        self.scored = 0
        self.segments: set[int] = set()

    def __call__(self, event: LiveEvent) -> None:
        label = self.truth.label_at(event.t_ms / 1000)
        if label is None or event.frame_index is None or len(event.prediction.modalities) < 2:
            return
        self.scored += 1
        self.correct += event.prediction.label == label
        self.segments.add(self.truth.segment_at(event.t_ms / 1000))

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None
