"""`load_bundle`: a bundle's best verified artifact behind `predict(image=..., audio=...)`."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import BACKENDS, Backend, BackendInfo, auto_order, backend_for
from .errors import BackendUnavailableError, BundleError, InputError
from .manifest import Artifact, Manifest
from .preprocess import preprocess_audio, preprocess_image

MODALITIES = ("image", "audio")
# The `present` rows of the three ways a sample can reach the model; shared by training, calibration,
# verification and reports.
MODALITY_PATTERNS = {"fused": (1.0, 1.0), "image_only": (1.0, 0.0), "audio_only": (0.0, 1.0)}


@dataclass
class Prediction:
    """One answer: the label, class probabilities, fused embedding, which inputs were used, timings."""

    label: str
    index: int
    probabilities: np.ndarray
    embedding: np.ndarray
    modalities: tuple[str, ...]
    preprocess_ms: float
    inference_ms: float

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "index": self.index,
            "confidence": float(self.probabilities[self.index]),
            "probabilities": [round(float(p), 6) for p in self.probabilities],
            "modalities": list(self.modalities),
            "preprocess_ms": round(self.preprocess_ms, 3),
            "inference_ms": round(self.inference_ms, 3),
        }


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 for stable probabilities."""
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


class BundleModel:
    """A loaded bundle: preprocessing from the manifest, one artifact, one backend."""

    def __init__(self, bundle: Path, manifest: Manifest, artifact: Artifact, backend: Backend) -> None:
        self.bundle = bundle
        self.manifest = manifest
        self.artifact = artifact
        self.backend = backend
        self.labels = manifest.labels
        missing = {"image", "audio", "present"} - set(backend.input_names)
        if missing:
            raise BundleError(f"{bundle / artifact.file}: model lacks inputs {sorted(missing)}")

    def __repr__(self) -> str:
        return f"BundleModel({self.bundle}, {self.artifact.file}, backend={self.backend.name})"

    def infer(self, image: np.ndarray, audio: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
        """Run preprocessed batches: image (B,C,H,W), audio (B,1,M,T), present (B,2) float32."""
        batch = image.shape[0]
        for name, arr, shape in (
            ("image", image, self.manifest.image.shape),
            ("audio", audio, self.manifest.audio.shape),
            ("present", present, (2,)),
        ):
            if arr.dtype != np.float32 or arr.shape != (batch, *shape):
                raise InputError(f"{name} tensor: expected float32 {(batch, *shape)}, got {arr.dtype} {arr.shape}")
        return self.backend.run({"image": image, "audio": audio, "present": present})

    def tensors(
        self, images: Sequence, audios: Sequence, sample_rate: int | None, color_order: str = "RGB"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Preprocess raw inputs (None where a modality is missing) into the model's (image, audio, present)."""
        img_spec, aud_spec = self.manifest.image, self.manifest.audio
        fill = float(self.manifest.missing_modality.get("fill", 0.0))
        n = len(images)
        image = np.full((n, *img_spec.shape), fill, np.float32)
        audio = np.full((n, *aud_spec.shape), fill, np.float32)
        present = np.zeros((n, 2), np.float32)
        for i, (img, aud) in enumerate(zip(images, audios)):
            if img is None and aud is None:
                raise InputError(f"sample {i}: give an image, audio or both")
            if img is not None:
                image[i] = preprocess_image(img, img_spec, color_order, name=f"image[{i}]")
                present[i, 0] = 1
            if aud is not None:
                if sample_rate is None:
                    raise InputError("audio given without its sample_rate")
                audio[i] = preprocess_audio(aud, sample_rate, aud_spec, name=f"audio[{i}]")
                present[i, 1] = 1
        return image, audio, present

    def predict_batch(
        self,
        images: Sequence[np.ndarray | None] | None = None,
        audios: Sequence[np.ndarray | None] | None = None,
        sample_rate: int | None = None,
        color_order: str = "RGB",
    ) -> list[Prediction]:
        """Predict a batch; either list may be None, or hold None where that modality is missing."""
        if images is None and audios is None:
            raise InputError("give images, audios or both")
        n = len(images if images is not None else audios)
        images = list(images) if images is not None else [None] * n
        audios = list(audios) if audios is not None else [None] * n
        if len(images) != len(audios):
            raise InputError(f"{len(images)} images but {len(audios)} audio clips")
        t0 = time.perf_counter()
        image, audio, present = self.tensors(images, audios, sample_rate, color_order)
        t1 = time.perf_counter()
        out = self.infer(image, audio, present)
        t2 = time.perf_counter()
        probs = softmax(out["logits"])
        per = 1000.0 / max(n, 1)
        results = []
        for i in range(n):
            idx = int(probs[i].argmax())
            used = tuple(m for m, flag in zip(MODALITIES, present[i]) if flag)
            results.append(
                Prediction(self.labels[idx], idx, probs[i], out["embedding"][i], used, (t1 - t0) * per, (t2 - t1) * per)
            )
        return results

    def predict(
        self,
        image: np.ndarray | None = None,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        color_order: str = "RGB",
    ) -> Prediction:
        """Predict from a raw uint8 image (HxW or HxWx3) and/or raw mono audio at `sample_rate`."""
        return self.predict_batch([image], [audio], sample_rate, color_order)[0]


def _choose(manifest: Manifest, bundle: Path, backend: str, artifact: str | None, precision: str | None) -> tuple[Artifact, BackendInfo]:
    if artifact is not None:
        art = manifest.artifact(artifact)
        infos = [backend_for(backend)] if backend != "auto" else [b for b in BACKENDS.values() if art.format in b.formats]
        info = next((b for b in infos if art.format in b.formats), None)
        if info is None:
            raise BundleError(f"backend {backend!r} cannot run {art.format} artifact {art.file}")
        return art, info
    verified = [a for a in manifest.artifacts if a.verified and precision in (None, a.precision)]
    if not verified:
        raise BundleError(f"{bundle}: no {precision + ' ' if precision else ''}artifact passed verification")
    candidates = [backend_for(backend)] if backend != "auto" else auto_order()
    if backend != "auto" and not candidates[0].installed():
        raise BackendUnavailableError(f"the {backend} backend", candidates[0].package, candidates[0].extra)
    for info in candidates:
        for art in verified:
            if art.format in info.formats:
                return art, info
    formats = sorted({a.format for a in verified})
    for info in BACKENDS.values():
        if set(info.formats) & set(formats):
            raise BackendUnavailableError(f"running {bundle}'s {info.formats[0]} artifact", info.package, info.extra)
    raise BundleError(f"{bundle}: no backend knows the formats {formats}")


def load_bundle(
    path: str | Path,
    backend: str = "auto",
    artifact: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    device: str | None = None,
) -> BundleModel:
    """Open a bundle: read the manifest, pick a verified artifact, check its sha256, start its backend.

    `backend="auto"` picks the most preferred installed backend that can run a verified artifact;
    `precision="int8"` restricts the choice to verified artifacts of that precision;
    `artifact="model.onnx"` forces one file (even an unverified one, e.g. for `edgemm verify`).
    """
    bundle = Path(path)
    manifest = Manifest.read(bundle)
    art, info = _choose(manifest, bundle, backend, artifact, precision)
    file = art.check_file(bundle)
    if art.format == "tensorrt":
        from .backends.tensorrt_backend import check_engine_target, current_target

        check_engine_target(file, bundle, art.extra.get("tensorrt", {}), current_target())
    return BundleModel(bundle, manifest, art, info.open(file, threads=threads, device=device))
