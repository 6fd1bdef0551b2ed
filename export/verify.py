"""Verification at export: run an artifact through `edgemm.runtimes` and judge it against the reference."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgemm.runtimes.backends.tensorrt_backend import EngineMismatchError
from edgemm.runtimes.errors import BackendUnavailableError, EdgemmError
from edgemm.runtimes.machine import backend_version, this_machine, tool_versions
from edgemm.runtimes.model import load_bundle
from edgemm.runtimes.reference import ReferenceSet
from edgemm.runtimes.target_check import (
    MEASURED,
    CheckStore,
    judge,
    reference_digest,
    reference_of,
    save_verified_outputs,
    verified_baseline,
)
from edgemm.runtimes.verification import compare, run_model

if TYPE_CHECKING:
    from .bundle import BundleStage


def verify_artifact(
    bundle: Path, file: str, precision: str, reference: ReferenceSet, backend: str = "auto") -> dict[str, Any]:
    """Load one artifact of a (staged) bundle by file name and judge it on the reference set; the result
    names the machine and the backend version it was measured with."""
    provenance = {"machine": this_machine().to_dict(), "tools": tool_versions()}
    try:
        model = load_bundle(bundle, backend=backend, artifact=file)
        logits = run_model(model.infer, reference)
    except EdgemmError as exc:
        return {"passed": False, "error": str(exc), "reason": str(exc), **provenance}
    result = compare(logits, reference, precision)
    result["backend"] = model.backend.name
    result["backend_version"] = backend_version(model.backend.name)
    return {**result, **provenance}


def confirm_on_this_machine(stage: "BundleStage", log: Callable[[str], None] = print, only: set[str] | None = None) -> None:
    """Measure every artifact (or those in `only`) on the bundle's reference samples here — the baseline that a
    device's on-target check compares an INT8 artifact with — and record this machine's check in the staged
    bundle's `checks/`, so the export machine never checks twice."""
    from .registry import FORMATS

    stage.flush()
    manifest = stage.manifest
    digest, reference = reference_digest(stage.path, manifest), reference_of(stage.path, manifest)
    checks = []
    for art in manifest.artifacts:
        if only is not None and art.file not in only:
            continue
        backend = FORMATS[art.format].backend
        try:
            model = load_bundle(stage.path, backend=backend, artifact=art.file)
        except (BackendUnavailableError, EngineMismatchError):  # e.g. a TensorRT engine on a machine without its GPU
            continue
        started = time.perf_counter()
        logits = run_model(model.infer, reference)
        measured = {k: v for k, v in compare(logits, reference, art.precision).items() if k in MEASURED}
        if art.precision == "int8":  # what a device checks this artifact against
            measured["outputs"] = save_verified_outputs(stage.path, art, logits)
        art.verification["reference_check"] = measured
        check = judge(logits, art, reference, digest, backend, "export", time.perf_counter() - started, verified_baseline(stage.path, art))
        checks.append(check)
        if art.verified and not check.passed:
            art.verification["passed"] = False
            art.verification["reason"] = f"failed on the bundle's reference samples: {check.reason}"
            log(f"{check.file}: FAILED on the bundle's reference samples: {check.reason}")
    if checks:
        CheckStore(stage.path).save(checks, keep={a.sha256 for a in manifest.artifacts})
    stage.flush()
