"""Offline spoken-digit synthesis with espeak-ng (the `espeakng-loader` wheel, in-process via ctypes).

espeak-ng is GPL-3.0: it is used only here, to *generate* training data (the `data` extra),
never by the runtime.
"""
from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import tempfile
import threading
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class Voice:
    """One espeak voice setting: file id (with optional `+variant`), words/minute, pitch and range (0-100)."""

    name: str
    rate: int = 160
    pitch: int = 50
    range: int = 50


class Espeak:
    """A process-wide espeak-ng synthesiser that renders words straight to int16 numpy arrays."""

    _lock = threading.Lock()
    _instance: "Espeak | None" = None

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("speech synthesis needs espeakng-loader: pip install 'edgemm[data]'") from exc
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.restype = ctypes.c_int
        rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0
        )
        if rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: ctypes does not
        self._lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> "Espeak":
        """The shared instance (espeak-ng keeps global state, so there is only one)."""
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _collect(self, wav, n, _events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def say(self, text: str, voice: Voice) -> np.ndarray:
        """Synthesise `text` with `voice`; int16 mono at `self.sample_rate`."""
        with self._lock:
            if self._lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice.name!r}")
            for param, value in ((_PARAM_RATE, voice.rate), (_PARAM_PITCH, voice.pitch), (_PARAM_RANGE, voice.range)):
                self._lib.espeak_SetParameter(param, int(value), 0)
            self._chunks = []
            # breathy voices (+f2, +whisperf, ...) draw noise from espeak's generator, seeded from the clock
            seed = zlib.crc32(f"{text}|{voice}".encode())
            self._lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
            data = text.encode() + b"\0"
            self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, 0, None, None)
            self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def synthesize_fresh(batches: list[list[tuple[str, Voice]]]) -> list[tuple[int, list[np.ndarray]]]:
    """Say each batch of (text, voice) in its own fresh Python process, in parallel; per batch (sample rate, int16 clips).

    espeak-ng keeps state between utterances that no API resets (pitch flutter, wave phase: the same
    word said twice differs in samples and length), so a clip depends on everything said before it in
    the process; from a fresh process each batch is a pure function of its requests. (A plain subprocess,
    not multiprocessing: that would re-import the caller's main script.)"""
    with tempfile.TemporaryDirectory(prefix="edgemm-speech-") as tmp:
        jobs = []
        for k, batch in enumerate(batches):
            out = Path(tmp) / f"{k}.npz"
            proc = subprocess.Popen([sys.executable, "-m", __name__, str(out)], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
            jobs.append((proc, out, json.dumps([[text, asdict(voice)] for text, voice in batch]).encode()))
        results = []
        for proc, out, requests in jobs:
            _, err = proc.communicate(requests)
            if proc.returncode != 0:
                raise RuntimeError(f"speech synthesis failed: {err.decode(errors='replace').strip().splitlines()[-1:]}")
            with np.load(out) as data:
                results.append((int(data["rate"]), [data[f"clip{i}"] for i in range(len(data.files) - 1)]))
        return results


def _main(out: str) -> None:
    requests = json.loads(sys.stdin.buffer.read())
    tts = Espeak.get()
    clips = {f"clip{i}": tts.say(text, Voice(**voice)) for i, (text, voice) in enumerate(requests)}
    np.savez(out, rate=tts.sample_rate, **clips)


if __name__ == "__main__":
    _main(sys.argv[1])
