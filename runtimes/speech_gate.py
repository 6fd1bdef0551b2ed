"""The speech gate: is there speech in an audio window? An energy/spectral voice-activity detector in numpy.

It reads what the model already has — the normalised log-mel window (a waveform model's clip gets a log-mel of its
own) — and looks at the energy of each 10 ms frame in the speech band (300-4000 Hz), smoothed over 50 ms. A window
holds speech when
  - its loudest frames (95th percentile) reach `floor_dbfs` (else: silence),
  - its speech-band spectrum is not narrow: spectral flatness (geometric over arithmetic mean of the mel bands'
    energy over the window) of at least `flatness_db` (else: tonal — a tone, a hum, a rumble), and
  - its frame energy moves: 95th minus 10th percentile of at least `threshold_db` (else: a steady sound — fan, hiss).
Speech comes in syllables; steady noise, tones and hum do not. Levels are dBFS of a sine of equal power (a
full-scale sine is 0 dBFS). The settings are in the bundle's manifest (`speech_gate`); `BundleModel.predict` reports the decision
and, when the gate is on, leaves out audio without speech (an image-only answer, or "nothing heard" without an image).
Defaults tuned with bench/speech_gate.py.
"""
from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from .errors import InputError
from .preprocess import AudioSpec, log_mel, mel_filterbank

SPEECH_BAND_HZ = (300.0, 4000.0)
SMOOTH_FRAMES = 5  # frame energies are averaged over 5 hops (50 ms): noise flickers less, syllables stay
LOW_PERCENTILE, HIGH_PERCENTILE = 10, 95  # the window's quiet and loud frames
MIN_LEVEL_DBFS = -100.0  # levels are reported down to here (below: digital silence)
MIN_FLATNESS_DB = -60.0  # bands more than 60 dB under the strongest count as 60 dB under it
_LEAST_RATIO = 10 ** (MIN_FLATNESS_DB / 10)


class SpeechGateError(InputError):
    """A speech-gate setting outside its valid range."""


# field: (low, high, low included, high included, unit) — each setting's valid range
RANGES = {
    "threshold_db": (0.0, 40.0, False, True, "dB"),
    "floor_dbfs": (MIN_LEVEL_DBFS, 0.0, True, False, "dBFS"),
    "flatness_db": (MIN_FLATNESS_DB, 0.0, True, False, "dB"),
}


def _in_range(value: Any, low: float, high: float, low_in: bool, high_in: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return (low <= value if low_in else low < value) and (value <= high if high_in else value < high)


@dataclass(frozen=True)
class SpeechGateConfig:
    """The gate's settings, kept in the bundle's manifest. `live`: on in the live app; `predict`: on in
    `BundleModel.predict` (its decision is reported either way)."""

    threshold_db: float = 6.0  # speech-band frame energy range (95th − 10th percentile) needed, in (0, 40] dB
    floor_dbfs: float = -70.0  # level the loudest frames must reach, in [-100, 0) dBFS
    flatness_db: float = -30.0  # speech-band spectral flatness under which a sound is tonal, in [-60, 0) dB
    live: bool = True
    predict: bool = False

    def __post_init__(self) -> None:
        for name, (low, high, low_in, high_in, unit) in RANGES.items():
            value = getattr(self, name)
            if not _in_range(value, low, high, low_in, high_in):
                span = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
                raise SpeechGateError(f"speech gate {name} = {value!r} is outside its range {span} {unit}")
        for name in ("live", "predict"):
            if not isinstance(getattr(self, name), bool):
                raise SpeechGateError(f"speech gate {name} = {getattr(self, name)!r}: true or false")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """The rule in a few words."""
        return f"speech when the loudest frames reach {self.floor_dbfs:g} dBFS, flatness ≥ {self.flatness_db:g} dB, range ≥ {self.threshold_db:g} dB"

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "SpeechGateConfig":
        """From its manifest form; absent keys (an older bundle) take the defaults, unknown ones are ignored."""
        if data is not None and not isinstance(data, dict):
            raise SpeechGateError(f"speech gate settings must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})


@dataclass(frozen=True)
class SpeechDecision:
    """The gate's verdict on one window and what it measured."""

    speech: bool
    range_db: float  # speech-band frame energy, 95th − 10th percentile
    level_dbfs: float  # speech-band level of the loudest frames (95th percentile)
    flatness_db: float  # speech-band spectral flatness over the window
    reason: str  # "speech", "silence (...)", "tonal (...)", "steady sound (...)"

    def to_dict(self) -> dict[str, Any]:
        return {"speech": self.speech, "reason": self.reason, "range_db": round(self.range_db, 1), "level_dbfs": round(self.level_dbfs, 1),
                "flatness_db": round(self.flatness_db, 1)}  # fmt: skip


def gate_spec(spec: AudioSpec) -> AudioSpec:
    """The log-mel the gate reads for a model's audio spec: the model's own for a log-mel model; for a waveform
    model, 40 mel bands of 25 ms frames every 10 ms at its rate."""
    if spec.features == "log-mel":
        return spec
    rate = spec.sample_rate
    win = round(0.025 * rate)
    return AudioSpec(sample_rate=rate, clip_seconds=spec.clip_seconds, n_fft=1 << (win - 1).bit_length(), win_length=win,
                     hop_length=round(0.010 * rate), fmax=min(8000.0, rate / 2), log_floor=1e-10)  # fmt: skip


class SpeechGate:
    """Decides, from a model's audio tensor, whether its window holds speech (see the module's doc)."""

    def __init__(self, config: SpeechGateConfig, spec: AudioSpec) -> None:
        self.config, self.model_spec = config, spec
        self.spec = mel = gate_spec(spec)
        bank = mel_filterbank(mel.sample_rate, mel.n_fft, mel.n_mels, mel.fmin, mel.fmax)
        centres = np.fft.rfftfreq(mel.n_fft, 1 / mel.sample_rate)[bank.argmax(axis=0)]
        band = np.flatnonzero((centres >= SPEECH_BAND_HZ[0]) & (centres <= SPEECH_BAND_HZ[1]))
        self.bands = slice(band[0], band[-1] + 1) if len(band) >= 2 else slice(None)  # a spec without the band: all of it
        window = np.hanning(mel.win_length + 1)[:-1]
        full_scale = mel.n_fft * float(np.sum(window**2)) / 4  # a full-scale sine's power over the bins (mel filters sum to 1)
        # a normalised log-mel value x holds log(power + log_floor) = x * std + mean
        self._scale, self._gain, self._floor = np.float32(mel.std), math.exp(mel.mean), mel.log_floor
        smooth = min(SMOOTH_FRAMES, mel.frames)
        self._kernel = np.ones(smooth, np.float32)
        self._ones = np.ones(max(mel.n_mels, mel.frames), np.float32)
        self._tiny = full_scale * smooth * 10 ** (MIN_LEVEL_DBFS / 10)
        self._db_offset = 10 * math.log10(full_scale * smooth)  # a smoothed energy sums `smooth` frames
        self._lo, self._hi = (round(q / 100 * (mel.frames - smooth)) for q in (LOW_PERCENTILE, HIGH_PERCENTILE))

    def replace(self, **changes: Any) -> "SpeechGate":
        """The same gate with some settings changed (checked: a value out of range is a SpeechGateError)."""
        return SpeechGate(replace(self.config, **changes), self.model_spec)

    def _dbfs(self, energy: float) -> float:
        return 10 * math.log10(max(energy, self._tiny)) - self._db_offset

    def decide(self, tensor: np.ndarray, energies: np.ndarray | None = None) -> SpeechDecision:
        """The decision for one sample's audio tensor as the model takes it: (1, n_mels, frames) normalised log-mel,
        or (1, samples) waveform. `energies`: a log-mel's exp(tensor * std), where the caller has them from the
        log-mel itself (`preprocess_audio(energies=...)`): read instead of taking the exp again."""
        if self.spec is not self.model_spec:
            tensor, energies = log_mel(tensor, self.spec)[0], None
        if energies is not None:
            power = energies[0, self.bands]
        else:
            x = tensor[0, self.bands]
            power = np.exp(x if self._scale == 1 else x * self._scale)  # (bands, frames): (power + log_floor) / gain
        n_bands, n_frames = power.shape
        frames = np.sort(np.convolve(np.dot(self._ones[:n_bands], power), self._kernel, "valid"))  # (np.dot: a sum, faster)
        floor = len(self._kernel) * n_bands * self._floor
        low, level = self._dbfs(frames.item(self._lo) * self._gain - floor), self._dbfs(frames.item(self._hi) * self._gain - floor)
        # flatness of the bands' energies over the window, (sum * gain - n_frames * floor): scale-free, so taken of
        # them over the strongest one, those under MIN_FLATNESS_DB counted at it
        sums = np.dot(power, self._ones[:n_frames]).tolist()
        shift = n_frames * self._floor / self._gain
        top = 1 / max(max(sums) - shift, self._tiny / self._gain)
        ratios = [r if (r := (v - shift) * top) > _LEAST_RATIO else _LEAST_RATIO for v in sums]
        product = math.prod(ratios)  # one log of the product (each ratio ≥ 1e-6: a normal float up to 50 bands), else a sum of logs
        logs = math.log10(product) if product >= sys.float_info.min else math.fsum(map(math.log10, ratios))
        flatness = 10 * (logs / n_bands - math.log10(sum(ratios) / n_bands))
        c = self.config
        if level < c.floor_dbfs:
            reason = f"silence (loudest frames {level:.0f} dBFS < floor {c.floor_dbfs:g})"
        elif flatness < c.flatness_db:
            reason = f"tonal (spectral flatness {flatness:.0f} dB < {c.flatness_db:g}: a tone, hum or rumble)"
        elif level - low < c.threshold_db:
            reason = f"steady sound (range {level - low:.1f} dB < {c.threshold_db:g})"
        else:
            reason = "speech"
        return SpeechDecision(reason == "speech", level - low, level, flatness, reason)
