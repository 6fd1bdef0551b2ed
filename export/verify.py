"""Verification: run an artifact through `edgemm.runtimes` and compare it with the torch reference."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from edgemm.runtimes.errors import EdgemmError
from edgemm.runtimes.model import MODALITY_PATTERNS, load_bundle

from .reference import Infer, ReferenceSet

# Tolerances per precision: logits max-abs-diff and minimum top-1 agreement with the reference.
# INT8's agreement is judged on fused inputs, the normal operating mode: on image-only/audio-only rows
# the model is uncertain by design (~75% accurate) and int8 noise flips argmax between wrong classes;
# there the accuracy guard (edgemm quantize --max-drop) bounds the loss instead.
# fp16 is judged relative to the logits' scale: fp16 weights alone move logits by about their
# machine epsilon (9.8e-4) times the logit magnitude (1.3e-2 at |logit| 12 on the default student).
TOLERANCES = {
    "fp32": {"max_abs_diff": 1e-4, "agreement": 0.99, "agreement_on": "all"},
    "fp16": {"max_abs_diff": None, "max_rel_diff": 2e-3, "agreement": 0.99, "agreement_on": "all"},
    "int8": {"max_abs_diff": None, "agreement": 0.99, "agreement_on": "fused"},
}


def mean_by_mode(hits: np.ndarray, present: np.ndarray) -> dict[str, float]:
    """Mean of a boolean per-row outcome over the rows of each modality pattern."""
    return {mode: round(float(hits[(present == np.asarray(p, np.float32)).all(1)].mean()), 4) for mode, p in MODALITY_PATTERNS.items()}


def accuracy_by_mode(top1: np.ndarray, reference: ReferenceSet) -> dict[str, float]:
    """Top-1 accuracy on the reference rows of each modality pattern."""
    return mean_by_mode(top1 == reference.labels, reference.present)


def agreement_by_mode(top1: np.ndarray, reference: ReferenceSet) -> dict[str, float]:
    """Top-1 agreement with the reference outputs on the rows of each modality pattern."""
    return mean_by_mode(top1 == reference.logits.argmax(1), reference.present)


def compare(logits: np.ndarray, reference: ReferenceSet, precision: str) -> dict[str, Any]:
    """Max-abs-diff, top-1 agreement and accuracy per modality pattern, and the pass/fail verdict."""
    tol = TOLERANCES.get(precision, TOLERANCES["fp32"])
    diff = float(np.abs(logits - reference.logits).max())
    top1, ref_top1 = logits.argmax(1), reference.logits.argmax(1)
    agreement = float((top1 == ref_top1).mean())
    by_mode = agreement_by_mode(top1, reference)
    judged = agreement if tol["agreement_on"] == "all" else by_mode[tol["agreement_on"]]
    rel = diff / max(float(np.abs(reference.logits).max()), 1e-12)
    close = (tol["max_abs_diff"] is None or diff <= tol["max_abs_diff"]) and rel <= tol.get("max_rel_diff", np.inf)
    return {
        "passed": bool(close and judged >= tol["agreement"]),
        "samples": len(reference),
        "max_abs_diff": diff,
        "max_rel_diff": rel,
        "reference": reference.name,
        "top1_agreement": round(agreement, 4),
        "top1_agreement_by_mode": by_mode,
        "accuracy": accuracy_by_mode(top1, reference),
        "reference_accuracy": accuracy_by_mode(ref_top1, reference),
        "tolerance": tol,
    }


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
