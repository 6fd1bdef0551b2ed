"""`edgemm verify BUNDLE` on the machine that runs it: every artifact whose backend is installed here, run on the
bundle's own reference samples (torch-free), judged by its precision's rules, recorded for this machine class."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .backends import BACKENDS
from .backends.tensorrt_backend import EngineMismatchError
from .errors import BackendUnavailableError, BundleError, EdgemmError
from .machine import backend_version
from .manifest import Manifest
from .model import load_bundle
from .target_check import (
    CheckStore,
    TargetCheck,
    reference_digest,
    reference_of,
    run_check,
)


@dataclass
class TargetReport:
    """What `verify_here` did: the checks made, the artifacts it could not run here, and where the record went."""

    checks: list[TargetCheck]
    skipped: dict[str, str]  # artifact file → why it was not run here
    record: Path | None


def verify_here(bundle: str | Path, checked_by: str = "edgemm verify", only: set[str] | None = None, threads: int | None = None) -> TargetReport:
    """Check every artifact (or those in `only`) of `bundle` that this machine can run, and record the results."""
    bundle = Path(bundle)
    manifest = Manifest.read(bundle)
    digest = reference_digest(bundle, manifest)
    if digest is None:
        raise BundleError(f"{bundle}: no reference samples to verify on (re-export it with this edgemm)")
    reference = reference_of(bundle, manifest)
    checks, skipped = [], {}
    for art in manifest.artifacts:
        if only is not None and art.file not in only:
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
            checks.append(TargetCheck(art.file, art.sha256, digest, info.name, backend_version(info.name), False, str(exc), 0, 0.0,
                                      checked_by=checked_by, checked_at=datetime.now(timezone.utc).isoformat(timespec="seconds")))  # fmt: skip
            continue
        checks.append(run_check(model.infer, art, reference, digest, info.name, checked_by))
    record = CheckStore(bundle).save(checks, keep={a.sha256 for a in manifest.artifacts}) if checks else None
    return TargetReport(checks, skipped, record)
