"""Verification: run an artifact through `edgemm.runtimes` and compare it with the torch reference."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgemm.runtimes.errors import EdgemmError
from edgemm.runtimes.model import load_bundle

from .source import ReferenceSet

# Tolerances per precision: logits max-abs-diff and minimum top-1 agreement with the reference.
TOLERANCES = {
    "fp32": {"max_abs_diff": 1e-4, "agreement": 0.99},
    "fp16": {"max_abs_diff": 1e-2, "agreement": 0.99},
    "int8": {"max_abs_diff": float("inf"), "agreement": 0.99},
}
MODES = {"fused": (1, 1), "image_only": (1, 0), "audio_only": (0, 1)}


def accuracy_by_mode(top1: np.ndarray, reference: ReferenceSet) -> dict[str, float]:
    """Top-1 accuracy on the reference rows of each modality pattern."""
    out = {}
    for mode, pattern in MODES.items():
        rows = (reference.present == np.asarray(pattern, np.float32)).all(1)
        out[mode] = round(float((top1[rows] == reference.labels[rows]).mean()), 4)
    return out


def compare(logits: np.ndarray, reference: ReferenceSet, precision: str) -> dict[str, Any]:
    """Max-abs-diff, top-1 agreement and accuracy per modality pattern, and the pass/fail verdict."""
    tol = TOLERANCES.get(precision, TOLERANCES["fp32"])
    diff = float(np.abs(logits - reference.logits).max())
    top1, ref_top1 = logits.argmax(1), reference.logits.argmax(1)
    agreement = float((top1 == ref_top1).mean())
    return {
        "passed": bool(diff <= tol["max_abs_diff"] and agreement >= tol["agreement"]),
        "samples": len(reference),
        "max_abs_diff": diff,
        "reference": reference.name,
        "top1_agreement": round(agreement, 4),
        "accuracy": accuracy_by_mode(top1, reference),
        "reference_accuracy": accuracy_by_mode(ref_top1, reference),
        "tolerance": tol,
    }


Infer = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]


def run_model(infer: Infer, reference: ReferenceSet, batch: int = 64) -> np.ndarray:
    """Logits on every reference row; `infer(image, audio, present)` returns a dict with `logits`."""
    return np.concatenate(
        [infer(reference.image[s : s + batch], reference.audio[s : s + batch], reference.present[s : s + batch])["logits"] for s in range(0, len(reference), batch)]
    )


def verify_artifact(bundle: Path, file: str, precision: str, reference: ReferenceSet, backend: str = "auto") -> dict[str, Any]:
    """Load one artifact of a (staged) bundle by file name and compare it on the reference set."""
    try:
        model = load_bundle(bundle, backend=backend, artifact=file)
        logits = run_model(model.infer, reference)
    except EdgemmError as exc:
        return {"passed": False, "error": str(exc)}
    result = compare(logits, reference, precision)
    result["backend"] = model.backend.name
    return result
