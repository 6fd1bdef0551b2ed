"""Microphone sources writing into an `AudioRing`: a sounddevice `InputStream` (device by index or name
substring), or an audio file played in real time as if it were a microphone. Both keep the source's
own sample rate (mono); the live front-end (features.py) resamples as the audio arrives."""
from __future__ import annotations

import threading
from pathlib import Path

from ..errors import BackendUnavailableError
from ..preprocess import to_mono_float
from .clock import Timeline, backoff_s
from .errors import SourceUnavailableError
from .ring import AudioRing

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}
DEAD_AFTER_S = 0.5  # no audio for this long: the microphone counts as dead


def sounddevice():
    """The sounddevice module; a one-line error when it or the PortAudio library is missing."""
    try:
        import sounddevice as sd
    except ImportError as exc:
        raise BackendUnavailableError("the microphone source", "sounddevice", "app") from exc
    except OSError as exc:  # sounddevice imports fine but cannot load libportaudio
        raise SourceUnavailableError("microphone: the PortAudio library is missing: install the libportaudio2 package (apt install libportaudio2)") from exc
    return sd


class AudioSource:
    """What the pipeline needs of a microphone: its ring buffer, whether audio is arriving, counters."""

    def __init__(self, name: str, timeline: Timeline, sample_rate: int, ring_seconds: float = 4.0) -> None:
        self.name = name
        self.timeline = timeline
        self.ring = AudioRing(sample_rate, ring_seconds)
        self.reopens = 0
        self.ended = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        end = self.ring.end_us
        return end is not None and not self.ended and self.timeline.now() - end <= DEAD_AFTER_S * 1e6

    @property
    def overflows(self) -> int:
        return self.ring.overflows

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


class FileMicrophone(AudioSource):
    """An audio file (any rate; stereo mixed down) fed to the ring block by block on the timeline:
    in real time, or in step with a virtual timeline."""

    def __init__(self, path: str | Path, timeline: Timeline, block_ms: float = 20.0, loop: bool = False) -> None:
        from ..media import read_audio

        path = Path(path)
        if not path.is_file():
            raise SourceUnavailableError(f"microphone {path}: no such file")
        audio, rate = read_audio(path)
        self.samples = to_mono_float(audio, name=str(path))
        super().__init__(str(path), timeline, rate)
        self.block = max(1, int(rate * block_ms / 1000))
        self.loop = loop

    def start(self, allow_missing: bool = False) -> None:
        self._t0 = self.timeline.now()
        self._thread = threading.Thread(target=self._run, name="edgemm-mic-file", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rate, pos, offset = self.ring.sample_rate, 0, 0
        while not (self._stop.is_set() or self.timeline.stopped):
            if pos >= len(self.samples):
                if not self.loop:
                    break
                offset, pos = offset + len(self.samples), 0
            block = self.samples[pos : pos + self.block]
            start_us, end_us = (self._t0 + round((offset + pos + n) * 1e6 / rate) for n in (0, len(block)))
            # in real time a block is written when its last sample's time has come; on a virtual timeline (a recording
            # as fast as possible) once the video reaches its first, so all audio up to a frame's time is there when
            # the frame is answered: the answers depend on the recording alone, never on the threads' timing
            if not self.timeline.sleep_until(start_us if self.timeline.virtual else end_us):
                break
            self.ring.write(block, end_us, contiguous=True)  # a loop restarts the file, not the stream
            pos += len(block)
        self.ended = True
        self.ring.finish()


class MicrophoneSource(AudioSource):
    """A sounddevice `InputStream` writing each block into the ring from PortAudio's callback; overflows
    counted; a stream that errors or goes silent is reopened with backoff."""

    def __init__(self, device: str | int | None, timeline: Timeline, sample_rate: int | None = None, block: int = 320) -> None:
        sd = sounddevice()
        self.device = resolve_device(device)
        try:
            info = sd.query_devices(self.device, "input")
        except (ValueError, sd.PortAudioError) as exc:
            raise SourceUnavailableError(f"microphone {device if device is not None else '(default)'}: no input device ({exc})") from exc
        rate = int(sample_rate or info["default_samplerate"])
        super().__init__(str(info["name"]), timeline, rate)
        self.block = block
        self._stream = None
        self._latency_us = 0

    def open(self) -> bool:
        sd = sounddevice()
        try:
            self._stream = sd.InputStream(device=self.device, channels=1, samplerate=self.ring.sample_rate, blocksize=self.block,
                                          dtype="float32", callback=self._callback)  # fmt: skip
            self._stream.start()
        except (sd.PortAudioError, ValueError):
            self._stream = None
            return False
        self._latency_us = int(float(self._stream.latency) * 1e6)  # ADC → callback delay PortAudio reports
        return True

    def _callback(self, indata, frames, time_info, status) -> None:
        if status.input_overflow:
            self.ring.overflows += 1
        # stamped when the block's last sample was captured; PortAudio's blocks follow each other unless it overflowed
        self.ring.write(indata[:, 0], self.timeline.now() - self._latency_us, contiguous=not status.input_overflow)

    def start(self, allow_missing: bool = False) -> None:
        if not self.open() and not allow_missing:
            raise SourceUnavailableError(f"microphone {self.name}: cannot be opened; check the device, or use --allow-missing")
        self._thread = threading.Thread(target=self._watch, name="edgemm-mic", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        """Reopen the stream with backoff whenever it stops delivering audio."""
        failures = 0
        while not self._stop.wait(backoff_s(failures)):
            if self.alive:
                failures = 0
                continue
            self._close()
            failures += 1
            self.ring.mark_break("the microphone was reopened")
            if self.open():
                self.reopens += 1
        self._close()

    def _close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except Exception:  # a device that vanished may fail to close; it is gone either way
                pass
            self._stream = None


def resolve_device(device: str | int | None) -> int | None:
    """A device index from an index or a case-insensitive name substring (None: the default input)."""
    if device is None or isinstance(device, int):
        return device
    if str(device).isdigit():
        return int(device)
    sd = sounddevice()
    matches = [i for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0 and str(device).lower() in d["name"].lower()]
    if not matches:
        raise SourceUnavailableError(f"microphone {device!r}: no input device with that name (see --list-devices)")
    return matches[0]


def list_microphones() -> list[str]:
    """Input devices sounddevice sees, as 'index: name (rate Hz)'."""
    sd = sounddevice()
    return [f"{i}: {d['name']} ({int(d['default_samplerate'])} Hz)" for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]


def open_microphone(spec: str | None, timeline: Timeline, loop: bool = False, sample_rate: int | None = None, block: int = 320) -> AudioSource:
    """An audio file path → FileMicrophone; anything else (index, name, None for the default) → MicrophoneSource
    (at `sample_rate`, default the device's own, in blocks of `block` samples)."""
    if spec is not None and Path(spec).suffix.lower() in AUDIO_SUFFIXES:
        return FileMicrophone(spec, timeline, loop=loop)
    return MicrophoneSource(spec, timeline, sample_rate, block)
