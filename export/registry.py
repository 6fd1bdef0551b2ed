"""One table drives the formats: name, files, what each needs installed, how it is written and checked."""
from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgemm.runtimes.errors import BackendUnavailableError, EdgemmError

from .bundle import BundleStage, describe
from .onnx_format import export_onnx
from .source import ExportSource, ReferenceSet
from .verify import verify_artifact


@dataclass(frozen=True)
class ExportFormat:
    """A format edgemm can export: its artifact file per precision, requirements and exporter."""

    name: str
    files: dict[str, str]  # precision -> file name inside the bundle
    requires: tuple[str, ...]  # import names the exporter needs
    extra: str  # pip extra that provides them
    backend: str  # runtime backend that verifies the artifact
    exporter: Callable[[ExportSource, Path], None]

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(self.files)

    def missing(self) -> str | None:
        """The first required package that is not installed, if any."""
        return next((pkg for pkg in self.requires if importlib.util.find_spec(pkg) is None), None)


FORMATS: dict[str, ExportFormat] = {
    fmt.name: fmt
    for fmt in (
        ExportFormat("onnx", {"fp32": "model.onnx"}, ("onnx", "onnxscript", "onnxruntime"), "export", "onnxruntime", export_onnx),
    )
}


class UnknownFormatError(EdgemmError):
    """A format name that is not in the table."""


def parse_formats(spec: str) -> list[ExportFormat]:
    """'onnx,openvino' → format rows, with a clear error for unknown names."""
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise UnknownFormatError(f"unknown format {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}")
    return [FORMATS[n] for n in dict.fromkeys(names)]


def export_into(stage: BundleStage, fmt: ExportFormat, source: ExportSource, reference: ReferenceSet, log=print) -> bool:
    """Export one format into a staged bundle and verify it; failures are recorded, never raised.

    Returns True when the artifact was written and passed verification.
    """
    precision = "fp32"
    file = fmt.files[precision]
    missing = fmt.missing()
    if missing:
        reason = str(BackendUnavailableError(f"the {fmt.name} export", missing, fmt.extra))
        stage.manifest.failures.append({"format": fmt.name, "precision": precision, "stage": "export", "error": reason})
        log(f"{fmt.name}: skipped: {reason}")
        return False
    started = time.perf_counter()
    try:
        fmt.exporter(source, stage.path / file)
    except Exception as exc:  # a converter failing must not lose the other formats
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        stage.manifest.failures.append({"format": fmt.name, "precision": precision, "stage": "export", "error": reason})
        log(f"{fmt.name}: export failed: {reason}")
        return False
    artifact = describe(stage.path, file, fmt.name, precision, export_seconds=round(time.perf_counter() - started, 2))
    stage.add(artifact)
    artifact.verification = verify_artifact(stage.path, file, precision, reference, backend=fmt.backend)
    stage.flush()
    return artifact.verified
