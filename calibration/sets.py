"""Calibration sets: real, preprocessed samples for INT8 — never random data in place of a missing set."""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from edgemm.runtimes.contract import ModelContract
from edgemm.runtimes.errors import EdgemmError
from edgemm.runtimes.preprocess import preprocess_audio, preprocess_image
from edgemm.runtimes.reference import ReferenceSet

DEFAULT_SIZE = 300  # as NNCF's and Ultralytics' defaults
MIN_RECOMMENDED = 100


class CalibrationError(EdgemmError):
    """No usable calibration sample, or a calibration source that cannot be read at all."""


class SmallCalibrationWarning(UserWarning):
    """Fewer calibration samples than recommended."""


@dataclass
class CalibrationReport:
    """What a calibration set was made of: where from, how many used, what was skipped and why."""

    source: str
    available: int = 0
    used: int = 0
    skipped: Counter = field(default_factory=Counter)
    stratified: bool = False
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "available": self.available,
            "used": self.used,
            "skipped": dict(self.skipped),
            "stratified": self.stratified,
            "warnings": list(self.warnings),
        }


@dataclass
class CalibrationSet:
    """Preprocessed model inputs (canonical tensors, all modalities present), labels where known (-1 otherwise)
    and the contract of the model they are for."""

    image: np.ndarray
    audio: np.ndarray
    labels: np.ndarray
    report: CalibrationReport
    contract: ModelContract

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())

    def feeds(self, patterns: bool = True) -> list[dict[str, np.ndarray]]:
        """Batch-1 input dicts named as the model takes them; with `patterns`, every sample also in each other
        modality pattern its contract allows (the absent modality filled), so INT8 ranges cover the degraded
        modes a device falls back to."""
        rows = list(self.contract.patterns.values())[: None if patterns else 1]
        out = []
        for i in range(len(self)):
            image, audio, present = ReferenceSet.patterns(self.image[i : i + 1], self.audio[i : i + 1], rows, self.contract.fill)
            out += [self.contract.feeds(image[k : k + 1], audio[k : k + 1], present[k : k + 1]) for k in range(len(rows))]
        return out


def stratified_order(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """All indices, shuffled; with labels, interleaved round-robin over classes so any prefix is balanced."""
    rng = np.random.default_rng(seed)
    if (labels < 0).any() or not len(labels):
        return rng.permutation(len(labels))
    buckets = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    order: list[int] = []
    while any(buckets):
        order += [bucket.pop() for bucket in buckets if bucket]
    return np.asarray(order)


def select(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Indices of up to `size` samples, class-stratified where labels exist."""
    return np.sort(stratified_order(labels, seed)[:size])


def finish(images: list[np.ndarray], audios: list[np.ndarray], labels: list[int], report: CalibrationReport, contract: ModelContract) -> CalibrationSet:
    """Check the count of the (already selected) samples — error at 0, warning under 100 — and pack them."""
    if not labels:
        reasons = ", ".join(f"{n} {why}" for why, n in report.skipped.items()) or "nothing found"
        raise CalibrationError(f"{report.source}: no usable calibration samples ({reasons})")
    label_arr = np.asarray(labels, np.int64)
    report.used = len(label_arr)
    report.stratified = bool((label_arr >= 0).all())
    if report.used < MIN_RECOMMENDED:
        message = f"{report.source}: only {report.used} calibration samples (≥ {MIN_RECOMMENDED} recommended, {DEFAULT_SIZE} default)"
        report.warnings.append(message)
        warnings.warn(message, SmallCalibrationWarning, stacklevel=3)
    return CalibrationSet(np.stack(images).astype(np.float32), np.stack(audios).astype(np.float32), label_arr, report, contract)


def from_arrays(
    images: np.ndarray,
    audios: np.ndarray,
    sample_rate: int,
    contract: ModelContract,
    labels: np.ndarray | None = None,
    source: str = "arrays",
    size: int = DEFAULT_SIZE,
    seed: int = 0,
) -> CalibrationSet:
    """A calibration set from raw in-memory samples (e.g. a data set split), preprocessed like a device."""
    labels = np.full(len(images), -1) if labels is None else np.asarray(labels)
    index = select(labels, size, seed)
    report = CalibrationReport(source, available=len(images))
    nothing = np.zeros(0, np.float32)  # a modality the model does not take
    imgs = [preprocess_image(images[i], contract.image) if contract.image else nothing for i in index]
    auds = [preprocess_audio(audios[i], sample_rate, contract.audio) if contract.audio else nothing for i in index]
    return finish(imgs, auds, [int(labels[i]) for i in index], report, contract)
