"""Where live answers go: JSON lines (stdout or a file), a Python callback, an OpenCV window."""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np
from edgemm.runtimes.live import LiveEvent


class JsonLinesSink:
    """One JSON object per answer, flushed as it is written (stdout with path '-')."""

    def __init__(self, path: str | Path = "-") -> None:
        self._own = str(path) != "-"
        self._fh: TextIO = open(path, "w", encoding="utf-8") if self._own else sys.stdout

    def __call__(self, event: LiveEvent) -> None:
        self._fh.write(json.dumps(event.to_dict()) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._own:
            self._fh.close()


class CallbackSink:
    """Hands each answer to a function (for embedding the pipeline in an application)."""

    def __init__(self, fn: Callable[[LiveEvent], None]) -> None:
        self.fn = fn

    def __call__(self, event: LiveEvent) -> None:
        self.fn(event)


def display_available() -> bool:
    """Whether an OpenCV window can be shown here (a display server and an OpenCV built with GUI support)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        import cv2

        cv2.namedWindow("edgemm-probe", cv2.WINDOW_AUTOSIZE)
        cv2.destroyWindow("edgemm-probe")
        return True
    except Exception:  # opencv-python-headless: "The function is not implemented"
        return False


class WindowSink:
    """The frame with the label, the inputs it came from ("no speech" when the speech gate left the audio out), its
    scores (class probabilities or similarities to enrolled examples) and an audio level meter; `q` or Esc stops the run."""

    def __init__(self, labels: list[str], on_quit: Callable[[], None], title: str = "edgemm live") -> None:
        import cv2

        self.cv2, self.labels, self.on_quit, self.title = cv2, labels, on_quit, title
        self._last: np.ndarray | None = None

    def render(self, event: LiveEvent) -> np.ndarray:
        """The 480x360 BGR picture for one answer (the last frame is kept for audio-only answers)."""
        cv2 = self.cv2
        frame = event.image if event.image is not None else self._last
        if frame is None:
            canvas = np.zeros((360, 480, 3), np.uint8)
        else:
            canvas = cv2.resize(frame[:, :, :3] if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), (480, 360))
        if event.image is not None:
            self._last = event.image
        p = event.prediction
        if not p.modalities:
            answer = "no speech heard"
        else:
            answer = "no label: enroll examples (--enroll)" if p.label is None else f"{p.label}  {p.confidence:.2f}"
            answer += f"  [{'+'.join(p.modalities)}]" + ("  no speech" if p.gated else "")
        cv2.putText(canvas, answer, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 255, 0), 2)
        cv2.putText(canvas, f"{event.latency_ms:.1f} ms", (10, 58), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
        for i, (name, score) in enumerate(zip(self.labels, p.scores if p.scores is not None else [])):
            y = 80 + i * 22
            cv2.rectangle(canvas, (40, y), (40 + int(200 * max(0.0, float(score))), y + 16), (0, 200, 255), -1)
            cv2.putText(canvas, name, (10, y + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        level = 0.0 if event.audio_level_db is None else min(1.0, max(0.0, (event.audio_level_db + 60) / 60))
        cv2.rectangle(canvas, (455, 340), (470, 340 - int(300 * level)), (0, 0, 255) if level > 0.9 else (0, 255, 0), -1)
        return canvas

    def __call__(self, event: LiveEvent) -> None:
        self.cv2.imshow(self.title, self.render(event))
        if self.cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.on_quit()

    def close(self) -> None:
        self.cv2.destroyAllWindows()
