"""edgemm's torch-free runtime: read a bundle, preprocess raw camera/microphone data, run a backend.

Imports numpy and, lazily, the backend package of the artifact it runs; never torch.
"""
from .errors import (
    BackendUnavailableError,
    BundleError,
    ChecksumError,
    EdgemmError,
    InputError,
    MediaReadError,
    ModelFileError,
    SchemaVersionError,
)
from .manifest import SCHEMA_VERSION, Artifact, Manifest
from .model import BundleModel, Prediction, load_bundle
from .preprocess import AudioSpec, ImageSpec, preprocess_audio, preprocess_image

__all__ = [
    "SCHEMA_VERSION",
    "Artifact",
    "AudioSpec",
    "BackendUnavailableError",
    "BundleError",
    "BundleModel",
    "ChecksumError",
    "EdgemmError",
    "ImageSpec",
    "InputError",
    "Manifest",
    "MediaReadError",
    "ModelFileError",
    "Prediction",
    "SchemaVersionError",
    "load_bundle",
    "preprocess_audio",
    "preprocess_image",
]
