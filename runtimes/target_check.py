"""On-target checks: an artifact run on *this* machine against the bundle's own reference samples, torch-free.

A verdict made on the export machine says nothing certain about another CPU's kernels (x86 without VNNI
saturates int8 products that VNNI computes exactly), so each machine class keeps its own record:
`BUNDLE/checks/<machine key>.json`, or the same file under the user cache (`$EDGEMM_CACHE/checks/`) when the
bundle folder is read-only. A record holds one check per artifact and device, valid while the artifact's,
the reference's and the verified answers' sha256, the backend and its version are the ones it was made with.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError, ChecksumError
from .machine import MachineInfo, backend_version, this_machine
from .manifest import Artifact, Manifest, sha256_file, write_json_atomic
from .paths import cache_root
from .reference import Infer, ReferenceSet
from .verification import DEFAULT_MAX_DROP, compare, run_model

CHECKS_DIR = "checks"
OUTPUTS_DIR = "reference_outputs"  # each INT8 artifact's outputs (logits or embedding) on the reference rows where it was verified
RECORD_SCHEMA = 1
CHECK_BATCH = 1  # checks run batch by batch as a live device does (the numerics were the same at 64 where measured)
MEASURED = ("max_abs_diff", "min_cosine", "mean_cosine", "top1_agreement", "top1_agreement_by_mode", "accuracy", "reference_accuracy", "drop_points", "agreement_with_verified")
log = logging.getLogger("edgemm")


@dataclass
class TargetCheck:
    """One artifact judged on one machine class (and device) against the bundle's reference samples."""

    file: str
    sha256: str
    reference_sha256: str
    baseline_sha256: str  # the verified answers it was judged against ("" for float artifacts)
    backend: str
    backend_version: str
    device: str  # the backend's device ("default": its CPU default)
    passed: bool
    reason: str  # why it failed ("" when it passed)
    samples: int
    seconds: float
    measured: dict[str, Any] = field(default_factory=dict)  # agreement, accuracy, drop, max |Δ| (compare's numbers)
    checked_by: str = "self-check"  # "self-check", "edgemm verify" or "export"
    checked_at: str = ""

    @property
    def key(self) -> str:
        return record_key(self.sha256, self.device)

    def applies_to(self, artifact: Artifact, reference_sha256: str, backend: str, device: str | None) -> bool:
        """Whether this check was made on these very bytes, reference, verified answers, backend version and device."""
        baseline = artifact.verification.reference_check.get("outputs", {}).get("sha256", "") if artifact.precision == "int8" else ""
        return (self.sha256, self.reference_sha256, self.baseline_sha256, self.backend, self.backend_version, self.device) == (
            artifact.sha256, reference_sha256, baseline, backend, backend_version(backend), device or "default",
        )  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TargetCheck":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def record_key(sha256: str, device: str | None) -> str:
    return f"{sha256}@{device or 'default'}"


def reference_digest(bundle: Path, manifest: Manifest) -> str | None:
    """sha256 of the bundle's reference samples (checked against the manifest), or None when it has none."""
    recorded = manifest.model.get("reference")
    if not recorded:
        return None
    path = bundle / recorded["file"]
    if not path.is_file():
        raise ChecksumError(f"{path}: the reference samples listed in the manifest are missing")
    digest = sha256_file(path)
    if recorded.get("sha256") not in (None, digest):
        raise ChecksumError(f"{path}: sha256 does not match the manifest (reference samples corrupted or replaced)")
    return digest


def reference_of(bundle: Path, manifest: Manifest) -> ReferenceSet:
    """The bundle's reference samples (with their reference outputs)."""
    file = manifest.model["reference"]["file"]
    reference = ReferenceSet.load(bundle / file)
    patterns = len(reference.pattern_rows)
    reference.name = f"{file} ({len(reference) // patterns} samples x {patterns} patterns)"
    return reference


def max_drop_of(artifact: Artifact) -> float | None:
    """The accuracy budget an INT8 artifact was made under (None for float artifacts: parity decides)."""
    if artifact.precision != "int8":
        return None
    return float(artifact.extra.get("quantization", {}).get("max_drop", DEFAULT_MAX_DROP))


def verified_baseline(bundle: Path, artifact: Artifact) -> dict[str, Any] | None:
    """What an INT8 artifact measured on the reference rows where it was verified, with its outputs when the bundle
    keeps them (None for float artifacts: they are judged against the reference outputs directly)."""
    baseline = artifact.verification.reference_check if artifact.precision == "int8" else None
    if not baseline or "outputs" not in baseline:
        return baseline
    path = bundle / baseline["outputs"]["file"]
    if not path.is_file() or sha256_file(path) != baseline["outputs"]["sha256"]:
        raise ChecksumError(f"{path}: {artifact.file}'s verified answers are missing or do not match the manifest")
    return {**baseline, "verified_outputs": np.load(path)}


def save_verified_outputs(bundle: Path, artifact: Artifact, outputs: np.ndarray) -> dict[str, str]:
    """Keep an artifact's outputs (what it is judged on) on the reference rows in the bundle (temp file, then rename); returns the
    manifest's pointer to them."""
    file = f"{OUTPUTS_DIR}/{artifact.file.replace('/', '__')}.npy"
    (bundle / OUTPUTS_DIR).mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=bundle / OUTPUTS_DIR, suffix=".npy")
    with os.fdopen(fd, "wb") as fh:
        np.save(fh, outputs.astype(np.float32))
    os.replace(tmp, bundle / file)
    return {"file": file, "sha256": sha256_file(bundle / file)}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def judge(
    outputs: np.ndarray, artifact: Artifact, reference: ReferenceSet, reference_sha256: str, backend: str, device: str | None,
    checked_by: str, seconds: float, baseline: dict[str, Any] | None = None,
) -> TargetCheck:
    """An artifact's outputs on the reference rows, judged by its precision's rules (INT8: its accuracy budget,
    against `baseline`, its own measurement where it was verified, when the bundle records one)."""
    result = compare(outputs, reference, artifact.precision, max_drop_of(artifact), baseline)
    baseline_sha = (baseline or {}).get("outputs", {}).get("sha256", "")
    return TargetCheck(
        artifact.file, artifact.sha256, reference_sha256, baseline_sha, backend, backend_version(backend), device or "default",
        bool(result["passed"]), result.get("reason", ""), int(result["samples"]), round(seconds, 3),
        {k: result[k] for k in MEASURED if k in result}, checked_by, _now(),
    )  # fmt: skip


def failed_check(artifact: Artifact, reference_sha256: str, backend: str, device: str | None, reason: str, checked_by: str) -> TargetCheck:
    """A check whose artifact could not be opened or run here."""
    return TargetCheck(artifact.file, artifact.sha256, reference_sha256, "", backend, backend_version(backend), device or "default", False, reason, 0, 0.0,
                       checked_by=checked_by, checked_at=_now())  # fmt: skip


def run_check(
    bundle: Path, infer: Infer, artifact: Artifact, reference: ReferenceSet, reference_sha256: str, backend: str, device: str | None, checked_by: str
) -> TargetCheck:
    """Run `infer` on every reference row and judge it (INT8: against its own answers where it was verified).
    A bundle whose verified answers are damaged raises (ChecksumError); an artifact that cannot run fails."""
    baseline = verified_baseline(bundle, artifact)
    started = time.perf_counter()
    try:
        outputs = run_model(infer, reference, batch=CHECK_BATCH)
    except Exception as exc:  # noqa: BLE001 - any backend's own exception: the artifact does not run here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return failed_check(artifact, reference_sha256, backend, device, f"cannot run here: {reason}", checked_by)
    return judge(outputs, artifact, reference, reference_sha256, backend, device, checked_by, time.perf_counter() - started, baseline)


class CheckStore:
    """The on-target check records of one bundle for one machine class."""

    def __init__(self, bundle: Path, machine: MachineInfo | None = None) -> None:
        self.bundle = Path(bundle)
        self.machine = machine or this_machine()
        self.in_bundle = self.bundle / CHECKS_DIR / f"{self.machine.key}.json"
        self.in_cache = cache_root() / CHECKS_DIR / f"{self.machine.key}.json"

    def _read(self, path: Path) -> dict[str, TargetCheck]:
        """Checks by key; a corrupt record or one of a newer schema is ignored with a warning."""
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("schema") != RECORD_SCHEMA:
                raise ValueError(f"schema {data.get('schema')!r}, this edgemm reads {RECORD_SCHEMA}")
            return {key: TargetCheck.from_dict(c) for key, c in data["checks"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning(f"edgemm: ignoring on-target check record {path} ({type(exc).__name__}: {exc}); checking again")
            return {}

    def lookup(self, artifact: Artifact, reference_sha256: str, backend: str, device: str | None = None) -> TargetCheck | None:
        """The valid check of this artifact on this machine class and device, if one was made; where the bundle's
        record and the user cache disagree, a failure wins."""
        found = [c for path in (self.in_bundle, self.in_cache) if (c := self._read(path).get(record_key(artifact.sha256, device)))]
        valid = [c for c in found if c.applies_to(artifact, reference_sha256, backend, device)]
        return next((c for c in valid if not c.passed), valid[0] if valid else None)

    def save(self, checks: list[TargetCheck], keep: set[str] | None = None) -> Path:
        """Add checks to the bundle's record (atomically), or to the user cache when the bundle is read-only;
        returns where they went. With `keep` (artifact sha256s), checks of other files are dropped from the bundle's record."""
        for path in (self.in_bundle, self.in_cache):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                merged = self._read(path) | {c.key: c for c in checks}
                if keep is not None and path == self.in_bundle:
                    merged = {key: c for key, c in merged.items() if c.sha256 in keep}
                write_json_atomic(path, {"schema": RECORD_SCHEMA, "machine": self.machine.to_dict(), "checks": {k: asdict(c) for k, c in merged.items()}})
                return path
            except OSError:
                continue
        raise BundleError(f"cannot record the on-target checks of {self.bundle}: neither {self.in_bundle} nor {self.in_cache} is writable")

