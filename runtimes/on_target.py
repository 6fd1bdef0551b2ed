"""`edgemm verify BUNDLE` on the machine that runs it: every artifact whose backend is installed here, run on the
bundle's own reference samples (torch-free), judged by its precision's rules, recorded for this machine class."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .backends import format_backend
from .backends.tensorrt_backend import EngineMismatchError
from .errors import BackendUnavailableError, BundleError, ChecksumError, EdgemmError
from .manifest import Manifest
from .model import load_bundle
from .target_check import (
    CheckStore,
    TargetCheck,
    failed_check,
    reference_digest,
    reference_of,
    run_check,
)

CHECKED_BY = "edgemm verify"


@dataclass
class TargetReport:
    """What `verify_here` did: the checks made, the artifacts it could not run here, those that had already failed
    at export (never used, not run), and where the record went."""

    checks: list[TargetCheck]
    skipped: dict[str, str]  # artifact file → why it was not run here
    failed_at_export: dict[str, str]  # artifact file → why
    record: Path | None


def verify_here(bundle: str | Path, only: set[str] | None = None, threads: int | None = None) -> TargetReport:
    """Check every artifact (or those in `only`) of `bundle` that this machine can run, and record the results."""
    bundle = Path(bundle)
    manifest = Manifest.read(bundle)
    digest = reference_digest(bundle, manifest)
    if digest is None:
        raise BundleError(f"{bundle}: no reference samples to verify on (re-export it with this edgemm)")
    unknown = sorted((only or set()) - {a.file for a in manifest.artifacts})
    if unknown:
        raise BundleError(f"{bundle}: no artifact {', '.join(unknown)} in the manifest")
    reference = reference_of(bundle, manifest)
    report = TargetReport([], {}, {}, None)
    for art in (a for a in manifest.artifacts if only is None or a.file in only):
        if not art.verified:
            report.failed_at_export[art.file] = art.failure
            continue
        info = format_backend(art.format)
        if not info.installed():
            report.skipped[art.file] = str(BackendUnavailableError(f"running {art.file}", info.package, info.extra))
            continue
        try:
            model = load_bundle(bundle, backend=info.name, artifact=art.file, threads=threads)
        except (BackendUnavailableError, EngineMismatchError) as exc:  # no GPU here, or an engine built for another one
            report.skipped[art.file] = str(exc)
            continue
        except ChecksumError:
            raise
        except EdgemmError as exc:
            report.checks.append(failed_check(art, digest, info.name, None, f"cannot load here: {exc}", CHECKED_BY))
            continue
        report.checks.append(run_check(bundle, model.infer, art, reference, digest, info.name, None, CHECKED_BY))
    if report.checks:
        report.record = CheckStore(bundle).save(report.checks, keep={a.sha256 for a in manifest.artifacts})
    return report
