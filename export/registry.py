"""One table drives the formats: name, files, what each needs installed, how it is written and checked."""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgemm.runtimes.backends import module_available
from edgemm.runtimes.errors import BackendUnavailableError, EdgemmError, one_line
from edgemm.runtimes.manifest import Artifact, Failure, Verification
from edgemm.runtimes.reference import ReferenceSet

from .bundle import BundleStage, describe
from .verify import verify_artifact

if TYPE_CHECKING:
    from .source import ExportSource


@dataclass(frozen=True)
class ExportFormat:
    """A format edgemm can export: its artifact file per precision, requirements and exporter.

    `exporter(source, path)` writes the fp32 artifact; `derive(fp32_path, path, precision)` writes each
    other precision from it; `int8(fp32_path, path, calibration, held_out, options, source)` writes the INT8
    artifact with the format's own INT8 path and returns how, for the manifest; `device_build(stage, bundle,
    reference, log)` builds on the device what cannot be exported (all "module:function" in `edgemm.export`,
    imported when used: building TensorRT engines on a device must not import torch). ONNX's INT8 is the
    guarded quantizer every other INT8 artifact is measured beside (`edgemm quantize`); TensorRT has no
    exporter: its engines are built from the bundle's ONNX."""

    name: str
    files: dict[str, str]  # precision -> file name inside the bundle, fp32 first
    int8_file: str | None
    requires: tuple[str, ...]  # import names the exporter needs
    extra: str  # pip extra that provides them
    backend: str  # runtime backend that verifies the artifact
    exporter: str | None
    derive: str | None = None
    weights_beside: bool = False  # OpenVINO: a .bin beside each .xml
    int8: str | None = None
    int8_requires: tuple[str, ...] = ()  # import names the INT8 path needs beyond `requires` (in the export extra)
    int8_needs_source: bool = False  # quantizes the torch graph: needs the model, not only the fp32 artifact
    device_build: str | None = None

    def companions(self, file: str) -> tuple[str, ...]:
        """Files written beside an artifact that belong to it."""
        return (str(Path(file).with_suffix(".bin")),) if self.weights_beside else ()

    def export(self, source: "ExportSource", path: Path) -> None:
        _target(self.exporter)(source, path)

    def derive_from(self, fp32: Path, path: Path, precision: str) -> None:
        _target(self.derive)(fp32, path, precision)

    def quantize(self, fp32: Path, path: Path, calibration, held_out: ReferenceSet, options, source: "ExportSource | None") -> dict:
        return _target(self.int8)(fp32, path, calibration, held_out, options, source)

    def build_on_device(self, stage: BundleStage, bundle: Path, reference: ReferenceSet, log=print) -> int:
        return _target(self.device_build)(stage, bundle, reference, log)

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(self.files) + (("int8",) if self.int8_file else ())

    def missing(self) -> str | None:
        """The first required package that is not installed, if any."""
        return next((pkg for pkg in self.requires if not module_available(pkg)), None)


def _target(spec: str):
    module, name = spec.split(":")
    return getattr(importlib.import_module(f".{module}", __package__), name)


FORMATS: dict[str, ExportFormat] = {
    fmt.name: fmt
    for fmt in (
        ExportFormat("onnx", {"fp32": "model.onnx"}, "model.int8.onnx", ("onnx", "onnxscript", "onnxruntime"), "export", "onnxruntime", "onnx_format:export_onnx"),
        ExportFormat(
            "openvino", {"fp32": "openvino/model.xml", "fp16": "openvino/model.fp16.xml"}, "openvino/model.int8.xml",
            ("openvino", "onnx"), "openvino", "openvino", "openvino_format:export_openvino", "openvino_format:openvino_fp16", True,
            int8="openvino_int8:nncf_quantize", int8_requires=("nncf",),
        ),
        ExportFormat(
            "tflite", {"fp32": "tflite/model.tflite", "fp16": "tflite/model.fp16.tflite"}, "tflite/model.int8.tflite",
            ("litert_torch", "ai_edge_quantizer", "ai_edge_litert"), "export", "litert", "tflite_format:export_tflite", "tflite_format:tflite_fp16",
            int8="tflite_int8:pt2e_quantize", int8_needs_source=True,
        ),
        ExportFormat(
            "tensorrt", {"fp16": "tensorrt/model.fp16.engine"}, "tensorrt/model.int8.engine", ("tensorrt", "polygraphy"), "tensorrt",
            "tensorrt", None, device_build="tensorrt_engine:build_engines",
        ),
    )
}  # fmt: skip


class UnknownFormatError(EdgemmError):
    """A format name that is not in the table."""


def parse_formats(spec: str) -> list[ExportFormat]:
    """'onnx,openvino' → format rows, with a clear error for unknown names."""
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise UnknownFormatError(f"unknown format {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}")
    return [FORMATS[n] for n in dict.fromkeys(names)]


def record_failure(stage: BundleStage, fmt: str, precision: str, step: str, error: str, log=print, skipped: bool = False, **device) -> None:
    """Note a format/precision that could not be produced in the manifest (and the log), never raise.
    `skipped`: not attempted because this machine lacks what it needs (a package, a GPU, the checkpoint)."""
    stage.manifest.failures.append(Failure(fmt, precision, step, error, skipped, **device))
    log(f"{fmt} {precision}: {'skipped' if skipped else step + ' failed'}: {error}")


def unavailable(fmt: ExportFormat, what: str) -> str | None:
    """The one-line install hint when `fmt`'s requirements are missing, else None."""
    missing = fmt.missing()
    return str(BackendUnavailableError(what, missing, fmt.extra)) if missing else None


def add_verified(
    stage: BundleStage, fmt: ExportFormat, file: str, precision: str, reference: ReferenceSet, budget_met: bool | None = None, **extra
) -> Artifact:
    """Record a file just written into the staged bundle and judge it through its format's backend on `reference`;
    an INT8 artifact passes only with its accuracy budget met too (`budget_met`). `extra` goes to the manifest."""
    artifact = describe(stage.path, file, fmt.name, precision, fmt.companions(file), **extra)
    stage.add(artifact)
    artifact.verification = with_budget(verify_artifact(stage.path, file, precision, reference, backend=fmt.backend), budget_met)
    return artifact


def with_budget(verification: Verification, budget_met: bool | None) -> Verification:
    """A verification result that also needs the accuracy budget (None: no budget applies)."""
    if budget_met is not None:
        verification.budget_met = budget_met
        verification.passed = verification.passed and budget_met
    return verification


def export_into(stage: BundleStage, fmt: ExportFormat, source: "ExportSource", reference: ReferenceSet, log=print) -> bool:
    """Export every precision of one format into a staged bundle and verify each; failures are
    recorded in the manifest, never raised. Returns True when all were written and verified."""
    reason = unavailable(fmt, f"the {fmt.name} export")
    if reason:
        record_failure(stage, fmt.name, ",".join(fmt.files), "export", reason, log, skipped=True)
        return False
    ok = True
    fp32 = stage.path / fmt.files["fp32"]
    for precision, file in fmt.files.items():
        started = time.perf_counter()
        try:
            if precision == "fp32":
                fmt.export(source, fp32)
            elif fp32.is_file():
                fmt.derive_from(fp32, stage.path / file, precision)
            else:
                raise EdgemmError(f"no fp32 {fmt.name} artifact to derive {precision} from")
        except Exception as exc:  # a converter failing must not lose the other formats
            record_failure(stage, fmt.name, precision, "export", one_line(exc), log)
            ok = False
            continue
        artifact = add_verified(stage, fmt, file, precision, reference, export_seconds=round(time.perf_counter() - started, 2))
        stage.flush()
        ok = ok and artifact.verified
    return ok
