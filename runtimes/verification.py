"""The verdict rules: an artifact's outputs against reference outputs, per precision, on every modality pattern.

Numpy only: the export machine and every device judge an artifact by the same rules."""
from __future__ import annotations

from typing import Any

import numpy as np

from .modalities import MODALITY_PATTERNS
from .reference import Infer, ReferenceSet

# Tolerances per precision, for models judged on class scores (logits) and on an embedding.
# Logits: max-abs-diff and minimum top-1 agreement with the reference.
# INT8's agreement is judged on fused inputs, the normal operating mode: on image-only/audio-only rows
# the model is uncertain by design (~75% accurate) and int8 noise flips argmax between wrong classes;
# there the accuracy budget (edgemm quantize --max-drop) bounds the loss instead.
# fp16 is judged relative to the largest logit: rounding the weights to fp16 (unit roundoff 4.9e-4) moves
# the logits by a few roundoffs, growing with depth — measured 0.8-1.0e-3 on the default student and
# 1.7-2.0e-3 on the tiny test students, across CPUs; an fp16 overflow or a wrong kernel is ≥ 1e-2.
# A float artifact's top-1 agreement counts the rows whose reference top-2 margin exceeds twice the error its
# bound allows: a near-tie may flip within the bound (one of 96 rows of the tiny test student's fp16 IR did).
# Embeddings: cosine similarity to the reference vector of each row (float: the worst row; INT8: the mean)
# and nearest-neighbour agreement — each row's nearest other row of its pattern, as a gallery lookup answers
# (see `same_answers`: the neighbour's identity within a tight cluster is arbitrary, its label is not).
TOLERANCES = {
    "fp32": {"max_abs_diff": 1e-4, "agreement": 0.99, "agreement_on": "all"},
    "fp16": {"max_abs_diff": None, "max_rel_diff": 5e-3, "agreement": 0.99, "agreement_on": "all"},
    "int8": {"max_abs_diff": None, "agreement": 0.99, "agreement_on": "fused"},
}
EMBEDDING_TOLERANCES = {
    "fp32": {"min_cosine": 0.9999, "agreement": None, "agreement_on": "all"},
    "fp16": {"min_cosine": 0.999, "agreement": None, "agreement_on": "all"},
    "int8": {"mean_cosine": 0.99, "agreement": 0.98, "agreement_on": "fused"},
}
DEFAULT_MAX_DROP = 1.0  # INT8 accuracy points, worst modality pattern
AGREEMENT_WITH_VERIFIED = {"logits": 0.99, "embedding": 0.98}  # an INT8 artifact elsewhere: its answers where it was verified
NEIGHBOUR_TIE = 1e-3  # cosine: unlabelled embeddings' neighbours this much less near than the nearest answer alike
ANSWERS = {"logits": "top-1 class", "embedding": f"nearest neighbour (cosine) among the rows of its modality pattern: its label, or "
           f"unlabelled, any neighbour within {NEIGHBOUR_TIE:g} of the nearest"}  # fmt: skip


def tolerance(output: str, precision: str) -> dict[str, Any]:
    """The rules for an artifact of `precision` judged on `output` (`logits` or `embedding`)."""
    table = TOLERANCES if output == "logits" else EMBEDDING_TOLERANCES
    return table.get(precision, table["fp32"])


def mean_by_mode(hits: np.ndarray, present: np.ndarray) -> dict[str, float]:
    """Mean of a boolean per-row outcome over the rows of each modality pattern (those the rows have)."""
    rows = {mode: (present == np.asarray(p, np.float32)).all(1) for mode, p in MODALITY_PATTERNS.items()}
    return {mode: round(float(hits[r].mean()), 4) for mode, r in rows.items() if r.any()}


def nearest(embedding: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Each row's nearest other row by cosine similarity among the rows of its modality pattern (row indices)."""
    unit = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
    found = np.arange(len(unit))
    groups = np.unique(present, axis=0, return_inverse=True)[1].ravel()
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        if len(rows) > 1:
            similarity = unit[rows] @ unit[rows].T
            np.fill_diagonal(similarity, -np.inf)
            found[rows] = rows[similarity.argmax(1)]
    return found


def predicted_labels(outputs: np.ndarray, reference: ReferenceSet) -> np.ndarray:
    """Each row's predicted class: the top class, or the label of its nearest neighbour (leave-one-out 1-NN)."""
    return outputs.argmax(1) if reference.output == "logits" else reference.labels[nearest(outputs, reference.present)]


def same_answers(outputs: np.ndarray, expected: np.ndarray, reference: ReferenceSet) -> np.ndarray:
    """Per reference row, whether `outputs` answer as `expected` does: the same top class; for an embedding, the
    same label of the nearest neighbour (labelled rows) — as a gallery lookup answers — or, unlabelled, a nearest
    neighbour as near in `expected`'s own space as its nearest one (within NEIGHBOUR_TIE: rows of one tight
    cluster are interchangeable neighbours)."""
    if reference.output == "logits":
        return outputs.argmax(1) == expected.argmax(1)
    found, best = nearest(outputs, reference.present), nearest(expected, reference.present)
    if reference.labelled:
        return reference.labels[found] == reference.labels[best]
    unit = expected / np.maximum(np.linalg.norm(expected, axis=1, keepdims=True), 1e-12)
    return (unit * unit[found]).sum(1) >= (unit * unit[best]).sum(1) - NEIGHBOUR_TIE


def accuracy_by_mode(outputs: np.ndarray, reference: ReferenceSet) -> dict[str, float]:
    """Accuracy on the reference rows of each modality pattern (top-1, or 1-NN for an embedding); none without labels."""
    if not reference.labelled:
        return {}
    return mean_by_mode(predicted_labels(outputs, reference) == reference.labels, reference.present)


def agreement_by_mode(outputs: np.ndarray, reference: ReferenceSet) -> dict[str, float]:
    """Agreement of the answers with the reference outputs' answers on the rows of each modality pattern."""
    return mean_by_mode(same_answers(outputs, reference.outputs, reference), reference.present)


def compare(
    outputs: np.ndarray, reference: ReferenceSet, precision: str, max_drop: float | None = None, baseline: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Closeness (logits: max-abs-diff; embedding: cosine), answer agreement and accuracy per modality pattern,
    and the verdict with its reason; `outputs` are the artifact's `reference.output` on every reference row.

    With `max_drop` (INT8 on labelled samples) the worst pattern's accuracy loss must stay within that many
    points: against `baseline` — the same artifact measured on the same samples where it was verified
    (an on-target check asks "does it answer here as it did there?"; its budget against fp32 was measured on
    the larger held-out set at export) — or, without one, against the reference outputs' own accuracy.
    A baseline also sets the agreement needed: the verified machine's own fused agreement, less one point; and
    with its outputs, agreement with those answers on every row (the uncertain single-modality rows show a
    kernel that computes differently long before accuracy does)."""
    kind = reference.output
    tol = tolerance(kind, precision)
    same = same_answers(outputs, reference.outputs, reference)
    by_mode = mean_by_mode(same, reference.present)
    agreement = float(same.mean())
    judged = agreement if tol["agreement_on"] == "all" else by_mode.get(tol["agreement_on"], agreement)
    result: dict[str, Any] = {"samples": len(reference), "judged_on": kind, "answers": ANSWERS[kind], "reference": reference.name}
    reasons: list[str] = []
    if kind == "logits":
        judged = _logits_closeness(outputs, reference, tol, same, judged, result, reasons)
    else:
        _embedding_closeness(outputs, reference, tol, result, reasons)
    result.update(top1_agreement=round(agreement, 4), top1_agreement_by_mode=by_mode, tolerance=tol)
    needed = tol["agreement"]
    if needed is not None and baseline and tol["agreement_on"] in baseline.get("top1_agreement_by_mode", {}):
        needed = min(needed, baseline["top1_agreement_by_mode"][tol["agreement_on"]] - 0.01)
    if needed is not None and judged < needed - 1e-9:
        on = "" if tol["agreement_on"] == "all" else f" on {tol['agreement_on']} inputs"
        reasons.append(f"{'top-1' if kind == 'logits' else 'nearest-neighbour'} agreement {100 * judged:.1f} % < {100 * needed:.1f} %{on}")
    if baseline is not None and "verified_outputs" in baseline:
        with_verified = float(same_answers(outputs, baseline["verified_outputs"], reference).mean())
        result["agreement_with_verified"] = round(with_verified, 4)
        if with_verified < AGREEMENT_WITH_VERIFIED[kind]:
            reasons.append(f"agreement with its answers where it was verified {100 * with_verified:.1f} % < {100 * AGREEMENT_WITH_VERIFIED[kind]:.0f} % (all patterns)")
    if reference.labelled:
        result["accuracy"], result["reference_accuracy"] = accuracy_by_mode(outputs, reference), accuracy_by_mode(reference.outputs, reference)
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


def _logits_closeness(
    logits: np.ndarray, reference: ReferenceSet, tol: dict[str, Any], same: np.ndarray, judged: float, result: dict[str, Any], reasons: list[str]
) -> float:
    """Max |Δ logits| (absolute and relative) against the bounds; returns the agreement to judge (a float
    artifact: on the rows whose top-2 margin exceeds twice the error its bound allows)."""
    diff = float(np.abs(logits - reference.logits).max())
    rel = diff / max(float(np.abs(reference.logits).max()), 1e-12)
    allowed = _allowed_diff(tol, reference)
    if allowed is not None:
        ranked = np.sort(reference.logits, axis=1)
        decisive = ranked[:, -1] - ranked[:, -2] > 2 * allowed
        judged = float(same[decisive].mean()) if decisive.any() else 1.0
        result["agreement_judged_on"] = f"{int(decisive.sum())} rows with a top-2 margin > {2 * allowed:.1e}"
    result.update(max_abs_diff=diff, max_rel_diff=rel)
    if tol["max_abs_diff"] is not None and diff > tol["max_abs_diff"]:
        reasons.append(f"max |Δ logits| {diff:.1e} > {tol['max_abs_diff']:.0e}")
    if rel > tol.get("max_rel_diff", np.inf):
        reasons.append(f"max |Δ logits| {rel:.1e} of the largest logit > {tol['max_rel_diff']:.0e}")
    return judged


def _embedding_closeness(embedding: np.ndarray, reference: ReferenceSet, tol: dict[str, Any], result: dict[str, Any], reasons: list[str]) -> None:
    """Cosine similarity of each row's vector to the reference's, against the bound (worst row or mean)."""
    cosine = cosine_rows(embedding, reference.embedding)
    result.update(max_abs_diff=float(np.abs(embedding - reference.embedding).max()), min_cosine=round(float(cosine.min()), 6),
                  mean_cosine=round(float(cosine.mean()), 6))  # fmt: skip
    for key in ("min_cosine", "mean_cosine"):
        if key in tol and result[key] < tol[key]:
            reasons.append(f"{key.replace('_', ' ')} to the reference {result[key]:.4f} < {tol[key]}")


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(1) / np.maximum(np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1), 1e-24)


def _allowed_diff(tol: dict[str, Any], reference: ReferenceSet) -> float | None:
    """The largest logit error a float precision's tolerance allows on `reference` (None: no numeric bound)."""
    if tol.get("max_abs_diff") is not None:
        return float(tol["max_abs_diff"])
    if tol.get("max_rel_diff") is not None:
        return float(tol["max_rel_diff"]) * float(np.abs(reference.logits).max())
    return None


def run_model(infer: Infer, reference: ReferenceSet, batch: int = 64) -> np.ndarray:
    """The output artifacts are judged on (`reference.output`: logits, or the embedding of an embedding model)
    on every reference row; `infer(image, audio, present)` returns a dict of canonical outputs."""
    rows = range(0, len(reference), batch)
    return np.concatenate([infer(reference.image[s : s + batch], reference.audio[s : s + batch], reference.present[s : s + batch])[reference.output] for s in rows])
