"""On-target checks: an artifact run on *this* machine against the bundle's own reference samples, torch-free.

A verdict made on the export machine says nothing certain about another CPU's kernels (x86 without VNNI
saturates int8 products that VNNI computes exactly), so each machine class keeps its own record:
`BUNDLE/checks/<machine key>.json`, or the same file under the user cache (`$EDGEMM_CACHE/checks/`) when the
bundle folder is read-only. A record holds one check per artifact, valid while the artifact's and the
reference's sha256, the backend and its version are the ones it was made with.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError, ChecksumError, EdgemmError
from .machine import MachineInfo, backend_version, this_machine
from .manifest import Artifact, Manifest, sha256_file, write_json_atomic
from .paths import cache_root
from .reference import Infer, ReferenceSet
from .verification import DEFAULT_MAX_DROP, compare, run_model

CHECKS_DIR = "checks"
RECORD_SCHEMA = 1
log = logging.getLogger("edgemm")


@dataclass
class TargetCheck:
    """One artifact judged on one machine class against the bundle's reference samples."""

    file: str
    sha256: str
    reference_sha256: str
    backend: str
    backend_version: str
    passed: bool
    reason: str  # why it failed ("" when it passed)
    samples: int
    seconds: float
    measured: dict[str, Any] = field(default_factory=dict)  # agreement, accuracy, drop, max |Δ| (compare's numbers)
    checked_by: str = "self-check"  # "self-check", "edgemm verify" or "export"
    checked_at: str = ""

    def applies_to(self, artifact: Artifact, reference_sha256: str, backend: str) -> bool:
        """Whether this check was made on these very bytes, reference and backend version."""
        return (self.sha256, self.reference_sha256, self.backend, self.backend_version) == (
            artifact.sha256, reference_sha256, backend, backend_version(backend),
        )  # fmt: skip

    def summary(self) -> str:
        agreement = self.measured.get("top1_agreement_by_mode", {}).get("fused")
        shown = f"fused agreement {100 * agreement:.1f} %" if agreement is not None else "checked"
        return f"{'passed' if self.passed else 'FAILED: ' + self.reason} ({shown}, {self.samples} rows, {self.backend} {self.backend_version})"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TargetCheck":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def reference_digest(bundle: Path, manifest: Manifest) -> str | None:
    """sha256 of the bundle's reference samples (checked against the manifest), or None when it has none."""
    recorded = manifest.model.get("reference")
    if not recorded or not (bundle / recorded["file"]).is_file():
        return None
    digest = sha256_file(bundle / recorded["file"])
    if recorded.get("sha256") not in (None, digest):
        raise ChecksumError(f"{bundle / recorded['file']}: sha256 does not match the manifest (reference samples corrupted or replaced)")
    return digest


def reference_of(bundle: Path, manifest: Manifest) -> ReferenceSet:
    """The bundle's reference samples (with their reference outputs)."""
    file = manifest.model["reference"]["file"]
    reference = ReferenceSet.load(bundle / file)
    reference.name = f"{file} ({len(reference) // 3} samples x 3 patterns)"
    return reference


MEASURED = ("max_abs_diff", "top1_agreement", "top1_agreement_by_mode", "accuracy", "reference_accuracy", "drop_points", "agreement_with_verified")
OUTPUTS_DIR = "reference_outputs"  # each INT8 artifact's logits on the reference rows where it was verified


def judge(
    logits: np.ndarray, artifact: Artifact, reference: ReferenceSet, reference_sha256: str, backend: str, checked_by: str, seconds: float,
    baseline: dict[str, Any] | None = None,
) -> TargetCheck:
    """An artifact's outputs on the reference rows, judged by its precision's rules (INT8: its accuracy budget,
    against `baseline`, its own measurement where it was verified, when the bundle records one)."""
    result = compare(logits, reference, artifact.precision, max_drop_of(artifact), baseline)
    return TargetCheck(
        artifact.file, artifact.sha256, reference_sha256, backend, backend_version(backend), bool(result["passed"]), result.get("reason", ""),
        int(result["samples"]), round(seconds, 3), {k: result[k] for k in MEASURED if k in result}, checked_by,
        datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )  # fmt: skip


def verified_baseline(bundle: Path, artifact: Artifact) -> dict[str, Any] | None:
    """What an INT8 artifact measured on the reference rows where it was verified, with its logits when the bundle
    keeps them (None for float artifacts: they are judged against the reference outputs directly)."""
    baseline = artifact.verification.get("reference_check") if artifact.precision == "int8" else None
    if not baseline or "outputs" not in baseline:
        return baseline
    path = bundle / baseline["outputs"]["file"]
    if not path.is_file() or sha256_file(path) != baseline["outputs"]["sha256"]:
        raise ChecksumError(f"{path}: {artifact.file}'s verified answers are missing or do not match the manifest")
    return {**baseline, "logits": np.load(path)}


def save_verified_outputs(bundle: Path, artifact: Artifact, logits: np.ndarray) -> dict[str, str]:
    """Keep an artifact's logits on the reference rows in the bundle; returns the manifest's pointer to them."""
    file = f"{OUTPUTS_DIR}/{artifact.file.replace('/', '__')}.npy"
    (bundle / OUTPUTS_DIR).mkdir(exist_ok=True)
    np.save(bundle / file, logits.astype(np.float32))
    return {"file": file, "sha256": sha256_file(bundle / file)}


def run_check(bundle: Path, infer: Infer, artifact: Artifact, reference: ReferenceSet, reference_sha256: str, backend: str, checked_by: str) -> TargetCheck:
    """Run `infer` on every reference row and judge it (INT8: against its own answers where it was verified)."""
    started = time.perf_counter()
    try:
        baseline = verified_baseline(bundle, artifact)
        logits = run_model(infer, reference)
    except EdgemmError as exc:
        return failed_check(artifact, reference_sha256, backend, str(exc), checked_by)
    return judge(logits, artifact, reference, reference_sha256, backend, checked_by, time.perf_counter() - started, baseline)


def failed_check(artifact: Artifact, reference_sha256: str, backend: str, reason: str, checked_by: str) -> TargetCheck:
    """A check that could not run the artifact at all."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return TargetCheck(artifact.file, artifact.sha256, reference_sha256, backend, backend_version(backend), False, reason, 0, 0.0, checked_by=checked_by, checked_at=now)


def max_drop_of(artifact: Artifact) -> float | None:
    """The accuracy budget an INT8 artifact was made under (None for float artifacts: parity decides)."""
    if artifact.precision != "int8":
        return None
    return float(artifact.extra.get("quantization", {}).get("max_drop", DEFAULT_MAX_DROP))


class CheckStore:
    """The on-target check records of one bundle for one machine class."""

    def __init__(self, bundle: Path, machine: MachineInfo | None = None) -> None:
        self.bundle = Path(bundle)
        self.machine = machine or this_machine()
        self.in_bundle = self.bundle / CHECKS_DIR / f"{self.machine.key}.json"
        self.in_cache = cache_root() / CHECKS_DIR / f"{self.machine.key}.json"

    def _read(self, path: Path) -> dict[str, TargetCheck]:
        """Checks by artifact sha256; a corrupt record or one of a newer schema is ignored with a warning."""
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("schema") != RECORD_SCHEMA:
                raise ValueError(f"schema {data.get('schema')!r}, this edgemm reads {RECORD_SCHEMA}")
            return {sha: TargetCheck.from_dict(c) for sha, c in data["checks"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning(f"edgemm: ignoring on-target check record {path} ({type(exc).__name__}: {exc}); checking again")
            return {}

    def lookup(self, artifact: Artifact, reference_sha256: str, backend: str) -> TargetCheck | None:
        """The valid check of this artifact on this machine class, if one was made."""
        for path in (self.in_bundle, self.in_cache):
            check = self._read(path).get(artifact.sha256)
            if check is not None and check.applies_to(artifact, reference_sha256, backend):
                return check
        return None

    def save(self, checks: list[TargetCheck], keep: set[str] | None = None) -> Path:
        """Add checks to the bundle's record (atomically), or to the user cache when the bundle is read-only;
        returns where they went. With `keep` (artifact sha256s), checks of other files are dropped from the bundle's record."""
        for path in (self.in_bundle, self.in_cache):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                merged = self._read(path) | {c.sha256: c for c in checks}
                if keep is not None and path == self.in_bundle:
                    merged = {sha: c for sha, c in merged.items() if sha in keep}
                write_json_atomic(path, {"schema": RECORD_SCHEMA, "machine": self.machine.to_dict(), "checks": {s: asdict(c) for s, c in merged.items()}})
                return path
            except OSError:
                continue
        raise BundleError(f"cannot record the on-target checks of {self.bundle}: neither {self.in_bundle} nor {self.in_cache} is writable")
