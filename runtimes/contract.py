"""The model contract: the one description of a model's interface, numpy only.

Which modalities the model takes — each with its input tensor name and preprocessing (`ImageSpec`,
`AudioSpec`) —, how a missing modality is fed (a presence-mask input, zeros, or not at all), what it
outputs (class scores with labels and/or an embedding, by tensor name) and whether the batch is dynamic.
It lives in the bundle manifest (schema 2); export, calibration, quantization, verification, the runtime
and the live app read it, and inside edgemm every stage works on one canonical form — (image, audio,
present) tensors in, {"logits", "embedding"} out — that the contract maps to and from the model's own names.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .errors import EdgemmError, InputError
from .modalities import MODALITIES, MODALITY_PATTERNS
from .preprocess import AudioSpec, ImageSpec

MISSING = {
    "presence-mask": "the absent modality's tensor is filled and its column of the mask input is 0; the model gates it off",
    "zeros": "the absent modality's tensor is filled (zeros by default); the model has no mask input",
    "required": "every modality must be present: the runtime refuses to answer without one",
}
OUTPUTS = ("logits", "embedding")  # the canonical output names inside edgemm


class ContractError(EdgemmError):
    """A contract that cannot describe a model: no modality, duplicate names, a spec without a rate, ..."""


@dataclass(frozen=True)
class ModelContract:
    """A model's interface; `image`/`audio` are None for a modality the model does not take."""

    image: ImageSpec | None = None
    audio: AudioSpec | None = None
    image_input: str = "image"
    audio_input: str = "audio"
    missing: str = "presence-mask"
    mask_input: str | None = "present"  # (N, 2) float: (image, audio) presence flags; presence-mask only
    fill: float = 0.0
    logits_output: str | None = "logits"
    embedding_output: str | None = "embedding"
    labels: tuple[str, ...] = ()
    embedding_dim: int | None = None
    dynamic_batch: bool = True
    image_layout: str = "NCHW"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # free-form notes for people (not read by edgemm)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ checks

    def validate(self) -> None:
        """Raise ContractError naming what is wrong."""
        if self.image is None and self.audio is None:
            raise ContractError("the contract declares no modality: give an image spec, an audio spec or both")
        if self.missing not in MISSING:
            raise ContractError(f"missing-modality convention {self.missing!r}: choose one of {', '.join(MISSING)}")
        if self.missing == "presence-mask" and not self.mask_input:
            raise ContractError("the presence-mask convention needs the mask input's name (mask_input)")
        if self.logits_output is None and self.embedding_output is None:
            raise ContractError("the contract declares no output: name the logits output, the embedding output or both")
        if self.logits_output is not None and not self.labels:
            raise ContractError(f"output {self.logits_output!r} gives class scores: list the labels")
        if len(set(self.labels)) != len(self.labels):
            raise ContractError(f"duplicate labels: {sorted({x for x in self.labels if self.labels.count(x) > 1})}")
        names = self.input_names + self.output_names
        if len(set(names)) != len(names):
            raise ContractError(f"duplicate tensor names: {sorted({n for n in names if names.count(n) > 1})}")
        if self.audio is not None and not (isinstance(self.audio.sample_rate, int) and self.audio.sample_rate > 0):
            raise ContractError(f"the audio spec needs a positive integer sample_rate, got {self.audio.sample_rate!r}")
        if self.audio is not None and self.audio.features not in ("log-mel", "waveform"):
            raise ContractError(f"audio features {self.audio.features!r}: log-mel or waveform")
        if self.image_layout not in ("NCHW", "NHWC"):
            raise ContractError(f"image layout {self.image_layout!r}: NCHW or NHWC")

    # ------------------------------------------------------------------ names and shapes

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if getattr(self, m) is not None)

    @property
    def input_names(self) -> list[str]:
        names = [self.image_input] if self.image is not None else []
        names += [self.audio_input] if self.audio is not None else []
        return names + ([self.mask_input] if self.missing == "presence-mask" else [])

    @property
    def output_names(self) -> list[str]:
        return [n for n in (self.logits_output, self.embedding_output) if n is not None]

    @property
    def patterns(self) -> dict[str, tuple[float, float]]:
        """The modality patterns a sample can reach this model in (canonical `present` rows)."""
        if len(self.modalities) == 1:
            return {f"{self.modalities[0]}_only": MODALITY_PATTERNS[f"{self.modalities[0]}_only"]}
        return {"fused": MODALITY_PATTERNS["fused"]} if self.missing == "required" else dict(MODALITY_PATTERNS)

    def input_shapes(self, batch: int | None = None) -> dict[str, list[int]]:
        """Each input's shape as the model takes it (-1 for a dynamic batch unless `batch` is given)."""
        n = batch if batch is not None else (-1 if self.dynamic_batch else 1)
        shapes = {}
        if self.image is not None:
            c, h, w = self.image.shape
            shapes[self.image_input] = [n, c, h, w] if self.image_layout == "NCHW" else [n, h, w, c]
        if self.audio is not None:
            shapes[self.audio_input] = [n, *self.audio.shape]
        if self.missing == "presence-mask":
            shapes[self.mask_input] = [n, 2]
        return shapes

    # ------------------------------------------------------------------ canonical form ↔ the model's tensors

    def feeds(self, image: np.ndarray, audio: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
        """The model's named inputs for canonical (image NCHW, audio, present) batches; absent modalities already filled."""
        if self.missing == "required":
            rows = present.astype(bool)
            for k, modality in enumerate(MODALITIES):
                if getattr(self, modality) is not None and not rows[:, k].all():
                    raise InputError(f"this model needs the {modality} input (its contract: {MISSING['required']})")
        feeds = {}
        if self.image is not None:
            feeds[self.image_input] = image if self.image_layout == "NCHW" else np.ascontiguousarray(image.transpose(0, 2, 3, 1))
        if self.audio is not None:
            feeds[self.audio_input] = audio
        if self.missing == "presence-mask":
            feeds[self.mask_input] = present
        return feeds

    def outputs(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's outputs under their canonical names (`logits`, `embedding`)."""
        try:
            return {canonical: raw[name] for canonical, name in zip(OUTPUTS, (self.logits_output, self.embedding_output)) if name is not None}
        except KeyError:
            missing = [n for n in self.output_names if n not in raw]
            raise ContractError(f"the model gave no output {', '.join(missing)} (it has {', '.join(raw) or 'none'})") from None

    def runner(self, run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> Callable[..., dict[str, np.ndarray]]:
        """A canonical `infer(image, audio, present)` over a backend's `run(named inputs) → named outputs`."""
        return lambda image, audio, present: self.outputs(run(self.feeds(image, audio, present)))

    # ------------------------------------------------------------------ manifest

    def to_dict(self) -> dict[str, Any]:
        modalities = {}
        if self.image is not None:
            modalities["image"] = {"input": self.image_input, "layout": self.image_layout, "preprocessing": self.image.to_dict()}
        if self.audio is not None:
            layout = "N1MT (log-mel: mels x frames)" if self.audio.features == "log-mel" else "N1T (waveform)"
            modalities["audio"] = {"input": self.audio_input, "layout": layout, "preprocessing": self.audio.to_dict()}
        return {
            "modalities": modalities,
            "missing_modality": {"convention": self.missing, "mask_input": self.mask_input if self.missing == "presence-mask" else None,
                                 "fill": self.fill, "description": MISSING[self.missing]},
            "outputs": {"logits": self.logits_output, "embedding": self.embedding_output, "embedding_dim": self.embedding_dim},
            "labels": list(self.labels),
            "batch": "dynamic" if self.dynamic_batch else 1,
            "inputs": [{"name": n, "shape": s, "dtype": "float32"} for n, s in self.input_shapes().items()],
            **({"extra": self.extra} if self.extra else {}),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelContract":
        """A contract from its manifest form (schema 2)."""
        try:
            mods, missing, outputs = data["modalities"], data["missing_modality"], data["outputs"]
            image, audio = mods.get("image"), mods.get("audio")
            return cls(
                image=ImageSpec.from_dict(image["preprocessing"]) if image else None,
                audio=AudioSpec.from_dict(audio["preprocessing"]) if audio else None,
                image_input=image["input"] if image else "image",
                audio_input=audio["input"] if audio else "audio",
                image_layout=image.get("layout", "NCHW") if image else "NCHW",
                missing=missing["convention"],
                mask_input=missing.get("mask_input"),
                fill=float(missing.get("fill", 0.0)),
                logits_output=outputs.get("logits"),
                embedding_output=outputs.get("embedding"),
                embedding_dim=outputs.get("embedding_dim"),
                labels=tuple(data.get("labels", ())),
                dynamic_batch=data.get("batch", "dynamic") == "dynamic",
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ContractError(f"malformed contract ({type(exc).__name__}: {exc})") from exc

    @classmethod
    def from_spec(cls, spec: dict[str, Any], source: str = "spec") -> "ModelContract":
        """A contract from the user's flat spec (`model.yaml`): image/audio blocks with `input` and preprocessing
        keys, `missing` (default presence-mask; `required` for a single-modality model), `mask_input`, `fill`,
        `outputs: {logits, embedding, embedding_dim}`, `labels`, `batch`.
        Unknown keys are refused by name (a typo must not silently fall back to a default)."""
        if not isinstance(spec, dict):
            raise ContractError(f"{source}: a model spec is a mapping, got {type(spec).__name__}")
        _only(spec, {"name", "image", "audio", "missing", "mask_input", "fill", "outputs", "labels", "batch", "extra"}, source)
        image, audio, outputs = spec.get("image"), spec.get("audio"), spec.get("outputs") or {}
        kwargs: dict[str, Any] = {}
        if image is not None:
            block = _block(image, "image", {"input", "layout"} | {f.name for f in fields(ImageSpec)}, source)
            kwargs.update(image=ImageSpec.from_dict(block), image_input=block.get("input", "image"), image_layout=block.get("layout", "NCHW"))
        if audio is not None:
            block = _block(audio, "audio", {"input"} | {f.name for f in fields(AudioSpec)}, source)
            if "sample_rate" not in block:
                raise ContractError(f"{source}: the audio spec needs sample_rate (Hz): the rate the model was trained at")
            kwargs.update(audio=AudioSpec.from_dict(block), audio_input=block.get("input", "audio"))
        _block(outputs, "outputs", {"logits", "embedding", "embedding_dim"}, source)
        missing = spec.get("missing", "presence-mask" if image is not None and audio is not None else "required")
        try:
            return cls(
                **kwargs, missing=missing, mask_input=spec.get("mask_input", "present") if missing == "presence-mask" else None,
                fill=float(spec.get("fill", 0.0)), logits_output=outputs.get("logits"), embedding_output=outputs.get("embedding"),
                embedding_dim=outputs.get("embedding_dim"), labels=tuple(str(x) for x in spec.get("labels") or ()),
                dynamic_batch=spec.get("batch", "dynamic") == "dynamic", extra=dict(spec.get("extra") or {}),
            )  # fmt: skip
        except (ContractError, TypeError, ValueError) as exc:
            raise ContractError(f"{source}: {exc}") from exc

    @classmethod
    def from_schema1(cls, data: dict[str, Any]) -> "ModelContract":
        """The contract of an edgemm 0.1 manifest (the built-in interface: image, audio, present → logits, embedding)."""
        pre, missing = data["preprocessing"], data["missing_modality"]
        embedding = next((o for o in data.get("outputs", []) if o.get("name") == "embedding"), {})
        dim = embedding.get("shape", [None, None])[-1]
        return cls(
            image=ImageSpec.from_dict(pre["image"]), audio=AudioSpec.from_dict(pre["audio"]), missing=missing.get("convention", "presence-mask"),
            mask_input=missing.get("mask_input", "present"), fill=float(missing.get("fill", 0.0)), labels=tuple(data["labels"]),
            embedding_dim=dim if isinstance(dim, int) and dim > 0 else None,
        )  # fmt: skip


def _block(value: Any, name: str, known: set[str], source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ContractError(f"{source}: {name} must be a mapping, got {type(value).__name__}")
    _only(value, known, f"{source}: {name}")
    return value


def _only(block: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(block) - known)
    if unknown:
        raise ContractError(f"{where}: unknown key {', '.join(map(repr, unknown))} (known: {', '.join(sorted(known))})")
