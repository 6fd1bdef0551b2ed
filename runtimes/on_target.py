"""`edgemm verify BUNDLE` on the machine that runs it: every artifact whose backend is installed here, run on the
bundle's own reference samples (torch-free), judged by its precision's rules, recorded for this machine class."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .backends import BACKENDS
from .backends.tensorrt_backend import EngineMismatchError
from .errors import BackendUnavailableError, BundleError, EdgemmError
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
    """What `verify_here` did: the checks made, the artifacts it could not run here, and where the record went."""

    checks: list[TargetCheck]
    skipped: dict[str, str]  # artifact file → why it was not run here
    record: Path | None


def verify_here(bundle: str | Path, only: set[str] | None = None, threads: int | None = None) -> TargetReport:
    """Check every artifact (or those in `only`) of `bundle` that this machine can run, and record the results."""
    bundle = Path(bundle)
    manifest = Manifest.read(bundle)
    digest = reference_digest(bundle, manifest)
    if digest is None:
        raise BundleError(f"{bundle}: no reference samples to verify on (re-export it with this edgemm)")
    reference = reference_of(bundle, manifest)
    checks, skipped = [], {}
    unknown = sorted((only or set()) - {a.file for a in manifest.artifacts})
    if unknown:
        raise BundleError(f"{bundle}: no artifact {', '.join(unknown)} in the manifest")
    for art in manifest.artifacts:
        if only is not None and art.file not in only:
            continue
        if not art.verified:
            skipped[art.file] = f"failed verification at export ({art.failure}): never used"
            continue
        info = next(b for b in BACKENDS.values() if art.format in b.formats)
        if not info.installed():
            skipped[art.file] = str(BackendUnavailableError(f"running {art.file}", info.package, info.extra))
            continue
        try:
            model = load_bundle(bundle, backend=info.name, artifact=art.file, threads=threads)
        except (BackendUnavailableError, EngineMismatchError) as exc:  # no GPU here, or an engine built for another one
            skipped[art.file] = str(exc)
            continue
        except EdgemmError as exc:
            checks.append(failed_check(art, digest, info.name, str(exc), CHECKED_BY))
            continue
        checks.append(run_check(bundle, model.infer, art, reference, digest, info.name, CHECKED_BY))
    record = CheckStore(bundle).save(checks, keep={a.sha256 for a in manifest.artifacts}) if checks else None
    return TargetReport(checks, skipped, record)
