"""The verdict rules: an artifact's outputs against reference outputs, per precision, on every modality pattern.

Numpy only: the export machine and every device judge an artifact by the same rules."""
from __future__ import annotations

from typing import Any

import numpy as np

from .modalities import MODALITY_PATTERNS
from .reference import Infer, ReferenceSet

# Tolerances per precision: logits max-abs-diff and minimum top-1 agreement with the reference.
# INT8's agreement is judged on fused inputs, the normal operating mode: on image-only/audio-only rows
# the model is uncertain by design (~75% accurate) and int8 noise flips argmax between wrong classes;
# there the accuracy budget (edgemm quantize --max-drop) bounds the loss instead.
# fp16 is judged relative to the largest logit: rounding the weights to fp16 (unit roundoff 4.9e-4) moves
# the logits by a few roundoffs, growing with depth — measured 0.8-1.0e-3 on the default student and
# 1.7-2.0e-3 on the tiny test students, across CPUs; an fp16 overflow or a wrong kernel is ≥ 1e-2.
# A float artifact's top-1 agreement counts the rows whose reference top-2 margin exceeds twice the error its
# bound allows: a near-tie may flip within the bound (one of 96 rows of the tiny test student's fp16 IR did).
TOLERANCES = {
    "fp32": {"max_abs_diff": 1e-4, "agreement": 0.99, "agreement_on": "all"},
    "fp16": {"max_abs_diff": None, "max_rel_diff": 5e-3, "agreement": 0.99, "agreement_on": "all"},
    "int8": {"max_abs_diff": None, "agreement": 0.99, "agreement_on": "fused"},
}
DEFAULT_MAX_DROP = 1.0  # INT8 accuracy points, worst modality pattern
AGREEMENT_WITH_VERIFIED = 0.99  # an INT8 artifact on another machine: top-1 agreement with its answers where it was verified


def mean_by_mode(hits: np.ndarray, present: np.ndarray) -> dict[str, float]:
    """Mean of a boolean per-row outcome over the rows of each modality pattern (those the rows have)."""
    rows = {mode: (present == np.asarray(p, np.float32)).all(1) for mode, p in MODALITY_PATTERNS.items()}
    return {mode: round(float(hits[r].mean()), 4) for mode, r in rows.items() if r.any()}


def accuracy_by_mode(top1: np.ndarray, reference: ReferenceSet) -> dict[str, float]:
    """Top-1 accuracy on the reference rows of each modality pattern."""
    return mean_by_mode(top1 == reference.labels, reference.present)


def agreement_by_mode(top1: np.ndarray, reference: ReferenceSet) -> dict[str, float]:
    """Top-1 agreement with the reference outputs on the rows of each modality pattern."""
    return mean_by_mode(top1 == reference.logits.argmax(1), reference.present)


def compare(
    logits: np.ndarray, reference: ReferenceSet, precision: str, max_drop: float | None = None, baseline: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Max-abs-diff, top-1 agreement and accuracy per modality pattern, and the verdict with its reason.

    With `max_drop` (INT8 on labelled samples) the worst pattern's accuracy loss must stay within that many
    points: against `baseline` — the same artifact measured on the same samples where it was verified
    (an on-target check asks "does it answer here as it did there?"; its budget against fp32 was measured on
    the larger held-out set at export) — or, without one, against the reference outputs' own accuracy.
    A baseline also sets the agreement needed: the verified machine's own fused agreement, less one point; and
    with its logits, ≥ 99 % top-1 agreement with those answers on every row (the uncertain single-modality rows
    show a kernel that computes differently long before accuracy does)."""
    tol = TOLERANCES.get(precision, TOLERANCES["fp32"])
    diff = float(np.abs(logits - reference.logits).max())
    top1, ref_top1 = logits.argmax(1), reference.logits.argmax(1)
    agreement = float((top1 == ref_top1).mean())
    by_mode = agreement_by_mode(top1, reference)
    judged = agreement if tol["agreement_on"] == "all" else by_mode.get(tol["agreement_on"], agreement)
    allowed = _allowed_diff(tol, reference)
    if allowed is not None:  # a float artifact: rows whose top-2 margin is within twice the allowed error may flip
        ranked = np.sort(reference.logits, axis=1)
        decisive = ranked[:, -1] - ranked[:, -2] > 2 * allowed
        judged = float((top1 == ref_top1)[decisive].mean()) if decisive.any() else 1.0
    needed = tol["agreement"]
    if baseline and tol["agreement_on"] in baseline.get("top1_agreement_by_mode", {}):
        needed = min(needed, baseline["top1_agreement_by_mode"][tol["agreement_on"]] - 0.01)
    rel = diff / max(float(np.abs(reference.logits).max()), 1e-12)
    result = {
        "samples": len(reference),
        **({"agreement_judged_on": f"{int(decisive.sum())} rows with a top-2 margin > {2 * allowed:.1e}"} if allowed is not None else {}),
        "max_abs_diff": diff,
        "max_rel_diff": rel,
        "reference": reference.name,
        "top1_agreement": round(agreement, 4),
        "top1_agreement_by_mode": by_mode,
        "tolerance": tol,
    }
    reasons = []
    if tol["max_abs_diff"] is not None and diff > tol["max_abs_diff"]:
        reasons.append(f"max |Δ logits| {diff:.1e} > {tol['max_abs_diff']:.0e}")
    if rel > tol.get("max_rel_diff", np.inf):
        reasons.append(f"max |Δ logits| {rel:.1e} of the largest logit > {tol['max_rel_diff']:.0e}")
    if judged < needed - 1e-9:
        on = "" if tol["agreement_on"] == "all" else f" on {tol['agreement_on']} inputs"
        reasons.append(f"top-1 agreement {100 * judged:.1f} % < {100 * needed:.1f} %{on}")
    if baseline is not None and "logits" in baseline:
        same = float((top1 == baseline["logits"].argmax(1)).mean())
        result["agreement_with_verified"] = round(same, 4)
        if same < AGREEMENT_WITH_VERIFIED:
            reasons.append(f"top-1 agreement with its answers where it was verified {100 * same:.1f} % < {100 * AGREEMENT_WITH_VERIFIED:.0f} % (all patterns)")
    if reference.labelled:
        result["accuracy"], result["reference_accuracy"] = accuracy_by_mode(top1, reference), accuracy_by_mode(ref_top1, reference)
        if max_drop is not None:
            against = (baseline or {}).get("accuracy") or result["reference_accuracy"]
            drops = {m: 100 * (against[m] - result["accuracy"][m]) for m in result["accuracy"]}
            worst = max(drops, key=drops.get)
            result["drop_points"], result["max_drop"] = round(drops[worst], 2), max_drop
            if drops[worst] > max_drop + 1e-9:
                where = "where it was verified" if baseline else "the reference outputs"
                reasons.append(f"accuracy {drops[worst]:.1f} points below {where} > {max_drop:g} ({worst})")
    result["passed"] = not reasons
    if reasons:
        result["reason"] = "; ".join(reasons)
    return result


def _allowed_diff(tol: dict[str, Any], reference: ReferenceSet) -> float | None:
    """The largest logit error a float precision's tolerance allows on `reference` (None: no numeric bound)."""
    if tol.get("max_abs_diff") is not None:
        return float(tol["max_abs_diff"])
    if tol.get("max_rel_diff") is not None:
        return float(tol["max_rel_diff"]) * float(np.abs(reference.logits).max())
    return None


def run_model(infer: Infer, reference: ReferenceSet, batch: int = 64) -> np.ndarray:
    """Logits on every reference row; `infer(image, audio, present)` returns a dict with `logits`."""
    return np.concatenate(
        [infer(reference.image[s : s + batch], reference.audio[s : s + batch], reference.present[s : s + batch])["logits"] for s in range(0, len(reference), batch)]
    )
