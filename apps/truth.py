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

    def label_at(self, t_s: float) -> str | None:
        k = int(t_s // self.segment_s)
        if not 0 <= k < len(self.segments):
            return None
        offset = t_s - k * self.segment_s
        return self.segments[k]["label"] if self.scored_s[0] <= offset <= self.scored_s[1] else None


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
        self.segments.add(int(event.t_ms / 1000 // self.truth.segment_s))

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None
