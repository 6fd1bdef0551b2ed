"""Compression benchmark on the default models: teacher (torch eager) vs student fp32 vs student INT8,
and edgemm's INT8 side by side with plain `quantize_static` defaults on the same student and data.

    .venv/bin/python bench/compress.py [--threads 2] [--runs 300]

Prints tables (median batch-1 latency of repeated runs, all measured in this one run).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from edgemm.export.onnx_int8 import Int8Options
from edgemm.export.source import torch_infer
from edgemm.runtimes import load_bundle
from edgemm.runtimes.backends import BACKENDS
from edgemm.runtimes.manifest import Manifest
from edgemm.runtimes.reference import ReferenceSet

from edgemm.checkpoint import default_checkpoint, load_checkpoint
from edgemm.compare import Entry, compare, render, render_targets, targets
from edgemm.data.avdigits import config_from_record, load_split
from edgemm.data.features import split_tensors
from edgemm.exporting import export_checkpoint
from edgemm.models import count_parameters
from edgemm.quantizing import INT8_FILE, quantize_bundle
from edgemm.sources import calibration_set
from edgemm.tables import format_table


def plain_defaults(fp32: Path, out: Path, feeds: list[dict]) -> None:
    """What a user gets from quantize_static without tuning: QOperator, per-tensor, MinMax, uint8."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader:
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    quantize_static(
        str(fp32), str(out), Reader(), quant_format=QuantFormat.QOperator, per_channel=False,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.MinMax,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=300, help="timed batch-1 calls per model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    teacher_path, student_path = default_checkpoint("teacher"), default_checkpoint("student")
    teacher, student = load_checkpoint(teacher_path), load_checkpoint(student_path)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bench.edgemm"
        export_checkpoint(student_path, "onnx", bundle, log=lambda _: None)
        quantize_bundle(bundle, "av-digits", Int8Options(max_drop=1.0), log=lambda _: None)
        manifest = Manifest.read(bundle)
        plain = Path(tmp) / "plain.int8.onnx"
        plain_defaults(bundle / "model.onnx", plain, calibration_set("av-digits", manifest.contract, 300, manifest.model.get("data")).feeds())
        plain_backend = BACKENDS["onnxruntime"].open(plain, threads=args.threads)

        test = load_split("test", config_from_record(teacher.record.get("data", {})))
        image, audio = split_tensors(test, teacher.image, teacher.audio)
        reference = ReferenceSet.build(torch_infer(teacher.model, teacher.contract), image, audio, test.labels)
        fp32 = load_bundle(bundle, precision="fp32", threads=args.threads)
        int8 = load_bundle(bundle, precision="int8", threads=args.threads)
        n = count_parameters(student.model)
        entries = [
            Entry("teacher fp32 (torch eager)", torch_infer(teacher.model, teacher.contract), count_parameters(teacher.model), teacher_path.stat().st_size),
            Entry("student fp32 (onnxruntime)", fp32.infer, n, fp32.artifact.bytes),
            Entry("student int8, edgemm (QDQ, per-channel, guard)", int8.infer, n, int8.artifact.bytes),
            Entry("student int8, plain defaults (QOperator, per-tensor, uint8)", lambda i, a, p: plain_backend.run({"image": i, "audio": a, "present": p}), n, plain.stat().st_size),
        ]
        rows = compare(entries, reference, agree_with=entries[1].name, runs=args.runs)
    print(render(rows, title=f"test split ({len(test)} samples x 3 modality patterns), {args.threads} threads", agree_label="agree w/ student fp32"))
    print()
    print(render_targets(targets(rows[0], rows[2], rows[1])))
    print()
    base = rows[1].accuracy
    side = [
        [r.entry.name.split(", ", 1)[1], *(f"{100 * (base[m] - r.accuracy[m]):+.2f}" for m in base), f"{r.agreement['fused']:.2%} / {r.agreement['all']:.2%}"]
        for r in rows[2:]
    ]
    print(format_table(["INT8 recipe", "fused drop", "image-only drop", "audio-only drop", "agreement (fused / all)"], side, "accuracy points lost vs student fp32"))
    q = manifest.artifact(INT8_FILE).extra["quantization"]
    print(f"\nedgemm INT8: {q['calibration']['used']} calibration samples from {q['calibration']['source']}, "
          f"{len(q['excluded_nodes'])} node(s) kept in float, guard drop {q['drop_points']:.2f} points on the val split")  # fmt: skip


if __name__ == "__main__":
    main()
