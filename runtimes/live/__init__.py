"""Live camera + microphone streams for `edgemm.runtimes`: sources on one monotonic microsecond clock,
an audio ring buffer, an incremental audio front-end, A/V synchronisation, newest-frame-wins flow control and the inference pipeline.
Torch-free; OpenCV and sounddevice are imported only by the sources that need them."""
from .camera import CameraSource, camera_pipeline
from .clock import Timeline, VirtualTimeline, now_us
from .features import AudioWindow, StreamFrontEnd
from .flow import LatestSlot
from .microphone import FileMicrophone, MicrophoneSource, open_microphone
from .pipeline import LiveEvent, LivePipeline, LiveSummary
from .ring import AudioRing, Break

__all__ = [
    "AudioRing",
    "AudioWindow",
    "Break",
    "CameraSource",
    "FileMicrophone",
    "LatestSlot",
    "LiveEvent",
    "LivePipeline",
    "LiveSummary",
    "MicrophoneSource",
    "StreamFrontEnd",
    "Timeline",
    "VirtualTimeline",
    "camera_pipeline",
    "now_us",
    "open_microphone",
]
