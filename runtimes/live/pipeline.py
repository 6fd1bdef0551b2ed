"""The live pipeline: camera → newest-frame slot → audio window ending at the frame's time → preprocess →
backend → sinks, with at most one inference in flight. A dead camera gives audio-only answers, a dead
microphone image-only ones, while the sources reopen themselves."""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..model import BundleModel, Prediction
from .camera import CameraSource, Frame
from .clock import Timeline, now_us
from .features import AudioWindow, StreamFrontEnd
from .flow import LatestSlot
from .microphone import AudioSource

Sink = Callable[["LiveEvent"], None]
log = logging.getLogger("edgemm")


@dataclass
class LiveEvent:
    """One answer: when its input was captured, what it used, how long it took."""

    t_ms: float  # capture time on the stream's timeline, from its start
    frame_index: int | None  # None for an audio-only answer
    prediction: Prediction
    latency_ms: float  # capture → result
    skew_ms: float | None  # video time − end of the audio window used (positive: audio behind)
    audio_level_db: float | None
    image: np.ndarray | None = field(default=None, repr=False)  # the frame, for display sinks

    def to_dict(self) -> dict:
        return {
            "t_ms": round(self.t_ms, 3),
            "frame": self.frame_index,
            **self.prediction.to_dict(),
            "latency_ms": round(self.latency_ms, 3),
            "av_skew_ms": None if self.skew_ms is None else round(self.skew_ms, 3),
            "audio_level_db": None if self.audio_level_db is None else round(self.audio_level_db, 1),
        }


FILE_MIC_WAIT_S = 10.0  # fast playback: how long an answer waits for a file microphone to reach its frame (a hang guard)
RECENT = 9000  # answers kept for the latency/skew percentiles: 5 minutes at 30 fps
DEPTH_SECONDS = 3600  # seconds of queue-depth history kept


def percentile(values, q: float) -> float | None:
    return float(np.percentile(np.fromiter(values, float), q)) if values else None


@dataclass
class LiveSummary:
    """What a run did, for the periodic status line, the exit report and the benchmarks."""

    seconds: float = 0.0
    frames: int = 0
    answers: int = 0
    audio_only: int = 0  # answers from the audio alone
    image_only: int = 0  # answers from the image alone (no live audio, or its window held no speech)
    gated: int = 0  # answers whose audio window held no speech and was left out (the speech gate)
    speech_gate: bool = False  # whether the gate was on
    drops: int = 0
    bad_timestamps: int = 0
    mic_overflows: int = 0
    camera_reopens: int = 0
    mic_reopens: int = 0
    audio_restarts: int = 0  # breaks in the microphone's audio (gap, out-of-order block, reopen): features restarted
    max_queue_depth: int = 0
    # recent values only (a device runs for weeks: nothing here may grow without bound)
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT), repr=False)
    skew_ms: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT), repr=False)
    skew_max_ms: float | None = None
    interrupted: bool = False
    live_accuracy: float | None = None  # set by the app when the stream has ground truth
    offline_accuracy: float | None = None

    def to_dict(self) -> dict:
        s = max(self.seconds, 1e-9)
        return {
            "seconds": round(self.seconds, 2),
            "input_fps": round(self.frames / s, 2),
            "inference_fps": round(self.answers / s, 2),
            "latency_p50_ms": percentile(self.latency_ms, 50),  # over the last RECENT answers
            "latency_p95_ms": percentile(self.latency_ms, 95),
            "drops": self.drops,
            "bad_timestamps": self.bad_timestamps,
            "mic_overflows": self.mic_overflows,
            "av_skew_p50_ms": percentile([abs(v) for v in self.skew_ms], 50),
            "av_skew_max_ms": self.skew_max_ms,
            "answers": self.answers,
            "audio_only_answers": self.audio_only,
            "image_only_answers": self.image_only,
            "speech_gate": self.speech_gate,
            "gated_answers": self.gated,
            "camera_reopens": self.camera_reopens,
            "mic_reopens": self.mic_reopens,
            "audio_restarts": self.audio_restarts,
            "max_queue_depth": self.max_queue_depth,
            "interrupted": self.interrupted,
            "live_accuracy": self.live_accuracy,
            "offline_accuracy": self.offline_accuracy,
        }

    def line(self) -> str:
        d = self.to_dict()

        def ms(v):
            return "-" if v is None else f"{v:.1f}"

        return (f"in {d['input_fps']:.1f} fps, inference {d['inference_fps']:.1f}/s, latency p50 {ms(d['latency_p50_ms'])} ms "
                f"p95 {ms(d['latency_p95_ms'])} ms, drops {self.drops}, mic overflows {self.mic_overflows}, "
                f"A/V skew p50 {ms(d['av_skew_p50_ms'])} ms, audio restarts {self.audio_restarts}, answers {self.answers} (audio-only {self.audio_only}, image-only {self.image_only}"
                + (f"; no speech heard in {self.gated})" if self.speech_gate else "; speech gate off)"))  # fmt: skip


class LivePipeline:
    """Runs a bundle on a camera and/or a microphone until a duration, the end of file sources, or `stop()`."""

    def __init__(
        self,
        model: BundleModel,
        timeline: Timeline,
        camera: str | None = None,
        mic: AudioSource | None = None,
        sinks: list[Sink] = (),
        realtime: bool = True,
        loop: bool = False,
        audio_only_hz: float = 10.0,
        status: Callable[[str], None] | None = None,
        status_every_s: float = 5.0,
        speech_gate: bool | None = None,
    ) -> None:
        """`speech_gate`: leave out audio windows without speech (default: the bundle's `live` setting)."""
        self.model = model
        self.timeline = timeline
        self.slot: LatestSlot[Frame] = LatestSlot()
        self.camera = CameraSource(camera, timeline, self._on_frame, realtime, loop) if camera is not None else None
        self.mic = mic
        self.sinks = list(sinks)
        self.audio_only_period = 1.0 / audio_only_hz
        self.status = status
        self.status_every_s = status_every_s
        gate = model.speech_gate
        self.summary = LiveSummary(speech_gate=gate is not None and (gate.config.live if speech_gate is None else speech_gate))
        # per second since the start: the most items a frame found waiting when it arrived (last hour)
        self.depth_per_second: deque[tuple[int, int]] = deque(maxlen=DEPTH_SECONDS)
        self.t0_us: int | None = None
        audio = model.contract.audio
        self.front_end = StreamFrontEnd(mic.ring, audio, on_reset=self._audio_restarted) if mic is not None and audio is not None else None
        self._stopping = False
        self._pushed = 0

    def _on_frame(self, frame: Frame) -> None:
        second, depth = int((frame.captured_us - (self.t0_us or frame.captured_us)) / 1e6), self.slot.depth
        if self.depth_per_second and self.depth_per_second[-1][0] == second:
            depth = max(depth, self.depth_per_second.pop()[1])
        self.depth_per_second.append((second, depth))
        self.slot.put(frame, wait=self.timeline.virtual)  # files as fast as possible: every frame, no drops

    def push(self, image: np.ndarray, t_us: int | None = None) -> None:
        """Hand the pipeline a frame from your own capture (stamped now unless `t_us` is given)."""
        now = now_us()
        self._pushed += 1
        self._on_frame(Frame(self.timeline.now() if t_us is None else t_us, now, self._pushed - 1, image))

    def start(self, allow_missing: bool = False) -> None:
        """Open the sources (a source that cannot open is an error unless `allow_missing`)."""
        self.t0_us = self.timeline.now()
        if self.mic is not None:
            self.mic.start(allow_missing)
        if self.camera is not None:
            self.camera.start(allow_missing)

    def stop(self) -> None:
        self._stopping = True
        self.slot.close()

    def _audio_restarted(self, message: str) -> None:
        self.summary.audio_restarts += 1
        log.warning(f"edgemm live: {message} (image-only answers until a whole window has arrived)")

    def _audio(self, t_us: int) -> AudioWindow | None:
        """The model's audio tensor for the window ending at `t_us` (or the newest there is); None if no live audio."""
        if self.front_end is None or not self.mic.alive:
            return None
        ring = self.mic.ring
        if self.timeline.virtual:  # fast file playback: let the file microphone catch up with the video's time
            ring.wait_for(t_us, timeout=FILE_MIC_WAIT_S)
        return self.front_end.window(t_us)

    def _answer(self, t_us: int, captured_us: int, frame: Frame | None) -> None:
        audio = self._audio(t_us)  # a source the model does not take is heard or seen, not fed
        image = None if frame is None or self.model.contract.image is None else frame.image
        if image is None and audio is None:
            return
        prediction = self.model.predict(image=image, audio_features=None if audio is None else audio.tensor, color_order="BGR",
                                        speech_gate=self.summary.speech_gate)  # fmt: skip
        skew = None if audio is None or frame is None else (t_us - audio.end_us) / 1000
        event = LiveEvent((t_us - self.t0_us) / 1000, None if frame is None else frame.index, prediction, (now_us() - captured_us) / 1000,
                          skew, None if audio is None else audio.level_db, None if frame is None else frame.image)  # fmt: skip
        s = self.summary
        s.answers += 1
        s.audio_only += prediction.modalities == ("audio",)
        s.image_only += prediction.modalities == ("image",)
        s.gated += prediction.gated
        s.latency_ms.append(event.latency_ms)
        if skew is not None:
            s.skew_ms.append(skew)
            s.skew_max_ms = max(abs(skew), s.skew_max_ms or 0.0)
        for sink in self.sinks:
            sink(event)

    def _finished(self, deadline_us: int | None) -> bool:
        if self._stopping or self.timeline.stopped:
            return True
        if deadline_us is not None and self.timeline.now() >= deadline_us:
            return True
        if self.camera is None and self.mic is None:
            return False  # frames are pushed by the embedding application until stop()
        camera_done = self.camera is None or self.camera.ended
        if camera_done and self.camera is not None and self.timeline.virtual:
            return self.slot.depth == 0  # the video drives a virtual timeline: when it ends, time stops
        mic_done = self.mic is None or self.mic.ended
        return camera_done and mic_done and self.slot.depth == 0

    def _interrupted(self, _signum, _frame) -> None:
        self.summary.interrupted = True
        self.stop()

    def run(self, duration_s: float | None = None) -> LiveSummary:
        """Answer until done; Ctrl-C ends the run cleanly. Sources are stopped and joined before returning.

        In the main thread, Ctrl-C (SIGINT) is caught by a handler that stops the loop, instead of a KeyboardInterrupt
        that Python drops when it lands in a finaliser or a callback (seen under load: the run went on); a second
        Ctrl-C during shutdown is a KeyboardInterrupt again."""
        if self.t0_us is None:
            self.start()
        deadline = None if duration_s is None else self.t0_us + int(duration_s * 1e6)
        started, last_status = time.monotonic(), time.monotonic()
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, self._interrupted) if main else None
        try:
            while not self._finished(deadline):
                camera_live = self.camera is not None and self.camera.alive
                frame = self.slot.take(timeout=0.05 if camera_live else self.audio_only_period)
                if frame is not None:
                    self._answer(frame.t_us, frame.captured_us, frame)
                elif not camera_live and self.mic is not None and self.mic.alive:
                    t = self.mic.ring.end_us
                    self._answer(t, t if not self.timeline.virtual else now_us(), None)  # audio-only while there is no video
                if self.status and time.monotonic() - last_status >= self.status_every_s:
                    last_status = time.monotonic()
                    self.status(self._collect(time.monotonic() - started).line())
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
            self.timeline.stop()
            for source in (self.camera, self.mic):
                if source is not None:
                    source.stop()
                    source.join()
            for sink in self.sinks:
                getattr(sink, "close", lambda: None)()
        return self._collect(time.monotonic() - started)

    def _collect(self, seconds: float) -> LiveSummary:
        s = self.summary
        s.seconds = seconds
        s.drops = self.slot.drops
        s.max_queue_depth = self.slot.max_depth
        if self.camera is not None:
            s.frames, s.bad_timestamps, s.camera_reopens = self.camera.frames, self.camera.bad_timestamps, self.camera.reopens
        if self.mic is not None:
            s.mic_overflows, s.mic_reopens = self.mic.overflows, self.mic.reopens
        return s
