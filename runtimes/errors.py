"""Typed errors of the runtime: each names the file, stream or input it is about."""
from __future__ import annotations

import importlib.metadata


class EdgemmError(Exception):
    """Base of every error edgemm reports to a user (the CLI prints it as one line)."""


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, for a manifest entry or a wrapped error."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


class BundleError(EdgemmError):
    """A bundle folder or its manifest is missing, unreadable or inconsistent."""


class SchemaVersionError(BundleError):
    """The manifest was written by a newer edgemm than this one."""


class ChecksumError(BundleError):
    """An artifact's bytes do not match the size or sha256 its manifest records."""


class ModelFileError(BundleError):
    """A model file exists but a backend cannot load it (corrupt, truncated, wrong format)."""


# packages no edgemm extra can install: where they come from instead
NOT_FROM_PIP = {"tensorrt": "it comes with JetPack on a Jetson (apt install python3-libnvinfer), elsewhere pip install tensorrt"}


DEVICE_DISTRIBUTION = "edgemm-device"  # the device install (device/pyproject.toml)


def installed_distribution() -> str:
    """The distribution edgemm came from: `edgemm-device` (the device install) or `edgemm` (the toolkit)."""
    try:
        importlib.metadata.distribution(DEVICE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "edgemm"
    return DEVICE_DISTRIBUTION


class BackendUnavailableError(EdgemmError):
    """The Python package a backend or reader needs is not installed."""

    def __init__(self, what: str, package: str, extra: str) -> None:
        hint = NOT_FROM_PIP.get(package, f"pip install '{installed_distribution()}[{extra}]'")
        super().__init__(f"{what} needs the '{package}' package: {hint}")
        self.package = package
        self.extra = extra


class DeviceUnavailableError(EdgemmError):
    """The accelerator a command needs (a CUDA GPU) is not on this machine."""


class InputError(EdgemmError, ValueError):
    """An image or audio input has the wrong shape, dtype or values (NaN/inf, empty)."""


class MediaReadError(EdgemmError):
    """An image or audio file cannot be read or decoded."""
