"""Live pipeline benchmark: the built-in sample stream (30 fps video file + 16 kHz WAV, in real time)
through the default INT8 student: latency, drops, queue depth over time, memory, runtime overhead.

    .venv/bin/python bench/live.py [--seconds 60] [--soak 600] [--threads 2] [--backend auto] [--plot bench-live.png]

`--soak S` runs S seconds (the sample stream's WAV loops, the video restarts) for the memory check.
The overhead rows time, side by side on the same inputs after the run: the bare backend call on
preprocessed tensors, `BundleModel.infer` (edgemm's checks and I/O around it), and `predict`
(+ preprocessing from raw frame and audio, + softmax).
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from edgemm.export.onnx_int8 import Int8Options
from edgemm.runtimes import load_bundle
from edgemm.runtimes.live import LivePipeline, Timeline
from edgemm.runtimes.live.microphone import FileMicrophone

from edgemm.apps.truth import GroundTruth, Scorer
from edgemm.checkpoint import default_checkpoint
from edgemm.compare import render_targets
from edgemm.exporting import export_checkpoint
from edgemm.sample_stream import sample_stream
from edgemm.tables import format_table


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 1e6


def overhead(model, video: Path, wav: Path, count: int = 300, repeats: int = 5) -> dict[str, float]:
    """Median ms per call, interleaved on the same inputs: bare backend, model.infer, model.predict."""
    import cv2
    import soundfile

    audio, rate = soundfile.read(str(wav), dtype="float32")
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    inputs = []
    for i in range(count):
        ok, frame = cap.read()
        end = int((i + 31) / fps * rate)  # frames from 1 s on, so a full audio window ends at each
        inputs.append((frame, audio[end - rate : end]))
    cap.release()
    times = {"bare backend.run": [], "BundleModel.infer": [], "predict (+ preprocessing)": []}
    for _ in range(repeats):
        for frame, window in inputs:
            t0 = time.perf_counter()
            pred = model.predict(image=frame, audio=window, sample_rate=rate, color_order="BGR")
            t1 = time.perf_counter()
            image, aud, present = model.tensors([frame], [window], rate, "BGR")
            t2 = time.perf_counter()
            model.infer(image, aud, present)
            t3 = time.perf_counter()
            model.backend.run({"image": image, "audio": aud, "present": present})
            t4 = time.perf_counter()
            times["predict (+ preprocessing)"].append(t1 - t0)
            times["BundleModel.infer"].append(t3 - t2)
            times["bare backend.run"].append(t4 - t3)
            assert pred.label
    return {k: 1000 * float(np.median(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--soak", type=float, help="run this many seconds instead (memory check)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--plot", default="bench-live.png")
    args = parser.parse_args()
    seconds = args.soak or args.seconds
    stream = sample_stream()
    truth = GroundTruth.load(stream.truth)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "live.edgemm"
        export_checkpoint(default_checkpoint("student"), "onnx,openvino,tflite", bundle, log=lambda _: None, int8_calib="av-digits", int8=Int8Options())
        model = load_bundle(bundle, backend=args.backend, precision="int8", threads=args.threads)
        rss = [(0.0, rss_mb())]
        timeline = Timeline()
        scorer = Scorer(truth)
        latency: list[tuple[float, float]] = []
        sinks = [scorer, lambda e: latency.append((e.t_ms / 1000, e.latency_ms))]
        pipeline = LivePipeline(model, timeline, camera=str(stream.video), mic=FileMicrophone(stream.audio, timeline, loop=True), sinks=sinks, loop=True)
        stop = threading.Event()

        def sample_memory() -> None:
            start = time.monotonic()
            while not stop.wait(5.0):
                rss.append((time.monotonic() - start, rss_mb()))

        watcher = threading.Thread(target=sample_memory, daemon=True)
        pipeline.start()
        watcher.start()
        summary = pipeline.run(seconds)
        stop.set()
        rss.append((summary.seconds, rss_mb()))
        costs = overhead(model, stream.video, stream.audio)
    d = summary.to_dict()
    print(format_table(
        ["measure", "value"],
        [["run", f"{d['seconds']:.0f} s real time, {model.artifact.file} on {model.backend.name}, {args.threads} threads"],
         ["input fps / inference fps", f"{d['input_fps']:.1f} / {d['inference_fps']:.1f}"],
         ["latency capture→result p50 / p95", f"{d['latency_p50_ms']:.2f} / {d['latency_p95_ms']:.2f} ms"],
         ["drops (stale frames) / bad timestamps / mic overflows", f"{d['drops']} / {d['bad_timestamps']} / {d['mic_overflows']}"],
         ["max queue depth", d["max_queue_depth"]],
         ["A/V skew p50 / max", f"{d['av_skew_p50_ms']:.1f} / {d['av_skew_max_ms']:.1f} ms"],
         ["RSS start → end", f"{rss[0][1]:.1f} → {rss[-1][1]:.1f} MB ({rss[-1][1] - rss[0][1]:+.1f} MB)"],
         ["live accuracy (scored answers)", f"{scorer.accuracy:.3f} ({scorer.scored} answers, {len(scorer.segments)} segments)"],
         *[[f"ms per call: {k}", f"{v:.3f}"] for k, v in costs.items()]],
        "bench/live.py: the sample stream through the pipeline",
    ))  # fmt: skip
    offline = model_offline(model, scorer)
    wrapper = costs["BundleModel.infer"] / costs["bare backend.run"] - 1
    growth = rss[-1][1] - rss[0][1]
    print()
    print(render_targets([
        ("p95 capture→result ≤ 50 ms (2 threads, 30 fps + 16 kHz)", f"{d['latency_p95_ms']:.2f} ms", d["latency_p95_ms"] <= 50),
        ("queue depth never above 1", str(d["max_queue_depth"]), d["max_queue_depth"] <= 1),
        (f"RSS growth ≤ 5 MB ({'soak ' if args.soak else ''}{d['seconds']:.0f} s)", f"{growth:+.1f} MB", growth <= 5),
        ("runtime overhead ≤ 10 % over the bare backend call", f"{100 * wrapper:+.1f} % (BundleModel.infer vs backend.run)", wrapper <= 0.10),
        ("live accuracy within 2 points of offline", f"{scorer.accuracy:.3f} vs {offline:.3f} offline", abs(scorer.accuracy - offline) <= 0.02),
    ]))  # fmt: skip
    plot(pipeline, latency, rss, Path(args.plot))


def model_offline(model, scorer: Scorer) -> float:
    from edgemm.apps.live import offline_accuracy

    return offline_accuracy(model, scorer)


def plot(pipeline: LivePipeline, latency: list[tuple[float, float]], rss: list[tuple[float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True, dpi=110)
    axes[0].plot(*zip(*latency), lw=0.6)
    axes[0].set_ylabel("capture→result (ms)")
    depth = np.array(pipeline.depth_seen)
    axes[1].step(depth[:, 0], depth[:, 1], where="post", lw=0.6)
    axes[1].set_ylabel("items waiting\\nwhen a frame arrives")
    axes[1].set_ylim(-0.1, 1.5)
    axes[2].plot(*zip(*rss), marker="o")
    axes[2].set_ylabel("RSS (MB)")
    axes[2].set_xlabel("seconds")
    fig.suptitle("edgemm live on the sample stream (30 fps + 16 kHz, real time)")
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
