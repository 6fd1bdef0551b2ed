"""The live pipeline with real components: OpenCV reading generated video files, audio files streamed in
real time, the ring buffer's sync windows, flow control against a deliberately slow backend, a camera
that dies mid-run and comes back, the app's JSON lines, sounddevice without a device, Ctrl-C."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from edgemm.runtimes import load_bundle
from edgemm.runtimes.live import (
    AudioRing,
    LatestSlot,
    LivePipeline,
    StreamFrontEnd,
    Timeline,
    VirtualTimeline,
)
from edgemm.runtimes.live.camera import CameraSource, MonotonicGuard, camera_pipeline
from edgemm.runtimes.live.errors import SourceUnavailableError
from edgemm.runtimes.live.microphone import FileMicrophone
from edgemm.runtimes.preprocess import AudioSpec

cv2 = pytest.importorskip("cv2")
soundfile = pytest.importorskip("soundfile")

FPS = 30


def write_video(path, frames: int, size=(64, 48), fps=FPS):
    """An MJPG video whose frame i is filled with grey level 2*i (so frames can be identified)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 2 * i, np.uint8))
    writer.release()
    return path


@pytest.fixture
def av_files(tmp_path, tiny_test_split):
    """A 3 s video of test digits and a matching 48 kHz stereo WAV (so the mic path resamples and mixes down)."""
    s = tiny_test_split
    video = cv2.VideoWriter(str(tmp_path / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (112, 112))
    for k in range(3):
        frame = cv2.cvtColor(cv2.resize(s.images[k], (112, 112)), cv2.COLOR_GRAY2BGR)
        for _ in range(FPS):
            video.write(frame)
    video.release()
    mono = np.concatenate([s.audio[k] for k in range(3)]).astype(np.float32) / 32768
    up = np.interp(np.arange(len(mono) * 3) / 3, np.arange(len(mono)), mono)  # 16 kHz → 48 kHz
    soundfile.write(str(tmp_path / "a.wav"), np.stack([up, up], 1), 48000, subtype="PCM_16")
    return tmp_path / "v.avi", tmp_path / "a.wav"


def test_camera_spec_forms():
    assert camera_pipeline("0") == (0, "device")
    pipe, kind = camera_pipeline("csi://1?width=640&height=480&fps=15")
    assert kind == "csi" and pipe.startswith("nvarguscamerasrc sensor-id=1 ! ") and "width=640,height=480,framerate=15/1" in pipe
    assert pipe.endswith("appsink drop=true max-buffers=1 sync=false")
    assert camera_pipeline("rtsp://cam.local/stream") == ("rtsp://cam.local/stream", "stream")
    assert camera_pipeline("videotestsrc ! videoconvert ! appsink")[1] == "gstreamer"
    with pytest.raises(SourceUnavailableError, match="camera /no/such.mp4: no such file"):
        CameraSource("/no/such.mp4", Timeline(), lambda f: None)


def test_opencv_reads_a_video_file_on_its_media_timeline(tmp_path):
    path = write_video(tmp_path / "v.avi", 45)
    frames = []
    timeline = VirtualTimeline()
    cam = CameraSource(str(path), timeline, frames.append, realtime=False)
    cam.start()
    cam.join(10)
    assert cam.ended and cam.frames == 45 and [f.index for f in frames] == list(range(45))
    assert [f.t_us - frames[0].t_us for f in frames] == [round(i * 1e6 / FPS) for i in range(45)]
    assert abs(int(frames[10].image.mean()) - 20) <= 2  # frame 10 really is the 11th frame written
    assert timeline.now() == frames[-1].t_us  # the video advanced the virtual clock


def test_real_time_playback_paces_frames_and_audio(tmp_path, av_files):
    """Files play at their media rate: no frame is handed on before its media time, the file microphone is never
    ahead of the clock, and a 3 s recording cannot finish sooner than 3 s (lateness on a loaded machine is allowed)."""
    video, wav = av_files
    timeline = Timeline()
    got, mic_ahead_us = [], []
    mic = FileMicrophone(wav, timeline)

    def on_frame(frame):
        got.append(frame)
        mic_ahead_us.append((mic.ring.end_us or 0) - timeline.now())

    cam = CameraSource(str(video), timeline, on_frame, realtime=True)
    start = time.monotonic()
    mic.start()
    cam.start()
    cam.join(60)
    mic.join(60)
    assert time.monotonic() - start >= 3.0 - 0.05  # never faster than the media
    assert mic.ring.sample_rate == 48000 and mic.ended and cam.ended and cam.frames == 90
    assert all(f.captured_us >= f.t_us for f in got)  # no frame before its media time
    assert max(mic_ahead_us) <= 0  # audio is written when its last sample's time has come, never earlier
    assert [f.t_us - got[0].t_us for f in got] == [round(i * 1e6 / FPS) for i in range(90)]  # stamped with media time


def test_audio_windows_match_known_timestamps():
    ring = AudioRing(sample_rate=1000, seconds=2.0)
    front = StreamFrontEnd(ring, AudioSpec(sample_rate=1000, clip_seconds=0.5, features="waveform"), seconds=2.0)
    for k in range(30):  # 30 blocks of 100 samples; sample n has value n and time n+1 ms (block end stamps)
        block = np.arange(k * 100, (k + 1) * 100, dtype=np.float32)
        ring.write(block, end_us=(k + 1) * 100 * 1000)
    got = front.window(end_us=2_500_000)
    assert got.end_us == 2_500_000 and got.tensor[0, -1] == 2499 and got.tensor[0, 0] == 2000  # exactly the samples ending at 2.5 s
    got = front.window(end_us=9_000_000)  # later than the newest sample: the newest window
    assert got.end_us == 3_000_000 and got.tensor[0, -1] == 2999
    assert front.window(end_us=500_000) is None  # older than the 2 s the front-end holds


def test_monotonic_guard_and_latest_slot():
    guard = MonotonicGuard()
    assert [guard.accept(t) for t in (10, 20, 20, 15, 30)] == [True, True, False, False, True] and guard.rejected == 2
    slot = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(0) == 4 and slot.drops == 4 and slot.max_depth == 1 and slot.take(0.01) is None


def test_slow_backend_drops_stale_frames_and_latency_stays_bounded(tiny_bundle, tmp_path):
    model = load_bundle(tiny_bundle, threads=1)
    run, calls_ms = model.backend.run, []

    def slow(feeds):
        started = time.perf_counter()
        time.sleep(0.1)  # 10 answers/s against a 30 fps camera
        out = run(feeds)
        calls_ms.append(1000 * (time.perf_counter() - started))
        return out

    model.backend.run = slow
    video = write_video(tmp_path / "v.avi", 90)
    answered = []
    pipeline = LivePipeline(model, Timeline(), camera=str(video), sinks=[answered.append])
    summary = pipeline.run()
    assert summary.frames == 90 and summary.answers + summary.drops == 90 and summary.max_queue_depth == 1
    assert summary.drops >= 50  # at most one answer per 0.1 s: the rest were stale and dropped, never queued
    indices = [a.frame_index for a in answered]
    assert indices == sorted(set(indices))  # newest wins: never an older frame after a newer one
    # a frame waits at most for the inference in flight, then its own: latency is bounded by the calls, not the run's length
    assert max(summary.latency_ms) <= 3 * max(calls_ms), (max(summary.latency_ms), max(calls_ms))


def test_frames_of_other_sizes_and_layouts_are_answered(tiny_bundle):
    import threading

    model = load_bundle(tiny_bundle, threads=1)
    answers, answered = [], threading.Semaphore(0)
    pipeline = LivePipeline(model, Timeline(), sinks=[answers.append, lambda _: answered.release()])
    pipeline.start()
    worker = threading.Thread(target=pipeline.run, daemon=True)
    worker.start()
    images = [np.zeros((480, 640, 3), np.uint8), np.zeros((30, 40), np.uint8), np.zeros((100, 50, 4), np.uint8)]  # BGR, grey, BGRA
    for image in images:
        pipeline.push(image)
        assert answered.acquire(timeout=60)  # the answer to this frame, before the next is pushed
    pipeline.stop()
    worker.join(5)
    assert [a.frame_index for a in answers] == [0, 1, 2]
    assert all(a.prediction.modalities == ("image",) and a.skew_ms is None for a in answers)


def test_camera_dying_mid_run_gives_audio_only_answers_then_reopens(tiny_bundle, tmp_path, av_files):
    """The video file is cut short (its header still promises 3 s): the camera dies after ~1 s and the app goes on
    audio-only, reopening with backoff; once an audio-only answer has come, the full file is put back, the camera
    reopens at the present and fused answers resume. Both files loop, so nothing ends before that."""
    full, wav = av_files
    data = full.read_bytes()
    video = tmp_path / "cam.avi"
    video.write_bytes(data[: len(data) // 3])
    model = load_bundle(tiny_bundle, threads=1)
    timeline = Timeline()
    answers = []

    def watch(event):
        answers.append(event)
        kinds = [a.prediction.modalities for a in answers]
        if kinds[-1] == ("audio",) and kinds.count(("audio",)) == 1:
            video.write_bytes(data)  # the camera comes back
        elif kinds[-1] == ("image", "audio") and ("audio",) in kinds:
            pipeline.stop()  # fused again after the outage: seen all there is to see

    pipeline = LivePipeline(model, timeline, camera=str(video), mic=FileMicrophone(wav, timeline, loop=True), sinks=[watch], loop=True)
    summary = pipeline.run(duration_s=120)  # a hang guard: the sink stops the run
    kinds = [a.prediction.modalities for a in answers]
    assert summary.audio_only > 0 and ("audio",) in kinds  # while the camera was dead
    assert kinds[-1] == ("image", "audio") and not summary.interrupted  # fused answers again after the reopen
    assert summary.camera_reopens >= 1
    assert all(a.frame_index is None for a in answers if a.prediction.modalities == ("audio",))


def test_microphone_ending_gives_image_only_answers(tiny_bundle, tmp_path, av_files):
    video, wav = av_files
    audio, rate = soundfile.read(str(wav))
    short = tmp_path / "short.wav"
    soundfile.write(str(short), audio[: int(1.5 * rate)], rate)  # 1.5 s of audio for 3 s of video
    model = load_bundle(tiny_bundle, threads=1)
    timeline = VirtualTimeline()
    answers = []
    pipeline = LivePipeline(model, timeline, camera=str(video), mic=FileMicrophone(short, timeline), sinks=[answers.append], realtime=False)
    summary = pipeline.run()
    kinds = [a.prediction.modalities for a in answers]
    assert ("image", "audio") in kinds and kinds[-1] == ("image",) and summary.image_only > 0


class LossyRing(AudioRing):
    """A ring behind a lossy transport: the blocks ending in [lost_from_us, lost_to_us) never arrive, and the
    writer does not know whether what arrives is contiguous."""

    def __init__(self, sample_rate: int, lost_from_us: int, lost_to_us: int) -> None:
        super().__init__(sample_rate)
        self.lost = (lost_from_us, lost_to_us)

    def write(self, block, end_us, contiguous=None):
        if not self.lost[0] <= end_us < self.lost[1]:
            super().write(block, end_us, None)


def test_a_gap_in_the_audio_restarts_the_features_and_says_so(tiny_bundle, av_files, caplog):
    video, wav = av_files
    model = load_bundle(tiny_bundle, threads=1)
    timeline = VirtualTimeline()
    mic = FileMicrophone(wav, timeline)
    mic.ring = LossyRing(mic.ring.sample_rate, 1_200_000, 1_400_000)  # 200 ms lost at 1.2 s
    answers = []
    pipeline = LivePipeline(model, timeline, camera=str(video), mic=mic, sinks=[answers.append], realtime=False)
    with caplog.at_level("WARNING", logger="edgemm"):
        summary = pipeline.run()
    fused = [a for a in answers if a.prediction.modalities == ("image", "audio")]
    image_only = [a.t_ms for a in answers if a.prediction.modalities == ("image",)]
    assert summary.audio_restarts == 1 and any("a gap of 200.0 ms" in r.getMessage() for r in caplog.records)
    before = [a for a in fused if a.t_ms < 1400]  # windows that end before the gap (the newest audio there was)
    assert before and all(a.t_ms - a.skew_ms <= 1200 for a in before)
    assert [t for t in image_only if t > 1400] and min(a.t_ms for a in fused if a.t_ms >= 1400) >= 2400  # a whole second after it


def run_app(*args, **kw):
    return subprocess.run([sys.executable, "-m", "edgemm.apps.live", *map(str, args)], capture_output=True, text=True, timeout=120, **kw)


def test_app_writes_json_lines_and_a_summary(tiny_bundle, av_files):
    video, wav = av_files
    proc = run_app(tiny_bundle, "--camera", video, "--mic", wav, "--headless", "--fast")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(events) >= 60 and {"t_ms", "frame", "label", "probabilities", "modalities", "latency_ms", "av_skew_ms"} <= set(events[0])
    fused = [e for e in events if e["modalities"] == ["image", "audio"]]
    # the window ends at the frame's time, less at most one 20 ms file block not yet complete, the 10 ms hop grid and the
    # 48 → 16 kHz stream resampler's delay (soxr HQ: up to 40 ms)
    assert fused and all(0 <= e["av_skew_ms"] < 70 for e in fused)
    assert [e["t_ms"] for e in events] == sorted(e["t_ms"] for e in events)
    assert "live summary:" in proc.stderr and "max queue depth 1" in proc.stderr


def test_app_errors_name_the_source(tiny_bundle, tmp_path):
    proc = run_app(tiny_bundle, "--camera", tmp_path / "missing.avi", "--headless")
    assert proc.returncode == 2 and proc.stderr.strip() == f"edgemm live: error: camera {tmp_path / 'missing.avi'}: no such file, device index, URL or pipeline"
    proc = run_app(tiny_bundle, "--camera", "7", "--mic", "none", "--headless", "--duration", "1")
    assert proc.returncode == 2 and "cannot be opened" in proc.stderr and "Traceback" not in proc.stderr


def test_sounddevice_without_an_input_device_is_a_clear_error():
    from edgemm.runtimes.live.microphone import MicrophoneSource, sounddevice

    try:
        sd = sounddevice()
    except SourceUnavailableError as exc:
        pytest.skip(f"PortAudio is not installed here ({exc})")
    if any(d["max_input_channels"] > 0 for d in sd.query_devices()):
        pytest.skip("this machine has a microphone")
    with pytest.raises(SourceUnavailableError, match=r"microphone \(default\): no input device"):
        MicrophoneSource(None, Timeline())
    with pytest.raises(SourceUnavailableError, match="microphone 'usb': no input device with that name"):
        MicrophoneSource("usb", Timeline())


def test_ctrl_c_shuts_down_cleanly(tiny_bundle, av_files):
    video, wav = av_files
    proc = subprocess.Popen([sys.executable, "-m", "edgemm.apps.live", str(tiny_bundle), "--camera", str(video), "--mic", str(wav), "--headless", "--loop"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    first = proc.stdout.readline()  # an answer: the pipeline is running
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert json.loads(first)["frame"] is not None
    assert proc.returncode == 0 and "live summary (interrupted)" in err and "Traceback" not in err


def test_allow_missing_runs_degraded_on_the_microphone_alone(tiny_bundle, av_files):
    _, wav = av_files
    proc = run_app(tiny_bundle, "--camera", "7", "--mic", wav, "--headless", "--allow-missing", "--duration", "2")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events and all(e["modalities"] == ["audio"] and e["frame"] is None for e in events)


def test_sample_stream_and_its_ground_truth(tmp_path):
    from edgemm.apps.truth import GroundTruth, Scorer

    from edgemm.sample_stream import FPS, SEGMENT_S, sample_stream
    from edgemm.train import tiny_config

    stream = sample_stream(segments=4, config=tiny_config().data, root=tmp_path)
    cap = cv2.VideoCapture(str(stream.video))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 4 * SEGMENT_S * FPS and cap.get(cv2.CAP_PROP_FPS) == FPS
    audio, rate = soundfile.read(str(stream.audio))
    assert rate == 16000 and len(audio) == 4 * SEGMENT_S * rate
    truth = GroundTruth.load(stream.truth)
    assert truth.label_at(0.2) is None and truth.label_at(1.2) == truth.segments[0]["label"]
    assert truth.segment_at(4 * SEGMENT_S + 1.2) == 0  # a looped stream starts again
    scorer = Scorer(truth)
    assert scorer.accuracy is None


def test_live_app_never_imports_torch(tiny_bundle, av_files):
    video, wav = av_files
    code = (
        "import sys\n"
        "from edgemm.apps.live import main\n"
        f"assert main([{str(tiny_bundle)!r}, '--camera', {str(video)!r}, '--mic', {str(wav)!r}, '--headless', '--fast', '--events', '/dev/null']) == 0\n"
        "print('HEAVY', [m for m in ('torch', 'onnx', 'edgemm.export', 'edgemm.models') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in out.stdout, out.stderr


def test_window_sink_draws_the_answer(tiny_bundle, tiny_test_split):
    """The window itself needs a display (none here); what it shows is drawn and checked."""
    from edgemm.apps.sinks import WindowSink
    from edgemm.runtimes.live import LiveEvent

    model = load_bundle(tiny_bundle, threads=1)
    s = tiny_test_split
    sink = WindowSink(model.labels, on_quit=lambda: None)
    frame = cv2.cvtColor(cv2.resize(s.images[0], (640, 480)), cv2.COLOR_GRAY2BGR)
    pred = model.predict(image=frame, audio=s.audio[0], sample_rate=16000, color_order="BGR")
    canvas = sink.render(LiveEvent(0.0, 0, pred, 5.0, 1.0, -12.0, frame))
    assert canvas.shape == (360, 480, 3) and canvas.dtype == np.uint8
    assert (canvas[340 - 240 : 340, 455:470] == (0, 255, 0)).all()  # level meter at -12 dBFS: 80 % of 300 px, green
    audio_only = sink.render(LiveEvent(40.0, None, model.predict(audio=s.audio[0], sample_rate=16000), 5.0, None, None, None))
    assert audio_only.shape == (360, 480, 3) and audio_only[200:, 100:400].any()  # the last frame stays on screen
