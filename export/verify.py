"""Verification at export: run an artifact through `edgemm.runtimes` and judge it against the reference."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgemm.runtimes.errors import EdgemmError
from edgemm.runtimes.machine import backend_version, this_machine, tool_versions
from edgemm.runtimes.model import load_bundle
from edgemm.runtimes.on_target import verify_here
from edgemm.runtimes.reference import ReferenceSet
from edgemm.runtimes.verification import compare, run_model

if TYPE_CHECKING:
    from .bundle import BundleStage


def verify_artifact(
    bundle: Path, file: str, precision: str, reference: ReferenceSet, backend: str = "auto", max_drop: float | None = None
) -> dict[str, Any]:
    """Load one artifact of a (staged) bundle by file name and judge it on the reference set; the result
    names the machine and the backend version it was measured with."""
    provenance = {"machine": this_machine().to_dict(), "tools": tool_versions()}
    try:
        model = load_bundle(bundle, backend=backend, artifact=file)
        logits = run_model(model.infer, reference)
    except EdgemmError as exc:
        return {"passed": False, "error": str(exc), "reason": str(exc), **provenance}
    result = compare(logits, reference, precision, max_drop)
    result["backend"] = model.backend.name
    result["backend_version"] = backend_version(model.backend.name)
    return {**result, **provenance}


def confirm_on_this_machine(stage: "BundleStage", log: Callable[[str], None] = print, only: set[str] | None = None) -> None:
    """Run the on-target check every device runs (the bundle's reference samples, torch-free) on the export
    machine too, record it in the staged bundle's `checks/`, and fail a verified artifact that misses it here."""
    stage.flush()
    report = verify_here(stage.path, checked_by="export", only=only)
    for check in report.checks:
        art = stage.manifest.artifact(check.file)
        art.verification["reference_check"] = {"passed": check.passed, "reason": check.reason, **check.measured}
        if art.verified and not check.passed:
            art.verification["passed"] = False
            art.verification["reason"] = f"failed on the bundle's reference samples: {check.reason}"
            log(f"{check.file}: FAILED on the bundle's reference samples on this machine: {check.reason}")
    stage.flush()
