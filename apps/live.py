"""`edgemm live` / `python -m edgemm.apps.live`: a bundle on a camera and a microphone in real time.

    edgemm live BUNDLE [--camera SRC] [--mic SRC] [--backend auto] [--headless] [--duration S] [--events FILE]
    edgemm live BUNDLE ... [--no-speech-gate] [--speech-threshold DB]   # audio without speech: image-only answers (default)
    edgemm live BUNDLE --camera clip.avi --mic clip.wav --truth clip.json   # a recording with ground truth
    edgemm live --list-devices

Torch-free: the runtime, OpenCV and sounddevice only. (`edgemm live --sample`, in the edgemm CLI, makes
the built-in sample stream with edgemm's data module and passes it here as --camera/--mic/--truth.)"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgemm.runtimes import BundleModel, load_bundle
from edgemm.runtimes.errors import EdgemmError
from edgemm.runtimes.live import (
    LivePipeline,
    LiveSummary,
    Timeline,
    VirtualTimeline,
    open_microphone,
)
from edgemm.runtimes.live.camera import check_camera
from edgemm.runtimes.manifest import write_json_atomic

from .sinks import JsonLinesSink, WindowSink, display_available
from .truth import GroundTruth, Scorer, offline_accuracy


def add_speech_threshold(p: argparse.ArgumentParser) -> None:
    """--speech-threshold (shared by `edgemm live` and `edgemm predict`); `apply_speech_threshold` sets it."""
    p.add_argument("--speech-threshold", type=float, metavar="DB", help="the speech gate's threshold: how much the speech-band "
                   "energy must move within the window, in (0, 40] dB (default: the bundle's, 6)")  # fmt: skip


def apply_speech_threshold(model: BundleModel, args: argparse.Namespace) -> None:
    """Set the speech gate's threshold from --speech-threshold, when given (out of range: a SpeechGateError)."""
    if args.speech_threshold is not None:
        model.set_speech_gate(threshold_db=args.speech_threshold)


def add_live_arguments(p: argparse.ArgumentParser) -> None:
    """The options of the live app (shared by `edgemm live` and `python -m edgemm.apps.live`)."""
    p.add_argument("bundle", nargs="?", help="the bundle to run")
    p.add_argument("--camera", help="device index (default 0), video file, rtsp://… or http://… URL, GStreamer pipeline, "
                   "csi://N[?width=&height=&fps=], or none")  # fmt: skip
    p.add_argument("--mic", help="input device index or name substring (default: the default input), an audio file played as a microphone, or none")
    p.add_argument("--mic-rate", type=int, help="microphone sample rate (default: the device's; audio is resampled to the model's)")
    p.add_argument("--mic-block", type=int, default=320, help="microphone block size in samples")
    p.add_argument("--truth", help="ground-truth JSON of a recorded stream: score the answers (and compare with its offline samples)")
    p.add_argument("--enroll", metavar="FOLDER", help="answer with the label of the nearest enrolled example in FOLDER/<label>/ "
                   "(image and/or audio files sharing a name): for a model with an embedding output")  # fmt: skip
    p.add_argument("--no-speech-gate", action="store_true", help="use every audio window, speech or not (default: the bundle's "
                   "setting, on: a window without speech gives an image-only answer)")  # fmt: skip
    add_speech_threshold(p)
    p.add_argument("--backend", default="auto", help="auto or a backend name")
    p.add_argument("--precision", help="restrict the artifact choice (fp32, fp16, int8)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-self-check", action="store_true", help="skip the first-run check of the artifact on this machine's reference samples")
    p.add_argument("--headless", action="store_true", help="no window: JSON-lines events (stdout unless --events)")
    p.add_argument("--events", help="write JSON-lines events to this file ('-' for stdout)")
    p.add_argument("--duration", type=float, help="stop after S seconds (default: until the sources end or Ctrl-C)")
    p.add_argument("--fast", action="store_true", help="play video/audio files as fast as possible (every frame answered) instead of in real time")
    p.add_argument("--loop", action="store_true", help="loop video and audio files (for long runs on recorded streams)")
    p.add_argument("--allow-missing", action="store_true", help="start even if the camera or microphone cannot be opened (degraded mode)")
    p.add_argument("--status-every", type=float, default=5.0, help="seconds between status lines")
    p.add_argument("--summary", help="write the run's summary as JSON to this file at exit")
    p.add_argument("--list-devices", action="store_true", help="list cameras and microphones, then exit")


def list_devices() -> str:
    from edgemm.runtimes.live.camera import list_cameras
    from edgemm.runtimes.live.microphone import list_microphones

    lines = ["cameras:"] + [f"  {c}" for c in list_cameras() or ["(none found)"]]
    try:
        mics = list_microphones() or ["(none found)"]
    except EdgemmError as exc:
        mics = [f"(cannot list: {exc})"]
    return "\n".join(lines + ["microphones:"] + [f"  {m}" for m in mics])


def run(args: argparse.Namespace, out=sys.stderr) -> LiveSummary | None:
    """Run the app for parsed arguments; returns the summary (None for --list-devices)."""

    def say(message: str) -> None:
        print(message, file=out, flush=True)

    if args.list_devices:
        print(list_devices())
        return None
    if not args.bundle:
        raise EdgemmError("edgemm live: give a BUNDLE (or --list-devices)")
    camera, mic = args.camera or "0", args.mic  # the first camera and the default microphone unless told
    truth = GroundTruth.load(args.truth) if args.truth else None  # a bad truth file is reported before anything is opened
    camera = None if camera == "none" else camera
    if camera is not None:
        check_camera(camera)  # a wrong camera is reported before anything is loaded or opened
    model = load_bundle(args.bundle, backend=args.backend, precision=args.precision, threads=args.threads, self_check=not args.no_self_check)
    apply_speech_threshold(model, args)
    scorer = Scorer(truth, takes=len(model.contract.modalities)) if truth is not None else None
    if args.enroll:
        gallery = model.enroll(args.enroll, warn=say)
        say(f"live: enrolled {len(gallery.vectors)} examples of {len(gallery.labels)} labels ({', '.join(gallery.labels)}) from {args.enroll}")
    timeline = VirtualTimeline() if args.fast else Timeline()
    microphone = None
    if mic != "none":
        try:
            microphone = open_microphone(mic, timeline, loop=args.loop, sample_rate=args.mic_rate, block=args.mic_block)
        except EdgemmError:
            if not args.allow_missing:
                raise
            say("microphone unavailable: running without audio (--allow-missing)")
    sinks = []
    pipeline: LivePipeline | None = None
    if args.events or args.headless or not display_available():
        if not args.headless and not args.events:
            say("no display here: writing JSON-lines events to stdout (--headless to say so)")
        sinks.append(JsonLinesSink(args.events or "-"))
    else:
        sinks.append(WindowSink(model.labels, on_quit=lambda: pipeline.stop()))
    if scorer is not None:
        sinks.append(scorer)
    pipeline = LivePipeline(model, timeline, camera, microphone, sinks, realtime=not args.fast, loop=args.loop, status=lambda m: say(f"live: {m}"), status_every_s=args.status_every,
                            speech_gate=False if args.no_speech_gate else None)  # fmt: skip
    say(f"live: {model.artifact.file} on {model.backend.name}; camera {camera or '(none)'}; microphone {microphone.name if microphone else '(none)'}"
        f"{'; as fast as possible' if args.fast else ''}; speech gate "
        + (f"on ({model.speech_gate.config.describe()})" if pipeline.summary.speech_gate else "off"))  # fmt: skip
    pipeline.start(allow_missing=args.allow_missing)
    summary = pipeline.run(args.duration)
    say(f"live summary{' (interrupted)' if summary.interrupted else ''}: {summary.line()}")
    say(f"  camera reopens {summary.camera_reopens}, mic reopens {summary.mic_reopens}, bad timestamps {summary.bad_timestamps}, "
        f"max queue depth {summary.max_queue_depth}, A/V skew max {summary.skew_max_ms or 0:.1f} ms")  # fmt: skip
    if scorer is not None:
        offline = offline_accuracy(model, scorer)
        live = scorer.accuracy
        say(f"  live accuracy {'-' if live is None else f'{live:.3f}'} on {scorer.scored} scored answers over {len(scorer.segments)} segments"
            + ("" if offline is None else f"; offline accuracy on the same samples {offline:.3f}"))
        summary.live_accuracy, summary.offline_accuracy = live, offline
    if args.summary:
        write_summary(Path(args.summary), summary, pipeline)
    return summary


def write_summary(path: Path, summary: LiveSummary, pipeline: LivePipeline) -> None:
    """The summary plus the queue depth per second (the most items a frame found waiting), written atomically."""
    write_json_atomic(path, {**summary.to_dict(), "queue_depth_per_second": [list(x) for x in pipeline.depth_per_second]})


def build_parser(prog: str = "python -m edgemm.apps.live") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_live_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except EdgemmError as exc:
        print(f"edgemm live: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the pipeline started (loading the bundle, opening sources)
        print("edgemm live: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
