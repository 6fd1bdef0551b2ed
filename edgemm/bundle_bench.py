"""`edgemm bench BUNDLE`: every artifact's size, verification, accuracy and speed on this machine, as a
table and an accuracy-vs-latency plot, with the format's own benchmark tool's figure on the same file beside it
where that tool is installed (`edgemm.vendor_bench`). Torch-free, so it runs on the device too."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgemm.compare import Target
from edgemm.evaluate import call_times_ms
from edgemm.runtimes import load_bundle
from edgemm.runtimes.backends import format_backend
from edgemm.runtimes.errors import EdgemmError
from edgemm.runtimes.manifest import Manifest
from edgemm.runtimes.modalities import MODALITY_PATTERNS
from edgemm.runtimes.reference import Infer, ReferenceSet
from edgemm.runtimes.target_check import CheckStore, reference_digest
from edgemm.runtimes.verification import accuracy_by_mode, run_model
from edgemm.tables import format_table
from edgemm.vendor_bench import VendorFigure, vendor_latency

BATCH = 8  # the throughput batch


@dataclass
class Subject:
    """Something to benchmark: how to run a batch and what it is."""

    name: str
    format: str
    precision: str
    infer: Infer | None  # None: could not be loaded here (`note` says why)
    bytes: int
    verification: str
    backend: str = "-"
    note: str = ""
    path: Path | None = None  # the artifact's file, for the vendor tool


@dataclass
class BenchRow:
    subject: Subject
    accuracy: dict[str, float] | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    throughput: float | None = None  # samples/s at batch BATCH
    vendor: VendorFigure | None = None  # the format's own tool on the same file (None: no such tool, or not asked)


def evaluation_set(bundle: Path, manifest: Manifest) -> ReferenceSet:
    """The av-digits test split the model was trained for (when edgemm's data module can build it), else the
    reference set inside the bundle (labelled where its samples were)."""
    data = manifest.model.get("data", {})
    if data.get("name") == "av-digits":
        try:
            from edgemm.data.avdigits import config_from_record, load_split
            from edgemm.data.features import split_tensors

            test = load_split("test", config_from_record(data))
            image, audio, present = ReferenceSet.patterns(*split_tensors(test, manifest.image, manifest.audio))
            no_outputs = np.empty((len(present), 0), np.float32)  # labels only: no reference model here
            return ReferenceSet(image, audio, present, np.tile(test.labels, 3), no_outputs, no_outputs, "av-digits:test")
        except ImportError:
            pass
    recorded = manifest.model.get("reference")
    if not recorded:
        raise EdgemmError(f"{bundle}: no evaluation data (not an av-digits model and no reference samples in the bundle)")
    ref = ReferenceSet.load(bundle / recorded["file"])
    ref.name = f"{recorded['file']} ({recorded['samples']} samples)"
    return ref


def bundle_subjects(bundle: Path, manifest: Manifest, threads: int | None) -> list[Subject]:
    """One subject per artifact, loaded through `edgemm.runtimes` with the format's own backend."""
    subjects, store, digest = [], CheckStore(bundle), reference_digest(bundle, manifest)
    for art in manifest.artifacts:
        backend, path = format_backend(art.format).name, bundle / art.file
        known = store.lookup(art, digest, backend) if digest and art.verified else None
        verdict = "FAILED here" if known is not None and not known.passed else "passed" if art.verified else "FAILED"
        try:
            model = load_bundle(bundle, backend=backend, artifact=art.file, threads=threads)
        except EdgemmError as exc:
            subjects.append(Subject(art.file, art.format, art.precision, None, art.total_bytes, verdict, note=str(exc), path=path))
            continue
        subjects.append(Subject(art.file, art.format, art.precision, model.infer, art.total_bytes, verdict, model.backend.name, path=path))
    return subjects


def latencies(infer: Infer, data: ReferenceSet, runs: int, warmup: int = 20) -> list[float]:
    """Batch-1 wall times (ms) of `runs` calls on varied fused samples, after `warmup` untimed calls."""
    fused = np.flatnonzero(data.present.all(1))

    def one(k: int) -> None:
        i = fused[k % len(fused)]
        infer(data.image[i : i + 1], data.audio[i : i + 1], data.present[i : i + 1])

    return call_times_ms(one, runs, warmup)


def throughput(infer: Infer, data: ReferenceSet, runs: int) -> float:
    """Samples/s at batch BATCH: the median of `runs` calls."""
    eight = (data.image[:BATCH], data.audio[:BATCH], data.present[:BATCH])
    return 1000 * BATCH / float(np.median(call_times_ms(lambda _: infer(*eight), runs, warmup=5)))


def beside_vendor(s: Subject, data: ReferenceSet, runs: int, threads: int | None) -> tuple[list[float], VendorFigure | None]:
    """The subject's `runs` timed batch-1 calls, half before and half after its format's own tool runs on its file
    (same `threads`, `runs` timed calls), and the tool's figure (None: the format has no tool)."""
    times = latencies(s.infer, data, runs - runs // 2)
    figure = vendor_latency(s.path, s.format, threads, runs)
    return times + latencies(s.infer, data, runs // 2), figure


def bench(subjects: list[Subject], data: ReferenceSet, runs: int = 200, progress: Callable | None = None,
          vendor: bool = False, threads: int | None = None) -> list[BenchRow]:  # fmt: skip
    """Accuracy per modality pattern on `data` and timings, every subject measured in this one run; with `vendor`, each
    artifact's own benchmark tool runs on its file (same `threads`, `runs` timed calls) between two halves of the
    subject's own timed calls, so that a slower minute on one side of the tool's run does not make the ratio."""
    rows = []
    for s in progress(subjects) if progress else subjects:
        if s.infer is None:
            rows.append(BenchRow(s))
            continue
        accuracy = accuracy_by_mode(run_model(s.infer, data), data)
        if vendor and s.path is not None:
            times, figure = beside_vendor(s, data, runs, threads)
        else:
            times, figure = latencies(s.infer, data, runs), None
        p50, p95 = np.percentile(times, [50, 95])
        rows.append(BenchRow(s, accuracy, float(p50), float(p95), throughput(s.infer, data, max(runs // 4, 5)), figure))
    return rows


VENDOR_NOTE = ("vendor p50: the median batch-1 latency the format's own tool reports on the same file with the same threads "
               "(benchmark_app -hint latency: the request's latency inside C++, no Python call; litert-benchmark: CompiledModel.run_by_name "
               "wall time, its median read before it rounds it to the 0.01 ms it prints), inputs pre-filled, outputs not read; x vendor = p50 ms b1 / vendor p50. onnxruntime's wheel has no such tool.")  # fmt: skip


def render_bench(rows: list[BenchRow], title: str, baseline: str | None = None) -> str:
    """The table; with `baseline` (a subject name), a speed-up column against its batch-1 p50; where any row has a
    vendor figure (or tried for one), the vendor tool's p50 and our p50 over it."""
    base = next((r.p50_ms for r in rows if r.subject.name == baseline), None)
    vendor = any(r.vendor is not None for r in rows)
    headers = ["artifact", "format", "precision", "backend", "MB", "verification", *MODALITY_PATTERNS, "p50 ms b1", "p95 ms b1", f"samples/s b{BATCH}"]
    headers += [f"x {baseline}"] if base else []
    headers += ["vendor p50 ms", "x vendor"] if vendor else []
    body = []
    for r in rows:
        s = r.subject
        if r.p50_ms is None:
            body.append([s.name, s.format, s.precision, s.backend, f"{s.bytes / 1e6:.3f}", s.verification, *(["-"] * (len(headers) - 6))])
            continue
        line = [s.name, s.format, s.precision, s.backend, f"{s.bytes / 1e6:.3f}", s.verification,
                *(f"{r.accuracy[m]:.3f}" if m in r.accuracy else "-" for m in MODALITY_PATTERNS), f"{r.p50_ms:.3f}", f"{r.p95_ms:.3f}", f"{r.throughput:,.0f}"]  # fmt: skip
        line += [f"{base / r.p50_ms:.1f}x"] if base else []
        if vendor:
            v = r.vendor.p50_ms if r.vendor is not None else None
            line += [f"{v:.3f}", f"{r.p50_ms / v:.2f}"] if v else ["-", "-"]
        body.append(line)
    notes = [f"  {r.subject.name}: not run here: {r.subject.note}" for r in rows if r.p50_ms is None and r.subject.note]
    if vendor:
        notes.append(f"  {VENDOR_NOTE}")
        failed: dict[str, list[str]] = {}  # one line per reason (a missing tool is the same for every file)
        for r in rows:
            if r.vendor is not None and r.vendor.p50_ms is None:
                failed.setdefault(r.vendor.note, []).append(r.subject.name)
        notes += [f"  no vendor figure for {', '.join(names)}: {note}" for note, names in failed.items()]
    return "\n".join([format_table(headers, body, title), *notes])


def plot_bench(rows: list[BenchRow], path: Path, title: str) -> Path:
    """Accuracy (fused) against batch-1 p50 latency; marker area ∝ file size, one colour per format.
    Written to a temp file and renamed, so a failed plot never replaces a good one."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        from edgemm.runtimes.errors import BackendUnavailableError

        raise BackendUnavailableError("--plot", "matplotlib", "export") from exc
    measured = [r for r in rows if r.p50_ms is not None]
    formats = list(dict.fromkeys(r.subject.format for r in measured))
    colours = dict(zip(formats, plt.get_cmap("tab10").colors))
    fig, (ax, key) = plt.subplots(1, 2, figsize=(11, 5.5), dpi=120, gridspec_kw={"width_ratios": [2.2, 1]})
    largest = max(r.subject.bytes for r in measured)
    lines = []
    for n, r in enumerate(measured, 1):
        s = r.subject
        x, y = r.p50_ms, 100 * next(iter(r.accuracy.values()), float("nan"))
        ax.scatter(x, y, s=80 + 900 * s.bytes / largest, color=colours[s.format], alpha=0.6,
                   edgecolors="red" if s.verification.startswith("FAILED") else "black", linewidths=1.5)  # fmt: skip
        ax.annotate(str(n), (x, y), ha="center", va="center", fontsize=8, fontweight="bold")
        lines.append(f"{n:>2}  {s.format:<9}{s.precision:<5}{s.bytes / 1e6:6.2f} MB {r.p50_ms:7.3f} ms {y:6.2f} %{'  ' + s.verification if s.verification.startswith('FAILED') else ''}")
    for fmt in formats:
        ax.scatter([], [], color=colours[fmt], s=80, label=fmt)
    ax.set_xscale("log")
    ax.set_xlabel("latency p50 at batch 1 (ms, log scale) — left is faster")
    ax.set_ylabel("fused accuracy on the evaluation set (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.15, y=0.15)
    ax.legend(title="format", fontsize=8, title_fontsize=8, loc="lower right")
    key.axis("off")
    key.text(0, 1, "marker area = file size; red edge = not verified\n\n" + "\n".join(lines), va="top", family="monospace", fontsize=7.5)
    fig.suptitle(title.replace("; ", "\n", 1), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def bench_bundle(bundle: str | Path, threads: int | None = None, runs: int = 200, extra: list[Subject] = (),
                 vendor: bool = False) -> tuple[list[BenchRow], str]:  # fmt: skip
    """Benchmark every artifact of a bundle (and `extra` subjects, e.g. the torch eager model); returns the
    rows and a title naming the evaluation data and the machine. With `vendor`, each artifact's own benchmark
    tool (where installed) is run on its file too, a few seconds each."""
    import platform

    bundle = Path(bundle)
    manifest = Manifest.read(bundle)
    data = evaluation_set(bundle, manifest)
    subjects = [*extra, *bundle_subjects(bundle, manifest, threads)]
    try:
        from tqdm import tqdm

        progress = lambda items: tqdm(items, desc="bench", unit="artifact", leave=False)  # noqa: E731
    except ImportError:
        progress = None
    rows = bench(subjects, data, runs, progress, vendor=vendor, threads=threads)
    title = (f"{bundle.name}: accuracy on {data.name} ({len(data) // len(data.pattern_rows)} samples x {len(data.pattern_rows)} patterns); latency over {runs} runs, "
             f"{threads or 'default'} threads, {platform.machine()}")  # fmt: skip
    return rows, title


def format_targets(manifest: Manifest, rows: list[BenchRow], baseline: str) -> list[Target]:
    """Issue 4's targets, measured: verification numbers from the manifest, speed from the bench rows."""

    def worst(precision: str, key: str, pick=max) -> tuple[float, str]:
        arts = [a for a in manifest.artifacts if a.precision == precision and getattr(a.verification, key) is not None]
        if not arts:
            return float("nan"), "none"
        art = pick(arts, key=lambda a: getattr(a.verification, key))
        return getattr(art.verification, key), art.file

    fp32, fp32_file = worst("fp32", "max_abs_diff")
    fp16, fp16_file = worst("fp16", "max_abs_diff")
    fp16_rel, _ = worst("fp16", "max_rel_diff")
    int8 = [a for a in manifest.artifacts if a.precision == "int8"]
    agree = min((a.verification.top1_agreement_by_mode.get("fused", 0.0) for a in int8), default=float("nan"))
    drop = max((a.extra.get("quantization", {}).get("drop_points", np.inf) for a in int8), default=float("nan"))
    base = next(r.p50_ms for r in rows if r.subject.name == baseline)
    cpu = [r for r in rows if r.p50_ms is not None and r.subject.backend not in ("tensorrt", "torch")]
    fastest = min(cpu, key=lambda r: r.p50_ms)
    return [
        Target("every fp32 artifact within 1e-4 max |Δ logits| of torch", f"{fp32:.1e} (worst: {fp32_file})", fp32 <= 1e-4),
        Target("every fp16 artifact within 1e-2 max |Δ logits| (verified relative: 2e-3 of max |logit|)",
               f"{fp16:.1e} abs = {fp16_rel:.1e} of max |logit| (worst: {fp16_file})", fp16 <= 1e-2, gating=False),
        Target("every int8 artifact ≥ 99% top-1 agreement with the fp32 student (fused)", f"{agree:.2%} (worst of {len(int8)})", agree >= 0.99),
        Target("every int8 artifact ≤ 1 point accuracy loss (worst modality pattern and kernel family, val)",
               f"{drop:.2f} points (worst of {len(int8)})", drop <= 1.0),
        Target(f"fastest CPU backend ≥ 5x faster than {baseline} (b1 p50)",
               f"{base / fastest.p50_ms:.1f}x ({fastest.subject.name}, {fastest.subject.backend})", base / fastest.p50_ms >= 5, gating=False),
    ]  # fmt: skip
