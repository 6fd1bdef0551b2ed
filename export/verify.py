"""Verification at export: run an artifact through `edgemm.runtimes` and judge it against the reference."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edgemm.runtimes.backends import format_backend
from edgemm.runtimes.backends.tensorrt_backend import EngineMismatchError
from edgemm.runtimes.errors import BackendUnavailableError, EdgemmError, one_line
from edgemm.runtimes.machine import backend_version, this_machine, tool_versions
from edgemm.runtimes.manifest import Verification
from edgemm.runtimes.model import load_bundle
from edgemm.runtimes.reference import ReferenceSet
from edgemm.runtimes.target_check import (
    CHECK_BATCH,
    MEASURED,
    CheckStore,
    failed_check,
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
    bundle: Path, file: str, precision: str, reference: ReferenceSet, backend: str = "auto") -> Verification:
    """Load one artifact of a (staged) bundle by file name and judge it on the reference set; the result
    names the machine and the backend version it was measured with."""
    provenance = {"machine": this_machine().to_dict(), "tools": tool_versions()}
    try:
        model = load_bundle(bundle, backend=backend, artifact=file)
        outputs = run_model(model.infer, reference)
    except Exception as exc:  # a backend failing on the artifact is a failed verification, never a lost bundle
        reason = str(exc) if isinstance(exc, EdgemmError) else one_line(exc)
        return Verification(passed=False, error=reason, reason=reason, **provenance)
    result = compare(outputs, reference, precision)
    return Verification.from_dict({**result, "backend": model.backend.name, "backend_version": backend_version(model.backend.name), **provenance})


def confirm_on_this_machine(stage: "BundleStage", log: Callable[[str], None] = print, only: set[str] | None = None) -> None:
    """Run every verified artifact (or those in `only`) on the bundle's reference samples here and record this
    machine's check in the staged bundle's `checks/`, so the export machine never checks twice.

    An INT8 artifact's answers here become the baseline a device's on-target check compares with (kept in
    `reference_outputs/`); its accuracy against fp32 was judged by the guard on the larger held-out split, on
    every int8 kernel family, so on the machine that made the baseline the check only confirms it runs. A
    float artifact is judged against torch's outputs, as everywhere."""
    stage.flush()
    manifest = stage.manifest
    digest, reference = reference_digest(stage.path, manifest), reference_of(stage.path, manifest)
    checks = []
    for art in (a for a in manifest.artifacts if a.verified and (only is None or a.file in only)):
        backend = format_backend(art.format).name
        try:
            model = load_bundle(stage.path, backend=backend, artifact=art.file)
            started = time.perf_counter()
            outputs = run_model(model.infer, reference, batch=CHECK_BATCH)
        except (BackendUnavailableError, EngineMismatchError):  # e.g. a TensorRT engine on a machine without its GPU
            continue
        except EdgemmError as exc:
            check = failed_check(art, digest, backend, None, f"cannot run here: {exc}", "export")
        else:
            measured = {k: v for k, v in compare(outputs, reference, art.precision).items() if k in MEASURED}
            if art.precision == "int8":
                measured["outputs"] = save_verified_outputs(stage.path, art, outputs)
            art.verification.reference_check = measured
            check = judge(outputs, art, reference, digest, backend, None, "export", time.perf_counter() - started, verified_baseline(stage.path, art))
        checks.append(check)
        if not check.passed:
            art.verification.passed = False
            art.verification.reason = f"failed on the bundle's reference samples: {check.reason}"
            log(f"{check.file}: FAILED on the bundle's reference samples: {check.reason}")
    if checks:
        CheckStore(stage.path).save(checks, keep={a.sha256 for a in manifest.artifacts})
    stage.flush()
