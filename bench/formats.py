"""Every edge format on the default student: export (ONNX, OpenVINO, TFLite, TensorRT where it can run)
with INT8, then `edgemm bench` beside the same student in PyTorch eager, the targets, and the plot.

    .venv/bin/python bench/formats.py [--threads 2] [--runs 300] [--plot bench-formats.png]

Prints the table (batch-1 p50/p95 of repeated runs, batch-8 throughput, every row measured in this one run).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from edgemm.export.onnx_int8 import Int8Options
from edgemm.export.source import torch_infer

from edgemm.bundle_bench import (
    Subject,
    bench_bundle,
    format_targets,
    plot_bench,
    render_bench,
)
from edgemm.checkpoint import default_checkpoint, load_checkpoint
from edgemm.compare import render_targets
from edgemm.exporting import export_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=300, help="timed batch-1 calls per artifact")
    parser.add_argument("--plot", default="bench-formats.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    student_path = default_checkpoint("student")
    student = load_checkpoint(student_path)
    eager = Subject("student torch eager", "pytorch", "fp32", torch_infer(student.model, student.contract), student_path.stat().st_size, "reference", "torch")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "formats.edgemm"
        manifest = export_checkpoint(student_path, "onnx,openvino,tflite,tensorrt", bundle, log=lambda _: None, int8_calib="av-digits", int8=Int8Options(max_drop=1.0))
        rows, title = bench_bundle(bundle, threads=args.threads, runs=args.runs, extra=[eager])
    print(render_bench(rows, title, baseline=eager.name))
    print()
    print(render_targets(format_targets(manifest, rows, eager.name)))
    for f in manifest.failures:
        print(f"not produced here: {f.name}: {f.error}")
    print(f"plot: {plot_bench(rows, Path(args.plot), title)}")


if __name__ == "__main__":
    main()
