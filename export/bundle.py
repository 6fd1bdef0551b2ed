"""Atomic bundle writing: stage a copy of the bundle, change it, then swap it into place."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from edgemm.runtimes.machine import this_machine, tool_versions
from edgemm.runtimes.manifest import (
    MANIFEST_NAME,
    Artifact,
    Manifest,
    sha256_file,
    write_json_atomic,
)

if TYPE_CHECKING:
    from .source import ExportSource


def new_manifest(source: "ExportSource") -> Manifest:
    """A manifest with no artifacts yet, holding `source`'s model contract."""
    return Manifest(model=dict(source.info), contract=source.contract)


def describe(staging: Path, file: str, fmt: str, precision: str, parts: tuple[str, ...] = (), **extra) -> Artifact:
    """An Artifact entry for a file (and its companion files) just written into the staging folder, with the
    versions of the tools that made it and the machine it was made on."""
    path = staging / file
    companions = [{"file": p, "sha256": sha256_file(staging / p), "bytes": (staging / p).stat().st_size} for p in parts]
    extra["made_with"] = {"tools": tool_versions(), "machine": this_machine().to_dict()}
    return Artifact(file=file, format=fmt, precision=precision, sha256=sha256_file(path), bytes=path.stat().st_size, extra=extra, parts=companions)


class BundleStage:
    """`with BundleStage(target, manifest) as stage:` — edit `stage.path`/`stage.manifest`, then `commit()`.

    The staging folder starts as a copy of the existing bundle (empty when `fresh` or new). Leaving the block without
    `commit()` (or with an exception) deletes the staging folder and leaves `target` untouched.
    """

    def __init__(self, target: str | Path, manifest: Manifest, fresh: bool = False) -> None:
        self.target = Path(target).resolve()
        self.manifest = manifest
        self.fresh = fresh
        self.path: Path | None = None

    def __enter__(self) -> "BundleStage":
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=self.target.parent, prefix=f".{self.target.name}.staging-"))
        if self.target.is_dir() and not self.fresh:
            shutil.copytree(self.target, self.path, dirs_exist_ok=True)
        return self

    def add(self, artifact: Artifact) -> None:
        """Record an artifact (replacing any entry for the same file) and flush the staged manifest."""
        self.manifest.artifacts = [a for a in self.manifest.artifacts if a.file != artifact.file] + [artifact]
        self.flush()

    def flush(self) -> None:
        """Write the manifest into the staging folder (so the runtime can load staged artifacts)."""
        assert self.path is not None
        write_json_atomic(self.path / MANIFEST_NAME, self.manifest.to_dict())

    def commit(self) -> Path:
        """Write the manifest and swap the staging folder into place."""
        self.flush()
        os.chmod(self.path, 0o755)
        old = None
        if self.target.exists():
            old = Path(tempfile.mkdtemp(dir=self.target.parent, prefix=f".{self.target.name}.old-"))
            os.replace(self.target, old / "bundle")
        os.replace(self.path, self.target)
        self.path = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.target

    def __exit__(self, *exc) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None
