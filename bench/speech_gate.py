"""Speech-gate benchmark: pass/reject rates of `edgemm.runtimes.speech_gate` on a generated set of 1 s windows, and
its cost per decision.

Speech: spoken digits (espeak-ng, many voices and prosodies) at random offsets — clean from −50 to −3 dBFS peak, in
white/pink/brown noise at 10-30 dB SNR (active speech level), telephone band (8 kHz, 300-3400 Hz), clipped, with a
DC offset. Non-speech: digital silence, microphone self-noise, steady white/pink/brown noise, tones, mains hum with
harmonics, a tone in noise, low-passed fan noise, and stereo speech out of phase (which mixes down to silence).
Reported apart (no target): speech in heavy noise (−6-3 dB SNR), beeps (a tone switched on and off inside the
window: not steady, so only the flatness rule can reject it) and the av-digits test split (light and heavy audio;
loading it builds the data set once, minutes).
Each window goes the way `predict` takes it (`preprocess_audio` at its rate, then the gate on the log-mel tensor).

    .venv/bin/python bench/speech_gate.py [--seed 0] [--per-condition 200] [--no-dataset] [--sweep]

`--sweep` prints pass/reject rates as each setting varies around the defaults (tune on another seed than you report).
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from edgemm.runtimes.preprocess import AudioSpec, log_mel, preprocess_audio, resample
from edgemm.runtimes.speech_gate import SpeechGate, SpeechGateConfig

from edgemm.compare import render_targets
from edgemm.data.speech import DIGIT_WORDS, Espeak, Voice
from edgemm.data.voices import BASES, VARIANTS, voice_name
from edgemm.tables import format_table

RATE = 16000
N = RATE  # 1 s windows
Window = tuple[np.ndarray, int]  # audio (any dtype/shape predict takes), its sample rate


def db(x: float) -> float:
    return 10 ** (x / 20)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-20)


def words(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Spoken digits at 16 kHz, trimmed, peak 1: random voice (base + variant), rate, pitch and range."""
    voices = [voice_name(b, v) for b in BASES for v in VARIANTS]
    espeak, out = Espeak.get(), []
    for _ in range(count):
        voice = Voice(str(rng.choice(voices)), int(rng.integers(110, 230)), int(rng.integers(15, 85)), int(rng.integers(10, 90)))
        pcm = espeak.say(str(rng.choice(DIGIT_WORDS)), voice).astype(np.float32) / 32768
        loud = np.flatnonzero(np.abs(pcm) > 0.02 * np.abs(pcm).max())
        pcm = resample(pcm[loud[0] : loud[-1] + 1], espeak.sample_rate, RATE)
        out.append(pcm / np.abs(pcm).max())
    return out


def noise(rng: np.random.Generator, colour: str, n: int = N) -> np.ndarray:
    """Unit-RMS white, pink (1/f) or brown (1/f²) noise."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.maximum(np.arange(len(spectrum)), 1) ** {"white": 0.0, "pink": 0.5, "brown": 1.0}[colour]
    x = np.fft.irfft(spectrum, n)
    return x / rms(x)


def band(x: np.ndarray, low: float, high: float, rate: int = RATE) -> np.ndarray:
    """Brick-wall band-pass (FFT mask)."""
    spectrum = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / rate)
    spectrum[(f < low) | (f > high)] = 0
    return np.fft.irfft(spectrum, len(x))


def tone(rng: np.random.Generator, freq: float, n: int = N) -> np.ndarray:
    return np.sqrt(2) * np.sin(2 * np.pi * freq * np.arange(n) / RATE + rng.uniform(0, 2 * np.pi))  # unit RMS


class Maker:
    """The windows of one seed: each condition draws from `rng` and a pool of spoken words."""

    def __init__(self, seed: int, pool: int = 300) -> None:
        self.rng = np.random.default_rng(seed)
        self.pool = words(self.rng, pool)

    def placed(self) -> tuple[np.ndarray, slice]:
        """A word at a random offset in a 1 s window (peak 1), and where it is."""
        word = self.pool[self.rng.integers(len(self.pool))][:N]
        start = int(self.rng.integers(0, N - len(word) + 1))
        out = np.zeros(N)
        out[start : start + len(word)] = word
        return out, slice(start, start + len(word))

    def colour(self) -> str:
        return str(self.rng.choice(["white", "pink", "brown"]))

    def speech(self, low: float = -50, high: float = -3) -> np.ndarray:
        return self.placed()[0] * db(self.rng.uniform(low, high))

    def in_noise(self, low: float, high: float) -> np.ndarray:
        """Speech at −40…−6 dBFS peak in noise at `low`…`high` dB below its active level."""
        x, where = self.placed()
        x *= db(self.rng.uniform(-40, -6))
        return x + noise(self.rng, self.colour()) * rms(x[where]) * db(-self.rng.uniform(low, high))

    def conditions(self) -> dict[str, tuple[str, Callable[[], Window]]]:
        """name → (kind: "speech" | "non-speech" | "report", a window maker)."""
        r = self.rng
        return {
            "speech, clean, −50…−3 dBFS peak": ("speech", lambda: (self.speech(), RATE)),
            "speech in noise, SNR 10…30 dB": ("speech", lambda: (self.in_noise(10, 30), RATE)),
            "speech, telephone band (8 kHz, 300-3400 Hz)": ("speech", lambda: (resample(band(self.speech(-40, -3), 300, 3400), RATE, 8000), 8000)),
            "speech, clipped (+6…+20 dB over full scale)": ("speech", lambda: (np.clip(self.speech(6, 20), -1, 1), RATE)),
            "speech, DC offset ±0.05…0.3": ("speech", lambda: (self.speech(-40, -6) + r.choice([-1, 1]) * r.uniform(0.05, 0.3), RATE)),
            "speech, int16, −50…−3 dBFS peak": ("speech", lambda: ((self.speech() * 32767).astype(np.int16), RATE)),
            "digital silence": ("non-speech", lambda: (np.zeros(N, r.choice([np.float32, np.int16])), RATE)),
            "mic self-noise, −80…−55 dBFS": ("non-speech", lambda: (noise(r, self.colour()) * db(r.uniform(-80, -55)), RATE)),
            "white noise, −60…−6 dBFS": ("non-speech", lambda: (noise(r, "white") * db(r.uniform(-60, -6)), RATE)),
            "pink noise, −60…−6 dBFS": ("non-speech", lambda: (noise(r, "pink") * db(r.uniform(-60, -6)), RATE)),
            "brown noise, −60…−6 dBFS": ("non-speech", lambda: (noise(r, "brown") * db(r.uniform(-60, -6)), RATE)),
            "pure tone, 100-4000 Hz, −50…−6 dBFS": ("non-speech", lambda: (tone(r, np.exp(r.uniform(np.log(100), np.log(4000)))) * db(r.uniform(-50, -6)), RATE)),
            "mains hum, 50/60 Hz + harmonics": ("non-speech", lambda: (self.hum() * db(r.uniform(-50, -10)), RATE)),
            "tone in noise (noise 0-20 dB below)": ("non-speech", lambda: (self.tone_in_noise() * db(r.uniform(-50, -10)), RATE)),
            "fan noise, low-passed at 150-1000 Hz (24 dB/oct)": ("non-speech", lambda: (self.fan() * db(r.uniform(-50, -10)), RATE)),
            "stereo speech, channels out of phase": ("non-speech", lambda: (np.stack([x := self.speech(-40, -3), -x], 1).astype(np.float32), RATE)),
            "speech in heavy noise, SNR −6…3 dB": ("report", lambda: (self.in_noise(-3, 6), RATE)),
            "beeps: a tone for 0.1-0.6 s (should be rejected)": ("report", lambda: (self.beep() * db(r.uniform(-40, -6)), RATE)),
        }  # fmt: skip

    def hum(self) -> np.ndarray:
        f0, k = float(self.rng.choice([50, 60])), np.arange(1, 21)
        amps = k ** -self.rng.uniform(0.5, 2.0) * (self.rng.uniform(0.3, 1, 20) if self.rng.random() < 0.5 else 1)
        x = sum(a * tone(self.rng, f0 * h) for a, h in zip(amps, k))
        return x / rms(x)

    def tone_in_noise(self) -> np.ndarray:
        x = tone(self.rng, np.exp(self.rng.uniform(np.log(100), np.log(4000)))) + noise(self.rng, self.colour()) * db(-self.rng.uniform(0, 20))
        return x / rms(x)

    def beep(self) -> np.ndarray:
        """A tone switched on and off inside the window, over a quiet room."""
        length = int(self.rng.uniform(0.1, 0.6) * RATE)
        start = int(self.rng.integers(0, N - length))
        x = noise(self.rng, "pink") * db(-50)
        x[start : start + length] += tone(self.rng, np.exp(self.rng.uniform(np.log(300), np.log(4000))), length)
        return x

    def fan(self) -> np.ndarray:
        """White noise through a 4th-order low-pass at 150-1000 Hz, half the time with the blades' tone."""
        spectrum = np.fft.rfft(noise(self.rng, "white"))
        x = np.fft.irfft(spectrum / (1 + (np.fft.rfftfreq(N, 1 / RATE) / self.rng.uniform(150, 1000)) ** 4), N)
        if self.rng.random() < 0.5:  # the blades' tone
            x = x / rms(x) + tone(self.rng, self.rng.uniform(80, 300)) * db(-self.rng.uniform(0, 15))
        return x / rms(x)


def dataset_windows() -> dict[str, list[Window]]:
    from edgemm.data.avdigits import load_split

    test = load_split("test")
    return {"av-digits test, light audio (SNR 0-20 dB)": [(a, RATE) for a in test.audio[~test.heavy_audio]],
            "av-digits test, heavy audio (SNR −6-3 dB + a louder digit)": [(a, RATE) for a in test.audio[test.heavy_audio]]}  # fmt: skip


def tensors(windows: list[Window], spec: AudioSpec) -> list[np.ndarray]:
    """Each window as `predict` gives it to the gate: preprocessed at its rate to the model's audio tensor."""
    return [preprocess_audio(audio, rate, spec) for audio, rate in windows]


def verdicts(gate: SpeechGate, batch: list[np.ndarray]) -> np.ndarray:
    return np.array([gate.decide(t).speech for t in batch])


def cost_us(gate: SpeechGate, batch: list[np.ndarray], repeats: int = 5) -> float:
    """Median over repeats of the mean µs per `decide` call."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for t in batch:
            gate.decide(t)
        runs.append((time.perf_counter() - t0) / len(batch) * 1e6)
    return float(np.median(runs))


def sweep(gate: SpeechGate, sets: dict[str, tuple[str, list[np.ndarray]]]) -> None:
    """Pass/reject rates as each setting varies (the others at their defaults), and the measures' spread."""
    speech = [t for kind, batch in sets.values() if kind == "speech" for t in batch]
    other = [t for kind, batch in sets.values() if kind == "non-speech" for t in batch]
    grids = {"threshold_db": [3, 4, 5, 6, 7, 8, 10, 12], "floor_dbfs": [-90, -80, -75, -70, -65, -60], "flatness_db": [-40, -35, -32, -30, -28, -25, -20]}
    for name, values in grids.items():
        rows = []
        for v in values:
            g = gate.replace(**{name: v})
            rows.append([v, f"{100 * verdicts(g, speech).mean():.2f} %", f"{100 * (1 - verdicts(g, other).mean()):.2f} %"])
        print(format_table([name, "speech passed", "non-speech rejected"], rows, f"sweep of {name}") + "\n")
    for kind, batch in (("speech", speech), ("non-speech", other)):
        d = [gate.decide(t) for t in batch]
        m = np.array([(x.range_db, x.level_dbfs, x.flatness_db) for x in d])
        print(format_table([f"{kind}: percentile", "range dB", "level dBFS", "flatness dB"],
                           [[q, *(f"{np.percentile(m[:, k], q):.1f}" for k in range(3))] for q in (0, 1, 5, 50, 95, 99, 100)]) + "\n")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-condition", type=int, default=200)
    parser.add_argument("--no-dataset", action="store_true", help="skip the av-digits test split rows")
    parser.add_argument("--sweep", action="store_true", help="print pass/reject rates as each setting varies")
    args = parser.parse_args()
    spec = AudioSpec()
    gate = SpeechGate(SpeechGateConfig(), spec)
    maker = Maker(args.seed)
    sets = {name: (kind, tensors([make() for _ in range(args.per_condition)], spec)) for name, (kind, make) in maker.conditions().items()}
    if not args.no_dataset:
        sets.update({name: ("report", tensors(windows, spec)) for name, windows in dataset_windows().items()})
    if args.sweep:
        sweep(gate, sets)
    rows, totals = [], {"speech": [], "non-speech": [], "report": []}
    for name, (kind, batch) in sets.items():
        ok = verdicts(gate, batch)
        totals[kind].append(ok)
        rows.append([name, kind, len(ok), f"{100 * ok.mean():.1f} %", f"{100 * (1 - ok.mean()):.1f} %"])
    c = gate.config
    print(format_table(["condition", "kind", "windows", "passed", "rejected"], rows,
                       f"bench/speech_gate.py: seed {args.seed}; threshold {c.threshold_db:g} dB, floor {c.floor_dbfs:g} dBFS, flatness {c.flatness_db:g} dB"))  # fmt: skip
    waveform = SpeechGate(c, AudioSpec(features="waveform"))
    clips = [maker.speech()[None].astype(np.float32) for _ in range(200)]
    costs = {"log-mel model (40x98 window)": cost_us(gate, [log_mel(x, spec)[0] for x in clips]), "waveform model (log-mel of the 1 s clip first)": cost_us(waveform, clips)}
    print()
    print(format_table(["µs per decision", "median"], [[k, f"{v:.1f}"] for k, v in costs.items()]))
    speech, other = np.concatenate(totals["speech"]), np.concatenate(totals["non-speech"])
    print()
    print(render_targets([
        ("speech windows passed ≥ 99 %", f"{100 * speech.mean():.2f} % of {len(speech)}", speech.mean() >= 0.99),
        ("silence/noise windows rejected ≥ 95 %", f"{100 * (1 - other.mean()):.2f} % of {len(other)}", 1 - other.mean() >= 0.95),
        ("cost per decision < 30 µs (40x98 log-mel)", f"{costs['log-mel model (40x98 window)']:.1f} µs", costs["log-mel model (40x98 window)"] < 30),
    ]))  # fmt: skip


if __name__ == "__main__":
    main()
