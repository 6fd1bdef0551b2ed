"""The bundle manifest: schema-versioned description of inputs, preprocessing, outputs and artifacts."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .contract import ContractError, ModelContract
from .errors import BundleError, ChecksumError, SchemaVersionError
from .preprocess import AudioSpec, ImageSpec
from .speech_gate import SpeechGateConfig

SCHEMA_VERSION = 2  # 2: the model contract (schema-1 bundles, the built-in interface, still load)
MANIFEST_NAME = "manifest.json"


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to a temp file beside `path`, fsync, then rename over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Verification:
    """An artifact's verdict at export as the manifest keeps it: what `verification.compare` measured against the
    reference outputs (logits: max |Δ|; an embedding: cosine), agreement and accuracy per modality pattern, the
    budget, the backend and machine it ran on, and this machine's check on the bundle's reference samples."""

    passed: bool = False
    reason: str = ""  # why it failed
    error: str = ""  # the backend could not load or run it
    samples: int = 0
    judged_on: str = "logits"  # or "embedding"
    answers: str = ""
    reference: str = ""
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    min_cosine: float | None = None
    mean_cosine: float | None = None
    agreement_judged_on: str | None = None
    top1_agreement: float | None = None
    top1_agreement_by_mode: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    reference_accuracy: dict[str, float] = field(default_factory=dict)
    drop_points: float | None = None
    max_drop: float | None = None
    agreement_with_verified: float | None = None
    tolerance: dict[str, Any] = field(default_factory=dict)
    budget_met: bool | None = None  # INT8: within its accuracy budget at quantization
    backend: str = ""
    backend_version: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    reference_check: dict[str, Any] = field(default_factory=dict)  # measured on the bundle's reference samples (INT8: its outputs' file)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "", {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Verification":
        """From a manifest entry or `compare`'s result; keys this edgemm does not know are ignored."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Artifact:
    """One model file of a bundle and what its verification measured."""

    file: str
    format: str  # "onnx", "openvino", "tflite", "tensorrt"
    precision: str  # "fp32", "fp16", "int8"
    sha256: str
    bytes: int
    verification: Verification = field(default_factory=Verification)
    extra: dict[str, Any] = field(default_factory=dict)
    parts: list[dict[str, Any]] = field(default_factory=list)  # companion files: {file, sha256, bytes}

    @property
    def verified(self) -> bool:
        return self.verification.passed

    @property
    def failure(self) -> str:
        """Why its verification failed, in a few words."""
        return self.verification.reason or self.verification.error or "over its accuracy budget"

    @property
    def total_bytes(self) -> int:
        """The artifact's size with its companion files."""
        return self.bytes + sum(int(p["bytes"]) for p in self.parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "precision": self.precision,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "verification": self.verification.to_dict(),
            **({"parts": self.parts} if self.parts else {}),
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Artifact":
        return cls(
            file=data["file"],
            format=data["format"],
            precision=data["precision"],
            sha256=data["sha256"],
            bytes=int(data["bytes"]),
            verification=Verification.from_dict(data.get("verification", {})),
            extra=dict(data.get("extra", {})),
            parts=list(data.get("parts", [])),
        )

    def check_file(self, bundle: Path) -> Path:
        """The artifact's path, after checking its size and sha256 (and its companion files') against the manifest."""
        for entry in [{"file": self.file, "sha256": self.sha256, "bytes": self.bytes}, *self.parts]:
            path = bundle / entry["file"]
            if not path.is_file():
                raise ChecksumError(f"{path}: {'artifact' if entry['file'] == self.file else 'companion file of ' + self.file} listed in the manifest is missing")
            size = path.stat().st_size
            if size != entry["bytes"]:
                raise ChecksumError(f"{path}: {size} bytes, the manifest records {entry['bytes']} (truncated or replaced)")
            if sha256_file(path) != entry["sha256"]:
                raise ChecksumError(f"{path}: sha256 does not match the manifest (file corrupted or replaced)")
        return bundle / self.file


@dataclass
class Failure:
    """A format and precision an export could not produce: the step that failed and why; `skipped` when it was
    not attempted because this machine lacks what it needs (a package, a GPU, the checkpoint). A device build
    left to the device says how to run it there (`on_device`, and the vendor tool's command line `trtexec`)."""

    format: str
    precision: str
    stage: str
    error: str
    skipped: bool = False
    on_device: str | None = None
    trtexec: str | None = None

    @property
    def name(self) -> str:
        return f"{self.format} {self.precision}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Failure":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Manifest:
    """Everything the runtime needs to know about a bundle, as stored in `manifest.json`: the model's contract
    (inputs, preprocessing, missing-modality convention, outputs, labels), its artifacts and what failed, and how
    the runtime hears audio (the speech gate's settings; an older manifest without them gets the defaults)."""

    model: dict[str, Any]
    contract: ModelContract
    artifacts: list[Artifact] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)  # exports that produced no artifact, and why
    schema_version: int = SCHEMA_VERSION
    speech_gate: SpeechGateConfig = SpeechGateConfig()

    @property
    def image(self) -> ImageSpec | None:
        return self.contract.image

    @property
    def audio(self) -> AudioSpec | None:
        return self.contract.audio

    @property
    def labels(self) -> list[str]:
        return list(self.contract.labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "contract": self.contract.to_dict(),
            "artifacts": [a.to_dict() for a in self.artifacts],
            "failures": [f.to_dict() for f in self.failures],
            **({"speech_gate": self.speech_gate.to_dict()} if self.contract.audio is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "manifest") -> "Manifest":
        version = data.get("schema_version")
        if not isinstance(version, int):
            raise BundleError(f"{source}: no integer schema_version")
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{source}: schema version {version} is newer than this edgemm supports ({SCHEMA_VERSION}); upgrade edgemm"
            )
        try:
            contract = ModelContract.from_dict(data["contract"]) if version >= 2 else ModelContract.from_schema1(data)
            return cls(
                schema_version=version,
                model=dict(data["model"]),
                contract=contract,
                artifacts=[Artifact.from_dict(a) for a in data.get("artifacts", [])],
                failures=[Failure.from_dict(f) for f in data.get("failures", [])],
                speech_gate=SpeechGateConfig.from_dict(data.get("speech_gate")),
            )
        except ContractError as exc:
            raise BundleError(f"{source}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{source}: malformed manifest ({type(exc).__name__}: {exc})") from exc

    @classmethod
    def read(cls, bundle: Path) -> "Manifest":
        """Read and validate `bundle/manifest.json`."""
        bundle = Path(bundle)
        path = bundle / MANIFEST_NAME
        if not bundle.is_dir():
            raise BundleError(f"{bundle}: not a bundle folder")
        if not path.is_file():
            raise BundleError(f"{path}: missing (is {bundle} an edgemm bundle?)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{path}: unreadable manifest ({exc})") from exc
        if not isinstance(data, dict):
            raise BundleError(f"{path}: manifest is not a JSON object")
        return cls.from_dict(data, source=str(path))

    def artifact(self, file: str) -> Artifact:
        for art in self.artifacts:
            if art.file == file:
                return art
        raise BundleError(f"no artifact {file!r} in the manifest")
