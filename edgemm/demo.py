"""`edgemm demo`: the default job end to end on the built-in data set, no downloads."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from edgemm.checkpoint import default_checkpoint, load_checkpoint, save_checkpoint
from edgemm.compare import Entry, compare, render, render_targets, targets
from edgemm.data.avdigits import SAMPLE_RATE, build, config_from_record, load_split
from edgemm.data.features import split_tensors
from edgemm.export.onnx_int8 import Int8Options
from edgemm.export.reference import ReferenceSet
from edgemm.export.source import torch_infer
from edgemm.exporting import export_checkpoint
from edgemm.models import count_parameters
from edgemm.quantizing import INT8_FILE, quantize_bundle
from edgemm.runtimes import load_bundle
from edgemm.runtimes.media import read_audio, read_image, write_audio, write_image


def _teacher(out: Path, retrain: bool) -> Path:
    if not retrain and default_checkpoint("teacher").is_file():
        return default_checkpoint("teacher")
    from edgemm.train import TrainConfig, train

    print("    training the teacher (a few minutes on 2 cores)")
    return save_checkpoint(out / "teacher.safetensors", train(TrainConfig(threads=2)))


def _student(out: Path, teacher: Path, retrain: bool) -> Path:
    if not retrain and default_checkpoint("student").is_file():
        return default_checkpoint("student")
    from edgemm.distill import DistillConfig, distill
    from edgemm.runtimes.manifest import sha256_file

    print("    distilling the student (a few minutes on 2 cores)")
    return save_checkpoint(out / "student.safetensors", distill(load_checkpoint(teacher), DistillConfig(threads=2), sha256_file(teacher)))


def run_demo(out: Path, retrain: bool = False, threads: int = 2) -> int:
    """Data → teacher → student → ONNX → INT8 → verify → comparison table → a prediction from files."""
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    say = lambda m: print(f"    {m}")  # noqa: E731
    print("1/6 built-in data set av-digits (MNIST digits + espeak-ng spoken digits, cached)")
    say(build())
    teacher_path = _teacher(out, retrain)
    teacher = load_checkpoint(teacher_path)
    print(f"2/6 teacher {teacher_path}: {count_parameters(teacher.model):,} parameters (trained with seed {teacher.record['training']['seed']})")
    student_path = _student(out, teacher_path, retrain)
    student = load_checkpoint(student_path)
    run = student.record["distillation"]
    print(f"3/6 student {student_path}: {count_parameters(student.model):,} parameters, distilled in {run['seconds']:.0f} s "
          f"(best val fused {run['best_val_fused']:.3f}, teacher {run['teacher']['val']['fused']:.3f})")  # fmt: skip

    bundle = out / "av_digits.edgemm"
    print(f"4/6 export the student to ONNX and verify against torch → {bundle}")
    export_checkpoint(student_path, "onnx", bundle, log=say)
    print("5/6 INT8 (QDQ, entropy calibration on 300 training samples), guard: ≤ 1 accuracy point lost on the val split")
    manifest = quantize_bundle(bundle, "av-digits", Int8Options(max_drop=1.0), log=say)
    for art in manifest.artifacts:
        v = art.verification
        say(f"{art.file}: {'verified' if art.verified else 'FAILED'} against {v.get('reference', '?')}: "
            f"max |Δ logits| {v.get('max_abs_diff', float('nan')):.1e}, top-1 agreement {v.get('top1_agreement', 0):.2%}")  # fmt: skip

    print(f"6/6 the test split (held-out images and voices); batch-1 latency on {threads} threads")
    test = load_split("test", config_from_record(teacher.record.get("data", {})))
    image, audio = split_tensors(test, teacher.image, teacher.audio)
    reference = ReferenceSet.build(torch_infer(teacher.model), image, audio, test.labels)
    fp32 = load_bundle(bundle, precision="fp32", threads=threads)
    int8 = load_bundle(bundle, precision="int8", threads=threads)
    entries = [
        Entry("teacher fp32 (torch eager)", torch_infer(teacher.model), count_parameters(teacher.model), teacher_path.stat().st_size),
        Entry(f"student fp32 ({fp32.artifact.file}, onnxruntime)", fp32.infer, count_parameters(student.model), fp32.artifact.bytes),
        Entry(f"student int8 ({int8.artifact.file}, onnxruntime)", int8.infer, count_parameters(student.model), int8.artifact.bytes),
    ]
    rows = compare(entries, reference, agree_with=entries[1].name)
    print(render(rows, agree_label="agree w/ student fp32"))
    checks = targets(rows[0], rows[2], rows[1])
    print(render_targets(checks))

    index = int(np.flatnonzero(~test.heavy_image & ~test.heavy_audio)[0])
    write_image(out / "sample.png", test.images[index])
    write_audio(out / "sample.wav", test.audio[index], SAMPLE_RATE)
    wav, rate = read_audio(out / "sample.wav")
    pred = int8.predict(image=read_image(out / "sample.png"), audio=wav, sample_rate=rate)
    print(f"predict from files with the torch-free runtime ({INT8_FILE}): {out / 'sample.png'} + {out / 'sample.wav'} → "
          f"{pred.label} (p={pred.probabilities[pred.index]:.3f}, truth {test.labels[index]})")  # fmt: skip
    print(f"    try: edgemm predict {bundle} --image {out / 'sample.png'} --audio {out / 'sample.wav'}")
    failed = [a.file for a in manifest.artifacts if not a.verified]
    if failed:
        print(f"edgemm: error: not verified: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
