"""Camera source: OpenCV `VideoCapture` on a device index, a video file, an RTSP/HTTP URL, a GStreamer
pipeline string or `csi://N` (a Jetson CSI camera), in a thread that stamps each frame on the shared
clock. A camera that fails or disconnects is reopened with backoff; files play at their native frame
rate or, on a virtual timeline, as fast as possible."""
from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np

from ..errors import BackendUnavailableError
from .clock import Timeline, backoff_s, now_us
from .errors import SourceUnavailableError

CSI = re.compile(r"^csi://(\d+)(?:\?(.*))?$")


@dataclass
class Frame:
    """One camera frame: `t_us` on the shared timeline (for A/V sync), `captured_us` on the monotonic clock
    (for latency), its index in the stream, and the BGR (or grey) image."""

    t_us: int
    captured_us: int
    index: int
    image: np.ndarray


class MonotonicGuard:
    """Passes strictly increasing timestamps; counts the rest (a source whose clock jumps back or repeats)."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.rejected = 0

    def accept(self, t_us: int) -> bool:
        if self.last is not None and t_us <= self.last:
            self.rejected += 1
            return False
        self.last = t_us
        return True


def camera_pipeline(spec: str) -> tuple[str | int, str]:
    """What to hand `cv2.VideoCapture` for a `--camera` value, and the kind of source it is:
    "device", "csi", "gstreamer", "stream" or "file"."""
    spec = str(spec).strip()
    if spec.isdigit():
        return int(spec), "device"
    match = CSI.match(spec)
    if match:
        q = {k: v[-1] for k, v in parse_qs(match.group(2) or "").items()}
        width, height, fps = int(q.get("width", 1280)), int(q.get("height", 720)), int(q.get("fps", 30))
        return (
            f"nvarguscamerasrc sensor-id={match.group(1)} ! video/x-raw(memory:NVMM),width={width},height={height},"
            f"framerate={fps}/1,format=NV12 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
            "appsink drop=true max-buffers=1 sync=false"
        ), "csi"
    if " ! " in spec:
        return spec, "gstreamer"
    if re.match(r"^(rtsp|rtmp|https?)://", spec):
        return spec, "stream"
    return spec, "file"


def check_camera(spec: str) -> tuple[str | int, str]:
    """`camera_pipeline(spec)`, refusing a file source that does not exist (before anything is opened)."""
    target, kind = camera_pipeline(spec)
    if kind == "file" and not Path(target).is_file():
        raise SourceUnavailableError(f"camera {spec}: no such file, device index, URL or pipeline")
    return target, kind


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise BackendUnavailableError("the camera source", "cv2", "app") from exc
    return cv2


class CameraSource:
    """Reads frames in a thread and hands each to `on_frame`; `alive` says whether frames are arriving."""

    def __init__(self, spec: str, timeline: Timeline, on_frame: Callable[[Frame], None], realtime: bool = True, loop: bool = False) -> None:
        self.spec = str(spec)
        self.target, self.kind = check_camera(spec)
        self.timeline = timeline
        self.on_frame = on_frame
        self.realtime = realtime
        self.loop = loop  # files: start again at the end, media time running on
        self._looped = 0  # frames played in earlier loops
        self.frames = 0
        self.reopens = 0
        self.ended = False  # a file played to its end
        self._cap = None
        self._next_index = 0  # for files: where to resume after a reopen
        self.order = MonotonicGuard()
        self._t0: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.fps = 0.0

    @property
    def alive(self) -> bool:
        """Whether the capture is open (a read failure closes it until a reopen succeeds)."""
        return self._cap is not None

    @property
    def bad_timestamps(self) -> int:
        return self.order.rejected

    def open(self) -> bool:
        """Open (or reopen) the capture; False if it cannot deliver frames."""
        cv2 = _cv2()
        api = {"csi": cv2.CAP_GSTREAMER, "gstreamer": cv2.CAP_GSTREAMER}.get(self.kind, cv2.CAP_ANY)
        cap = cv2.VideoCapture(self.target, api)
        if not cap.isOpened():
            cap.release()
            return False
        if self.kind == "device":
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # do not let the driver queue stale frames
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0
        if self.kind == "file" and self.realtime and self._t0 is not None:  # a reopened file resumes at the present
            self._next_index = max(self._next_index, int((self.timeline.now() - self._t0) * self.fps / 1e6) - self._looped)
        if self.kind == "file" and self._next_index:
            cap.set(cv2.CAP_PROP_POS_FRAMES, self._next_index)
        self._cap = cap
        return True

    def start(self, allow_missing: bool = False) -> None:
        """Open the camera and start reading; a camera that cannot open is an error unless `allow_missing`
        (then the thread keeps trying with backoff)."""
        if not self.open() and not allow_missing:
            raise SourceUnavailableError(f"camera {self.spec}: cannot be opened ({self.kind}); check the device, URL or file, or use --allow-missing")
        self._t0 = self.timeline.now()
        self._thread = threading.Thread(target=self._run, name="edgemm-camera", daemon=True)
        self._thread.start()

    def _media_time_us(self, index: int) -> int:
        return self._t0 + round((self._looped + index) * 1e6 / self.fps)

    def _run(self) -> None:
        failures = 0
        while not (self._stop.is_set() or self.timeline.stopped or self.ended):
            if self._cap is None:  # dead: reopen with backoff while the pipeline goes on without video
                if self._stop.wait(backoff_s(failures)):
                    break
                failures += 1
                if self.open():
                    self.reopens += 1
                    failures = 0
                continue
            self._read_one()
        self._release()

    def stop(self) -> None:
        self._stop.set()

    def _read_one(self) -> None:
        index = self._next_index
        if self.kind == "file":
            t = self._media_time_us(index)
            if self.realtime and not self.timeline.sleep_until(t):
                return
        ok, image = self._cap.read()
        if not ok or image is None:
            at_end = self.kind == "file" and index >= int(self._cap.get(_cv2().CAP_PROP_FRAME_COUNT) or 0)
            self._release()
            if at_end and self.loop:
                self._looped, self._next_index = self._looped + index, 0
                self.open()
            elif at_end:
                self.ended = True  # the end of the file, not a failure
            return
        captured = now_us()
        if self.kind == "file":
            self._next_index = index + 1
            if self.timeline.virtual:
                self.timeline.advance(t)
        else:
            t = self.timeline.now()
        if not self.order.accept(t):
            return  # non-monotonic or duplicate timestamp: dropped (counted), never passed on
        self.frames += 1
        self.on_frame(Frame(t, captured, index, image))

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def join(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def list_cameras() -> list[str]:
    """Video devices this machine exposes (Linux: /dev/video* with their names)."""
    found = []
    for dev in sorted(Path("/dev").glob("video*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0)):
        name_file = Path("/sys/class/video4linux") / dev.name / "name"
        name = name_file.read_text().strip() if name_file.is_file() else ""
        found.append(f"{re.sub(r'[^0-9]', '', dev.name)}: {dev}{' (' + name + ')' if name else ''}")
    if os.path.exists("/dev/nvhost-ctrl") or Path("/proc/device-tree/model").is_file() and "jetson" in Path("/proc/device-tree/model").read_text(errors="ignore").lower():
        found.append("csi://0: Jetson CSI camera (nvarguscamerasrc), if one is connected")
    return found
