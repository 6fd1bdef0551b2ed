"""One table drives the formats: name, files, what each needs installed, how it is written and checked."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgemm.runtimes.backends import module_available
from edgemm.runtimes.errors import BackendUnavailableError, EdgemmError

from .bundle import BundleStage, describe
from .onnx_format import export_onnx
from .openvino_format import companion, export_openvino
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
    exporter: Callable[[ExportSource, Path, str], None]  # (source, file to write, precision)
    companions: Callable[[str], tuple[str, ...]] = lambda file: ()  # files written beside the artifact

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(self.files)

    def missing(self) -> str | None:
        """The first required package that is not installed, if any."""
        return next((pkg for pkg in self.requires if not module_available(pkg)), None)


FORMATS: dict[str, ExportFormat] = {
    fmt.name: fmt
    for fmt in (
        ExportFormat("onnx", {"fp32": "model.onnx"}, ("onnx", "onnxscript", "onnxruntime"), "export", "onnxruntime", export_onnx),
        ExportFormat(
            "openvino", {"fp32": "openvino/model.xml", "fp16": "openvino/model.fp16.xml"}, ("openvino", "onnx"), "openvino", "openvino",
            export_openvino, companion,
        ),
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
    """Export every precision of one format into a staged bundle and verify each; failures are
    recorded in the manifest, never raised. Returns True when all were written and verified."""
    missing = fmt.missing()
    if missing:
        reason = str(BackendUnavailableError(f"the {fmt.name} export", missing, fmt.extra))
        stage.manifest.failures.append({"format": fmt.name, "precision": ",".join(fmt.precisions), "stage": "export", "error": reason})
        log(f"{fmt.name}: skipped: {reason}")
        return False
    ok = True
    for precision, file in fmt.files.items():
        started = time.perf_counter()
        try:
            fmt.exporter(source, stage.path / file, precision)
        except Exception as exc:  # a converter failing must not lose the other formats
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            stage.manifest.failures.append({"format": fmt.name, "precision": precision, "stage": "export", "error": reason})
            log(f"{fmt.name} {precision}: export failed: {reason}")
            ok = False
            continue
        artifact = describe(stage.path, file, fmt.name, precision, fmt.companions(file), export_seconds=round(time.perf_counter() - started, 2))
        stage.add(artifact)
        artifact.verification = verify_artifact(stage.path, file, precision, reference, backend=fmt.backend)
        stage.flush()
        ok = ok and artifact.verified
    return ok
