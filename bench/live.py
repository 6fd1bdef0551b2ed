"""Live pipeline benchmark: the built-in sample stream (30 fps video file + 16 kHz WAV, in real time)
through the default INT8 student, in a torch-free `edgemm.apps.live` process as on a device:
latency, drops, queue depth over time, that process's memory, and the runtime's overhead.

    .venv/bin/python bench/live.py [--seconds 60] [--soak 600] [--threads 2] [--backend auto] [--plot bench-live.png]

`--soak S` runs S seconds (the sample stream loops) for the memory check. The overhead rows time,
side by side on the stream's frames and audio (alternating which goes first), the bare backend call,
`BundleModel.infer` (edgemm's checks and I/O around it), the live answer (streaming audio front-end + predict
on the frame) and batch-1 `predict` from a raw frame + 1 s of audio (with the speech gate off, as by default, its
decision is made when first read: also timed with it read).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from edgemm.export.onnx_int8 import Int8Options
from edgemm.runtimes import load_bundle

from edgemm.checkpoint import default_checkpoint
from edgemm.compare import render_targets
from edgemm.exporting import export_checkpoint
from edgemm.sample_stream import sample_stream
from edgemm.tables import format_table

WARMUP_S = 10  # memory growth is counted from here (model compiled, buffers allocated)


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * 4096 / 1e6
    except OSError:
        return None


def overhead(model, video: Path, wav: Path, count: int = 300, repeats: int = 5) -> dict[str, float]:
    """Median ms per call on the stream's own frames and audio, side by side (alternating which goes first): the bare
    backend call and `BundleModel.infer` on preprocessed tensors, the live answer (the streaming front-end's window
    for the frame, fed with the audio that arrived since the last frame, then `predict` on the frame), and batch-1
    `predict` from the raw frame + 1 s of audio, and the same with its speech decision read."""
    import cv2
    import soundfile
    from edgemm.runtimes.live import AudioRing, StreamFrontEnd

    audio, rate = soundfile.read(str(wav), dtype="float32")
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = [cap.read()[1] for _ in range(count + 31)][31:]  # frames from 1 s on, so a full audio window ends at each
    cap.release()
    ends = [int((i + 32) / fps * rate) for i in range(count)]
    tensors = [model.tensors([f], [audio[e - rate : e]], rate, "BGR") for f, e in zip(frames, ends)]
    feeds = [model.contract.feeds(*t) for t in tensors]
    times: dict[str, list[float]] = {}
    for r in range(repeats):
        ring, written = AudioRing(rate), ends[0] - rate // 30  # the audio up to one frame before the first
        front = StreamFrontEnd(ring, model.contract.audio)
        ring.write(audio[:written], round(written * 1e6 / rate))

        def live(k: int) -> None:
            window = front.window(round(ends[k] * 1e6 / rate))
            model.predict(image=frames[k], audio_features=window.tensor, color_order="BGR")

        def raw(k: int):
            return model.predict(image=frames[k], audio=audio[ends[k] - rate : ends[k]], sample_rate=rate, color_order="BGR")

        calls = {
            "bare backend.run": lambda k: model.backend.run(feeds[k]),
            "BundleModel.infer": lambda k: model.infer(*tensors[k]),
            "live answer (stream front-end + predict)": live,
            "predict (raw frame + 1 s audio)": raw,
            "predict, then its speech decision read": lambda k: raw(k).speech,
        }
        for k in range(count):
            ring.write(audio[written : ends[k]], round(ends[k] * 1e6 / rate))  # the microphone's blocks since the last frame
            written = ends[k]
            for name in list(calls) if (k + r) % 2 == 0 else list(calls)[::-1]:
                t0 = time.perf_counter()
                calls[name](k)
                times.setdefault(name, []).append(time.perf_counter() - t0)
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
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = tmp / "live.edgemm"
        export_checkpoint(default_checkpoint("student"), "onnx,openvino,tflite", bundle, log=lambda _: None, int8_calib="av-digits", int8=Int8Options())
        events_file, summary_file = tmp / "events.jsonl", tmp / "summary.json"
        cmd = [sys.executable, "-m", "edgemm.apps.live", str(bundle), "--camera", str(stream.video), "--mic", str(stream.audio),
               "--truth", str(stream.truth), "--headless", "--loop", "--precision", "int8",
               "--backend", args.backend, "--threads", str(args.threads), "--duration", str(seconds), "--events", str(events_file),
               "--summary", str(summary_file), "--status-every", "60"]  # fmt: skip
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        start, rss = time.monotonic(), []
        while child.poll() is None:
            mb = rss_mb(child.pid)
            if mb is not None:
                rss.append((time.monotonic() - start, mb))
            time.sleep(1.0)
        err = child.stderr.read()
        if child.returncode != 0:
            sys.exit(f"bench/live.py: the live app failed:\n{err}")
        summary = json.loads(summary_file.read_text())
        events = [json.loads(line) for line in events_file.read_text().splitlines()]
        model = load_bundle(bundle, backend=args.backend, precision="int8", threads=args.threads)
        costs = overhead(model, stream.video, stream.audio)
    warm = next(mb for t, mb in rss if t >= WARMUP_S)
    growth = rss[-1][1] - warm
    d = summary
    print(format_table(
        ["measure", "value"],
        [["run", f"{d['seconds']:.0f} s real time, {model.artifact.file} on {model.backend.name}, {args.threads} threads, torch-free process"],
         ["input fps / inference fps", f"{d['input_fps']:.1f} / {d['inference_fps']:.1f}"],
         ["latency capture→result p50 / p95", f"{d['latency_p50_ms']:.2f} / {d['latency_p95_ms']:.2f} ms"],
         ["drops (stale frames) / bad timestamps / mic overflows", f"{d['drops']} / {d['bad_timestamps']} / {d['mic_overflows']}"],
         ["max queue depth (per-second maxima in the plot)", d["max_queue_depth"]],
         ["A/V skew p50 / max", f"{d['av_skew_p50_ms']:.1f} / {d['av_skew_max_ms']:.1f} ms"],
         ["RSS at start / after 10 s / end", f"{rss[0][1]:.1f} / {warm:.1f} / {rss[-1][1]:.1f} MB"],
         ["live accuracy (scored answers) / offline, same samples", f"{d['live_accuracy']:.3f} / {d['offline_accuracy']:.3f}"],
         *[[f"ms per call: {k}", f"{v:.3f}"] for k, v in costs.items()],
         ["ms per answer beyond the bare call: live answer / raw predict",
          f"{costs['live answer (stream front-end + predict)'] - costs['bare backend.run']:.3f} / {costs['predict (raw frame + 1 s audio)'] - costs['bare backend.run']:.3f}"]],
        "bench/live.py: the sample stream through edgemm.apps.live",
    ))  # fmt: skip
    bare = costs["bare backend.run"]
    wrapper = costs["BundleModel.infer"] / bare - 1
    live_x, predict_x = costs["live answer (stream front-end + predict)"] / bare, costs["predict (raw frame + 1 s audio)"] / bare
    print()
    print(render_targets([
        ("p95 capture→result ≤ 8 ms (2 threads, 30 fps + 16 kHz)", f"{d['latency_p95_ms']:.2f} ms", d["latency_p95_ms"] <= 8),
        ("queue depth never above 1", str(d["max_queue_depth"]), d["max_queue_depth"] <= 1),
        ("live answer cost ≤ 2x the bare backend call", f"{live_x:.2f}x", live_x <= 2),
        ("batch-1 predict from raw inputs ≤ 2x the bare backend call", f"{predict_x:.2f}x", predict_x <= 2),
        (f"RSS growth ≤ 5 MB ({'soak, ' if args.soak else ''}{WARMUP_S} s → {d['seconds']:.0f} s)", f"{growth:+.1f} MB", growth <= 5),
        ("runtime overhead ≤ 10 % over the bare backend call", f"{100 * wrapper:+.1f} % (BundleModel.infer vs backend.run)", wrapper <= 0.10),
        ("live accuracy within 2 points of offline", f"{d['live_accuracy']:.3f} vs {d['offline_accuracy']:.3f}", abs(d["live_accuracy"] - d["offline_accuracy"]) <= 0.02),
    ]))  # fmt: skip
    plot(events, d["queue_depth_per_second"], rss, Path(args.plot))


def plot(events: list[dict], depth: list[list[int]], rss: list[tuple[float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True, dpi=110)
    axes[0].plot([e["t_ms"] / 1000 for e in events], [e["latency_ms"] for e in events], lw=0.5)
    axes[0].set_ylabel("capture→result (ms)")
    axes[1].step([t for t, _ in depth], [d for _, d in depth], where="post")
    axes[1].set_ylabel("queue depth\n(max per second)")
    axes[1].set_ylim(-0.1, 2.1)
    axes[2].plot(*zip(*rss))
    axes[2].set_ylabel("RSS of the app (MB)")
    axes[2].set_xlabel("seconds")
    fig.suptitle("edgemm live on the sample stream (30 fps + 16 kHz, real time)")
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
