"""`load_bundle`: a bundle's best verified artifact behind `predict(image=..., audio=...)`."""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import compress
from pathlib import Path
from typing import Any

import numpy as np

from .backends import (
    BACKENDS,
    Backend,
    BackendInfo,
    backend_for,
    format_backend,
    preference,
)
from .backends.tensorrt_backend import EngineMismatchError
from .errors import (
    BackendUnavailableError,
    BundleError,
    ChecksumError,
    EdgemmError,
    InputError,
)
from .gallery import EnrollmentError, Gallery, enroll_folder
from .machine import this_machine
from .manifest import Artifact, Manifest
from .modalities import MODALITIES
from .preprocess import preprocess_audio, preprocess_image
from .speech_gate import SpeechDecision, SpeechGate
from .target_check import (
    CheckStore,
    TargetCheck,
    failed_check,
    log,
    reference_digest,
    reference_of,
    run_check,
)


@dataclass
class Prediction:
    """One answer: the label — the top class, or with enrolled examples the nearest one's label (None for an
    embedding model without any: it answers with its vector; None too when the speech gate left nothing to answer
    from) —, its scores, the embedding, the inputs used, the speech gate's decision on the audio, timings."""

    label: str | None
    index: int  # into the model's labels (the enrolled labels with a gallery); -1 without a label
    probabilities: np.ndarray | None  # class probabilities; None for a model without class scores
    embedding: np.ndarray | None  # None when the model has no embedding output
    modalities: tuple[str, ...]  # the inputs the answer comes from; () when nothing was left to answer from
    preprocess_ms: float
    inference_ms: float
    similarities: np.ndarray | None = None  # with enrolled examples: cosine to the nearest example of each label
    # the speech gate's decision, or what makes it when first read (`speech`): predict() needs it only with the gate on
    _speech: SpeechDecision | Callable[[], SpeechDecision] | None = field(default=None, repr=False)

    @property
    def speech(self) -> SpeechDecision | None:
        """The speech gate's decision on the audio given (None without audio). With the gate off the answer does not
        depend on it, so `predict` leaves it to be made here, when first read (~10 µs), from the features it kept."""
        if callable(self._speech):
            self._speech = self._speech()
        return self._speech

    @property
    def scores(self) -> np.ndarray | None:
        """What the label was chosen by: similarities to enrolled examples, else class probabilities."""
        return self.similarities if self.similarities is not None else self.probabilities

    @property
    def confidence(self) -> float:
        return float(self.scores[self.index]) if self.label is not None else float("nan")

    @property
    def gated(self) -> bool:
        """Audio was given, held no speech, and the speech gate left it out of the answer."""
        return self.speech is not None and not self.speech.speech and "audio" not in self.modalities

    def to_dict(self) -> dict:
        answer: dict = {"label": self.label, "index": self.index}
        if self.label is not None:
            answer["confidence"] = self.confidence
        for name, values in (("probabilities", self.probabilities), ("similarities", self.similarities)):
            if values is not None:
                answer[name] = [round(float(v), 6) for v in values]
        if self.label is None and self.embedding is not None:
            answer["embedding"] = [float(v) for v in self.embedding]
        if self.speech is not None:
            answer["speech_gate"] = {**self.speech.to_dict(), "gated": self.gated}
        return {**answer, "modalities": list(self.modalities), "preprocess_ms": round(self.preprocess_ms, 3), "inference_ms": round(self.inference_ms, 3)}


FLOAT32 = np.dtype(np.float32)
SMALL_ROW = 64  # one row of at most this many scores is done in Python floats (see softmax)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, float32 (the row's maximum subtracted first: stable), in place in one new array.

    One short row (a live answer's ten class scores) is done in Python floats: after an inference call has evicted
    numpy's code from the caches, each of the five numpy calls below costs ~5 µs, more than the arithmetic."""
    if logits.ndim == 2 and logits.shape[0] == 1 and logits.shape[-1] <= SMALL_ROW:
        row = logits[0].tolist()
        top = max(row)
        e = [math.exp(v - top) for v in row]
        total = math.fsum(e)
        return np.array([[v / total for v in e]], np.float32)
    e = np.subtract(logits, logits.max(axis=-1, keepdims=True), dtype=np.float32)
    np.exp(e, out=e)
    e /= e.sum(axis=-1, keepdims=True)
    return e


class BundleModel:
    """A loaded bundle: one artifact on one backend, fed and read through the bundle's model contract."""

    def __init__(self, bundle: Path, manifest: Manifest, artifact: Artifact, backend: Backend) -> None:
        self.bundle = bundle
        self.manifest = manifest
        self.contract = manifest.contract
        self.artifact = artifact
        self.backend = backend
        self.gallery: Gallery | None = None
        self.speech_gate = SpeechGate(manifest.speech_gate, self.contract.audio) if self.contract.audio is not None else None
        c = self.contract  # canonical tensor shapes per sample; (0,) for a modality the model does not take
        self._shapes = {"image": c.image.shape if c.image else (0,), "audio": c.audio.shape if c.audio else (0,), "present": (2,)}
        for kind, named, has in (("inputs", self.contract.input_names, backend.input_names), ("outputs", self.contract.output_names, backend.output_names)):
            missing = sorted(set(named) - set(has))
            if missing:
                raise BundleError(f"{bundle / artifact.file}: the model has no {kind} {missing} that its contract names (it has {list(has)})")

    def __repr__(self) -> str:
        return f"BundleModel({self.bundle}, {self.artifact.file}, backend={self.backend.name})"

    @property
    def labels(self) -> list[str]:
        """The labels answers come from: the enrolled ones with a gallery, else the model's classes."""
        return list(self.gallery.labels) if self.gallery is not None else self.manifest.labels

    def enroll(self, folder: str | Path, warn: Callable[[str], None] = log.warning) -> Gallery:
        """Embed the labelled examples of `FOLDER/<label>/` with this artifact; from then on answers are the label of
        the nearest enrolled example (cosine). Needs a model with an embedding output."""
        if self.contract.embedding_output is None:
            raise EnrollmentError(f"{self.bundle}: the model has no embedding output to compare enrolled examples with")
        c = self.contract  # an example's file of a modality the model does not take is left out

        def embed(image: np.ndarray | None, audio: np.ndarray | None, rate: int | None) -> np.ndarray:
            return self._run(*self.tensors([image if c.image else None], [audio if c.audio else None], rate))["embedding"][0]

        self.gallery = enroll_folder(folder, embed, warn)
        return self.gallery

    def set_speech_gate(self, **settings: Any) -> SpeechGate:
        """Change the speech gate's settings (`threshold_db`, `floor_dbfs`, `flatness_db`, `live`, `predict`) for this
        session, the bundle left as it is; a value out of range is a SpeechGateError naming it and its range."""
        if self.speech_gate is None:
            raise InputError(f"{self.bundle}: the model takes no audio: there is no speech gate to set")
        self.speech_gate = self.speech_gate.replace(**settings)
        return self.speech_gate

    def infer(self, image: np.ndarray, audio: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
        """Run preprocessed canonical batches — image (B,C,H,W), audio (B,1,M,T) or (B,1,samples), present (B,2),
        float32, absent modalities already filled — and return `logits` / `embedding` (those the model has)."""
        batch, (i, a, p) = present.shape[:1], self._shapes.values()  # (one comparison per tensor when they are right)
        if image.shape != batch + i or audio.shape != batch + a or present.shape != batch + p or not image.dtype == audio.dtype == present.dtype == FLOAT32:
            for (name, shape), arr in zip(self._shapes.items(), (image, audio, present)):
                if arr.dtype != FLOAT32 or arr.shape != batch + shape:
                    raise InputError(f"{name} tensor: expected float32 {batch + shape}, got {arr.dtype} {arr.shape}")
        return self._run(image, audio, present)

    def _run(self, image: np.ndarray, audio: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
        """`infer` without its checks, for batches `tensors` made."""
        return self.contract.outputs(self.backend.run(self.contract.feeds(image, audio, present)))

    def tensors(
        self, images: Sequence, audios: Sequence, sample_rate: int | None, color_order: str = "RGB", audio_features: Sequence | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Preprocess raw inputs (None where a modality is missing) into canonical (image, audio, present).
        `audio_features` holds, per sample, the model's audio tensor already computed (a streaming front-end) or None."""
        return self._tensors(images, audios, sample_rate, color_order, audio_features)[:3]

    def _tensors(
        self, images: Sequence, audios: Sequence, sample_rate: int | None, color_order: str, audio_features: Sequence | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray | None]]:
        """`tensors`, and per sample the energies of a log-mel computed here from raw audio (what the speech gate
        reads), else None."""
        c, shapes, n = self.contract, self._shapes, len(images)
        keep = self.speech_gate is not None and c.audio.features == "log-mel"
        energies: list[np.ndarray | None] = [None] * n
        image = np.empty((n, *shapes["image"]), np.float32)  # every row written below: preprocessed, or the fill
        audio = np.empty((n, *shapes["audio"]), np.float32)
        present = np.zeros((n, 2), np.float32)
        for i, (img, aud, feats) in enumerate(zip(images, audios, [None] * n if audio_features is None else audio_features)):
            if feats is not None and (aud is not None or c.audio is None or feats.shape != c.audio.shape or feats.dtype != np.float32):
                raise InputError(f"sample {i}: audio features must replace the audio and be float32 {c.audio.shape if c.audio else '(no audio input)'}, "
                                 f"got {feats.dtype} {feats.shape}")  # fmt: skip
            if img is None and aud is None and feats is None:
                raise InputError(f"sample {i}: give an image, audio or both")
            for modality, given in (("image", img), ("audio", aud)):
                if given is not None and getattr(c, modality) is None:
                    raise InputError(f"sample {i}: this model takes no {modality} (its inputs: {', '.join(c.modalities)})")
            if aud is not None and sample_rate is None:
                raise InputError("audio given without its sample_rate")
            if img is not None:
                preprocess_image(img, c.image, color_order, name=f"image[{i}]", out=image[i])
                present[i, 0] = 1
            else:
                image[i] = c.fill
            if feats is not None:
                audio[i], present[i, 1] = feats, 1
            elif aud is not None:
                energies[i] = np.empty(shapes["audio"], np.float32) if keep else None
                preprocess_audio(aud, sample_rate, c.audio, name=f"audio[{i}]", out=audio[i], energies=energies[i])
                present[i, 1] = 1
            else:
                audio[i] = c.fill
        return image, audio, present, energies

    def _hear(
        self, audio: np.ndarray, present: np.ndarray, gate_on: bool | None, energies: list[np.ndarray | None]
    ) -> tuple[list[SpeechDecision | Callable[[], SpeechDecision] | None], list[bool]]:
        """The speech gate's decision on each sample's audio (from its log-mel's `energies` where `_tensors` kept
        them), and which samples are left with nothing the model can answer from. With the gate on (`gate_on`, else
        the bundle's `predict` setting), audio without speech is left out in place: its presence flag cleared, its
        tensor filled. With it off, each decision is left to be made when it is read: a call on the sample's own
        tensors, which nothing writes to after this."""
        n, gate = len(present), self.speech_gate
        silent = [False] * n
        if gate is None:
            return [None] * n, silent
        if not (gate.config.predict if gate_on is None else gate_on):
            return [partial(gate.decide, audio[i], energies[i]) if present[i, 1] else None for i in range(n)], silent
        decisions: list[SpeechDecision | None] = [gate.decide(audio[i], energies[i]) if present[i, 1] else None for i in range(n)]
        for i, decision in enumerate(decisions):
            if decision is not None and not decision.speech:
                present[i, 1], audio[i] = 0, self.contract.fill
                silent[i] = not present[i, 0] or self.contract.missing == "required"  # the model cannot answer without it
        return decisions, silent

    def predict_batch(
        self,
        images: Sequence[np.ndarray | None] | None = None,
        audios: Sequence[np.ndarray | None] | None = None,
        sample_rate: int | None = None,
        color_order: str = "RGB",
        audio_features: Sequence[np.ndarray | None] | None = None,
        speech_gate: bool | None = None,
    ) -> list[Prediction]:
        """Predict a batch; either list may be None, or hold None where that modality is missing. `audio_features`:
        per sample, the model's audio tensor from a streaming front-end (`edgemm.runtimes.live.StreamFrontEnd`)
        instead of raw audio. Each sample's audio gets the speech gate's decision (`Prediction.speech`); with the gate
        on (`speech_gate`, default: the bundle's `predict` setting) audio without speech is left out: the answer comes
        from the image alone, or, with nothing left to answer from, has no label and no modalities."""
        if images is None and audios is None and audio_features is None:
            raise InputError("give images, audios or both")
        n = len(images if images is not None else audios if audios is not None else audio_features)
        images = list(images) if images is not None else [None] * n
        audios = list(audios) if audios is not None else [None] * n
        if len(images) != len(audios) or audio_features is not None and len(audio_features) != n:
            raise InputError(f"{len(images)} images but {len(audios)} audio clips" + (f" and {len(audio_features)} audio features" if audio_features is not None else ""))
        t0 = time.perf_counter()
        image, audio, present, energies = self._tensors(images, audios, sample_rate, color_order, audio_features)
        speech, silent = self._hear(audio, present, speech_gate, energies)
        run = [i for i in range(n) if not silent[i]]
        t1 = time.perf_counter()
        if len(run) < n:  # only the samples with something to answer from
            image, audio, present = image[run], audio[run], present[run]
        out = self._run(image, audio, present) if len(run) else {}
        t2 = time.perf_counter()
        probs = softmax(out["logits"]) if "logits" in out else None
        sims = self.gallery.similarities(out["embedding"]) if self.gallery is not None and len(run) else None
        scores, labels, per = sims if sims is not None else probs, self.labels, 1000.0 / max(n, 1)
        results, rows, flags = [], iter(range(len(run))), present.tolist()  # the model's batch row of each sample it answered
        for i in range(n):
            if silent[i]:
                results.append(Prediction(None, -1, None, None, (), (t1 - t0) * per, 0.0, _speech=speech[i]))
                continue
            j = next(rows)
            idx = int(scores[j].argmax()) if scores is not None else -1
            used = tuple(compress(MODALITIES, flags[j]))
            results.append(Prediction(
                labels[idx] if idx >= 0 else None, idx, None if probs is None else probs[j], out["embedding"][j] if "embedding" in out else None,
                used, (t1 - t0) * per, (t2 - t1) * per, None if sims is None else sims[j], speech[i],
            ))  # fmt: skip
        return results

    def predict(
        self,
        image: np.ndarray | None = None,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        color_order: str = "RGB",
        audio_features: np.ndarray | None = None,
        speech_gate: bool | None = None,
    ) -> Prediction:
        """Predict from a raw uint8 image (HxW or HxWx3) and/or raw mono audio at `sample_rate` (or the audio's
        model tensor already computed, `audio_features`). `speech_gate`: leave out audio without speech (default:
        the bundle's `predict` setting); the gate's decision is in `Prediction.speech` either way."""
        return self.predict_batch([image], [audio], sample_rate, color_order, [audio_features], speech_gate)[0]


class NoUsableArtifactError(BundleError):
    """No artifact of a bundle may run here: the message names each candidate and why it was refused."""


def _explicit(manifest: Manifest, backend: str, artifact: str) -> tuple[Artifact, BackendInfo]:
    art = manifest.artifact(artifact)
    infos = [backend_for(backend)] if backend != "auto" else [b for b in BACKENDS.values() if art.format in b.formats]
    info = next((b for b in infos if art.format in b.formats), None)
    if info is None:
        raise BundleError(f"backend {backend!r} cannot run {art.format} artifact {art.file}")
    return art, info


def _candidates(manifest: Manifest, bundle: Path, backend: str, precision: str | None) -> tuple[list[tuple[Artifact, BackendInfo]], list[str]]:
    """Artifacts verified at export that an installed backend can run, most preferred first, and why the others
    were refused."""
    wanted = [a for a in manifest.artifacts if precision in (None, a.precision)]
    verified = [a for a in wanted if a.verified]
    refused = [f"{a.file}: failed verification at export ({a.failure})" for a in wanted if not a.verified]
    if not verified:
        raise BundleError(f"{bundle}: no {precision + ' ' if precision else ''}artifact passed verification" + (f": {'; '.join(refused)}" if refused else ""))
    if backend != "auto":
        order = [backend_for(backend)]
        if not order[0].installed():
            raise BackendUnavailableError(f"the {backend} backend", order[0].package, order[0].extra)
    else:
        order = [BACKENDS[name] for name in preference()]
    candidates = [(a, info) for info in order if info.installed() for a in verified if a.format in info.formats]
    chosen = {a.file for a, _ in candidates}
    for art in (a for a in verified if a.file not in chosen):
        info = next((b for b in order if art.format in b.formats), None)
        refused.append(f"{art.file}: {BackendUnavailableError('it', info.package, info.extra)}" if info else f"{art.file}: not a {backend} artifact")
    if not candidates and backend == "auto":
        info = format_backend(verified[0].format)
        raise BackendUnavailableError(f"running {bundle}'s {verified[0].format} artifact", info.package, info.extra)
    return candidates, refused


def _open(bundle: Path, manifest: Manifest, art: Artifact, info: BackendInfo, threads: int | None, device: str | None) -> BundleModel:
    file = art.check_file(bundle)
    if art.format == "tensorrt":
        from .backends.tensorrt_backend import check_engine_target, current_target

        check_engine_target(file, bundle, art.extra.get("tensorrt", {}), current_target())
    return BundleModel(bundle, manifest, art, info.open(file, threads=threads, device=device))


def load_bundle(
    path: str | Path,
    backend: str = "auto",
    artifact: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    device: str | None = None,
    self_check: bool = True,
) -> BundleModel:
    """Open a bundle: read the manifest, pick a verified artifact, check its sha256, start its backend.

    `backend="auto"` picks the most preferred installed backend that can run a verified artifact;
    `precision="int8"` restricts the choice to verified artifacts of that precision;
    `artifact="model.onnx"` forces one file (even an unverified one, e.g. for `edgemm verify`).
    An artifact that failed its check on this machine class is never chosen. With `self_check` (default),
    the chosen artifact is first run on the bundle's reference samples when this machine class has no
    record of it (about a second, once: the result is kept in `BUNDLE/checks/`, or the user cache when the
    bundle is read-only); if it fails here, the next candidate is tried, with one log line saying why.
    """
    bundle = Path(path)
    manifest = Manifest.read(bundle)
    if artifact is not None:
        return _open(bundle, manifest, *_explicit(manifest, backend, artifact), threads, device)
    candidates, refused = _candidates(manifest, bundle, backend, precision)
    store, reference, reference_sha, machine = CheckStore(bundle), None, reference_digest(bundle, manifest), this_machine()
    here = f"this CPU ({machine.cpu}, {machine.int8_kernels})"
    for art, info in candidates:
        known = store.lookup(art, reference_sha, info.name, device) if reference_sha else None
        if known is not None and not known.passed:
            refused.append(f"{art.file}: failed verification on {here}: {known.reason}")
            log.warning(f"edgemm: not using {art.file}: it failed its check on this machine class ({known.reason}; {known.checked_by} {known.checked_at})")
            continue
        try:
            model = _open(bundle, manifest, art, info, threads, device)
        except (BackendUnavailableError, EngineMismatchError) as exc:  # a TensorRT engine with no GPU, or built for another one
            refused.append(f"{art.file}: {exc}")
            continue
        except ChecksumError:
            raise  # a damaged bundle is reported, never worked around
        except EdgemmError as exc:  # this machine's backend cannot load it
            check = failed_check(art, reference_sha or "", info.name, device, f"cannot load here: {exc}", "self-check")
        else:
            if known is not None or not self_check or not reference_sha:
                return model
            reference = reference or reference_of(bundle, manifest)
            check = run_check(bundle, model.infer, art, reference, reference_sha, info.name, device, "self-check")
        where = _record(store, check)
        if check.passed:
            return model
        refused.append(f"{art.file}: failed verification on {here}: {check.reason}")
        log.warning(f"edgemm: not using {art.file}: it failed its first check on {here}: {check.reason}{where}")
    raise NoUsableArtifactError(f"{bundle}: no usable {precision + ' ' if precision else ''}artifact" + (f" for the {backend} backend" if backend != "auto" else "")
                                + f" on this machine ({machine.cpu}): " + "; ".join(refused))  # fmt: skip


def _record(store: CheckStore, check: TargetCheck) -> str:
    """Keep a check; where no record can be written (read-only bundle and cache), say so and go on with it."""
    try:
        return f" (recorded in {store.save([check])})"
    except BundleError as exc:
        log.warning(f"edgemm: {exc}; the check of {check.file} is not kept")
        return ""
