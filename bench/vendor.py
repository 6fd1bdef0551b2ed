"""Each artifact's batch-1 call against its format's own benchmark tool on the same file, in repeated rounds. A round
times the artifact's call as `edgemm bench` does (`BundleModel.infer` on varied reference samples), half before and
half after the tool's run (`benchmark_app -hint latency`, `litert-benchmark`), so that a slow minute on this shared VM
moves one round's ratio, not the figure; the figure is the median over rounds. Torch-free.

    .venv/bin/python bench/vendor.py BUNDLE [--rounds 7] [--runs 500] [--threads 2] [--plot bench-vendor.png]

Prints per artifact: our p50 and the tool's (medians over rounds), the ratio's median and range over rounds, and the
target (≤ 1.2x the tool per artifact); the plot shows every round's ratio.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from tqdm import tqdm

from edgemm.bundle_bench import beside_vendor, bundle_subjects, evaluation_set
from edgemm.runtimes.manifest import Manifest
from edgemm.tables import format_table
from edgemm.vendor_bench import TOOLS

TARGET = 1.2  # our call / the tool's latency


def rounds(bundle: Path, rounds: int, runs: int, threads: int) -> dict[str, list[tuple[float, float]]]:
    """Per artifact with a vendor tool: (our p50 ms, the tool's p50 ms) of each round that got a tool figure."""
    manifest = Manifest.read(bundle)
    data = evaluation_set(bundle, manifest)
    subjects = [s for s in bundle_subjects(bundle, manifest, threads) if s.format in TOOLS and s.infer is not None]
    pairs: dict[str, list[tuple[float, float]]] = {s.name: [] for s in subjects}
    with tqdm(total=rounds * len(subjects), desc="rounds", unit="run", leave=False) as bar:
        for _ in range(rounds):
            for s in subjects:
                times, figure = beside_vendor(s, data, runs, threads)
                if figure is not None and figure.p50_ms is not None:
                    pairs[s.name].append((statistics.median(times), figure.p50_ms))
                else:
                    bar.write(f"{s.name}: no figure from {TOOLS[s.format]} this round ({figure.note if figure else 'no tool'})")
                bar.update()
    return pairs


def ratios(got: list[tuple[float, float]]) -> list[float]:
    return [ours / tool for ours, tool in got]


def render(pairs: dict[str, list[tuple[float, float]]], title: str) -> str:
    headers = ["artifact", "rounds", "ours p50 ms", "tool p50 ms", "ours / tool: median", "min", "max", f"rounds ≤ {TARGET}x", f"≤ {TARGET}x"]
    body = []
    for name, got in pairs.items():
        if not got:
            body.append([name, 0, *["-"] * (len(headers) - 2)])
            continue
        each = ratios(got)
        ratio = statistics.median(each)
        body.append([name, len(got), f"{statistics.median(o for o, _ in got):.3f}", f"{statistics.median(t for _, t in got):.3f}",
                     f"{ratio:.2f}", f"{min(each):.2f}", f"{max(each):.2f}", sum(r <= TARGET for r in each), "yes" if ratio <= TARGET else "NO"])  # fmt: skip
    return format_table(headers, body, title)


def plot(pairs: dict[str, list[tuple[float, float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(pairs)), dpi=120)
    for y, (name, got) in enumerate(pairs.items()):
        each = ratios(got)
        ax.scatter(each, [y] * len(each), alpha=0.6)
        if each:
            ax.plot([statistics.median(each)] * 2, [y - 0.3, y + 0.3], color="black")
    ax.axvline(TARGET, color="red", linestyle="--", label=f"target {TARGET}x")
    ax.set_yticks(range(len(pairs)), list(pairs))
    ax.set_xlabel("our batch-1 p50 / the vendor tool's p50 (each dot a round, bar = median)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="a bundle with OpenVINO and/or TFLite artifacts (make demo: demo-out/av_digits.edgemm)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=500, help="timed batch-1 calls per round, ours and the tool's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot", type=Path, default=Path("bench-vendor.png"))
    args = parser.parse_args()
    pairs = rounds(args.bundle, args.rounds, args.runs, args.threads)
    title = f"{args.bundle.name}: batch 1, {args.threads} threads, {args.runs} calls per round each, {args.rounds} rounds"
    print(render(pairs, title))
    plot(pairs, args.plot, title)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
