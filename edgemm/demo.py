"""`edgemm demo`: the default job end to end on the built-in data set, no downloads."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from edgemm.apps.live import build_parser as live_parser
from edgemm.apps.live import run as run_live
from edgemm.bundle_bench import (
    Subject,
    bench_bundle,
    format_targets,
    plot_bench,
    render_bench,
)
from edgemm.checkpoint import default_checkpoint, load_checkpoint, recipe_file, save_checkpoint
from edgemm.compare import Entry, Target, compare, render, render_targets, targets
from edgemm.data.avdigits import SAMPLE_RATE, build, config_from_record, load_split
from edgemm.data.features import split_tensors
from edgemm.export.onnx_int8 import Int8Options
from edgemm.export.source import torch_infer
from edgemm.exporting import export_checkpoint
from edgemm.models import count_parameters
from edgemm.quantizing import INT8_FILE
from edgemm.runtimes import BundleModel, load_bundle
from edgemm.runtimes.errors import EdgemmError
from edgemm.runtimes.machine import this_machine
from edgemm.runtimes.media import read_audio, read_image, write_audio, write_image
from edgemm.runtimes.reference import ReferenceSet
from edgemm.sample_stream import use_sample_stream


TEACHERS = {"teacher": 8, "teacher16": 16}  # the shipped teachers and their epochs; the student learns from both


def _teachers(out: Path, retrain: bool) -> list[Path]:
    shipped = [default_checkpoint(name) for name in TEACHERS]
    if not retrain and all(path.is_file() for path in shipped):
        return shipped
    from edgemm.train import TrainConfig, train

    print("    training the two teachers (8 and 16 epochs: ~22 minutes on 2 cores)")
    return [save_checkpoint(out / f"{name}.safetensors", train(TrainConfig(threads=2, epochs=epochs))) for name, epochs in TEACHERS.items()]


def _student(out: Path, teachers: list[Path], retrain: bool) -> Path:
    if not retrain and default_checkpoint("student").is_file():
        return default_checkpoint("student")
    from edgemm.distill import DistillConfig, distill_checkpoint
    from edgemm.recipes import read_recipe

    recipe = read_recipe(DistillConfig, recipe_file(default_checkpoint("student")))  # the shipped student's
    print("    distilling the student from both teachers with the shipped student's recipe (~40 minutes on 2 cores)")
    return save_checkpoint(out / "student.safetensors", distill_checkpoint(teachers, recipe))


FORMATS_SPEC = "onnx,openvino,tflite,tensorrt"
LIVE_SECONDS = 20.0


def run_demo(out: Path, retrain: bool = False, threads: int = 2) -> int:
    """Data → teacher → student → every format + INT8, verified → compression table → per-format bench
    and plot → a prediction from files."""
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    say = lambda m: print(f"    {m}")  # noqa: E731
    print("1/8 built-in data set av-digits (MNIST digits + espeak-ng spoken digits, cached)")
    say(build())
    teachers = _teachers(out, retrain)
    teacher_path = teachers[0]
    teacher = load_checkpoint(teacher_path)
    print(f"2/8 teachers {', '.join(map(str, teachers))}: {count_parameters(teacher.model):,} parameters each (seed {teacher.record['training']['seed']}; "
          f"the student learned from their mean answer, the tables below compare with the first)")  # fmt: skip
    student_path = _student(out, teachers, retrain)
    student = load_checkpoint(student_path)
    run = student.record["distillation"]
    print(f"3/8 student {student_path}: {count_parameters(student.model):,} parameters, distilled in {run['seconds']:.0f} s "
          f"(best val fused {run['best_val_fused']:.3f}, teachers {run['teacher']['val']['fused']:.3f})")  # fmt: skip

    bundle = out / "av_digits.edgemm"
    machine = this_machine()
    print(f"4/8 export the student to {FORMATS_SPEC} with INT8 (calibrated on 300 training samples, ≤ 1 accuracy point "
          f"lost on the val split on every int8 kernel family), each artifact verified through its own runtime → {bundle}")  # fmt: skip
    say(f"this machine: {machine.describe()}")
    manifest = export_checkpoint(student_path, FORMATS_SPEC, bundle, log=say, int8_calib="av-digits", int8=Int8Options(max_drop=1.0))
    for art in manifest.artifacts:
        v = art.verification
        say(f"{art.file}: {'verified' if art.verified else 'FAILED (' + art.failure + ')'} ({v.backend or '?'}) against {v.reference or '?'}: "
            f"max |Δ logits| {v.max_abs_diff if v.max_abs_diff is not None else float('nan'):.1e}, top-1 agreement {v.top1_agreement or 0:.2%}")  # fmt: skip
    q = manifest.artifact(INT8_FILE).extra["quantization"] if INT8_FILE in {a.file for a in manifest.artifacts} else None
    if q:
        say(f"{INT8_FILE}: chosen by measurement on every int8 kernel family: {q['config_reason'].split(' — ')[0]}; weights {q['config']['weights']}")

    print(f"5/8 compression on the test split (held-out images and voices); batch-1 latency on {threads} threads")
    test = load_split("test", config_from_record(teacher.record.get("data", {})))
    image, audio = split_tensors(test, teacher.image, teacher.audio)
    reference = ReferenceSet.build(torch_infer(teacher.model, teacher.contract), image, audio, test.labels)
    fp32 = load_bundle(bundle, backend="onnxruntime", precision="fp32", threads=threads)
    int8 = _usable(bundle, threads, say, backend="onnxruntime", precision="int8") or _usable(bundle, threads, say, precision="int8")
    entries = [
        Entry("teacher fp32 (torch eager)", torch_infer(teacher.model, teacher.contract), count_parameters(teacher.model), teacher_path.stat().st_size),
        Entry(f"student fp32 ({fp32.artifact.file}, onnxruntime)", fp32.infer, count_parameters(student.model), fp32.artifact.bytes),
    ]
    if int8 is not None:
        entries.append(Entry(f"student int8 ({int8.artifact.file}, {int8.backend.name})", int8.infer, count_parameters(student.model), int8.artifact.total_bytes))
    rows = compare(entries, reference, agree_with=entries[1].name)
    print(render(rows, agree_label="agree w/ student fp32"))
    goals = targets(rows[0], rows[2], rows[1]) if int8 is not None else [Target("a verified INT8 student on this machine", "none", False)]
    print(render_targets(goals))

    print(f"6/8 every artifact on this machine ({threads} threads) beside the same student in PyTorch eager")
    eager = Subject("student torch eager", "pytorch", "fp32", torch_infer(student.model, student.contract), student_path.stat().st_size, "reference", "torch")
    bench_rows, title = bench_bundle(bundle, threads=threads, extra=[eager])
    print(render_bench(bench_rows, title, baseline=eager.name))
    bench_goals = format_targets(manifest, bench_rows, eager.name)
    bench_goals.append(Target("every artifact produced here verified on this machine", _unverified(manifest) or "all verified", not _unverified(manifest)))
    broken = [f"{f.name} ({f.error})" for f in manifest.failures if not f.skipped]
    bench_goals.append(Target("every format produced (skipped only where this machine lacks a package or a GPU)", "; ".join(broken) or "all", not broken))
    print(render_targets(bench_goals))
    say(f"plot: {plot_bench(bench_rows, out / 'bench.png', title)}")
    for f in manifest.failures:
        say(f"not built here: {f.name}: {f.error}" + (f"\n      on the device: {f.on_device}" if f.on_device else ""))

    print("7/8 a prediction from files with the torch-free runtime")
    auto = _usable(bundle, threads, say, precision="int8") or load_bundle(bundle, threads=threads)
    index = int(np.flatnonzero(~test.heavy_image & ~test.heavy_audio)[0])
    write_image(out / "sample.png", test.images[index])
    write_audio(out / "sample.wav", test.audio[index], SAMPLE_RATE)
    wav, rate = read_audio(out / "sample.wav")
    pred = auto.predict(image=read_image(out / "sample.png"), audio=wav, sample_rate=rate)
    say(f"{out / 'sample.png'} + {out / 'sample.wav'} → {pred.label} (p={pred.probabilities[pred.index]:.3f}, truth {test.labels[index]}) "
        f"with {auto.artifact.file} on {auto.backend.name} (backend=auto picks by machine among artifacts verified here)")  # fmt: skip
    say(f"try: edgemm predict {bundle} --image {out / 'sample.png'} --audio {out / 'sample.wav'}; edgemm verify {bundle}; edgemm bench {bundle} --plot bench.png")

    print(f"8/8 live: the built-in sample stream (a {LIVE_SECONDS:.0f} s slice of a 30 fps video of test digits + the spoken digits at "
          f"16 kHz, in real time) through the camera+microphone pipeline")  # fmt: skip
    live_args = [str(bundle), "--headless", "--events", str(out / "live-events.jsonl"), "--duration", str(LIVE_SECONDS),
                 "--threads", str(threads), "--status-every", "10", *(["--precision", "int8"] if int8 is not None else [])]  # fmt: skip
    args = live_parser("edgemm live").parse_args(live_args)
    use_sample_stream(args)
    summary = run_live(args, out=sys.stdout)
    say(f"events: {out / 'live-events.jsonl'}; on a device: edgemm live {bundle} (first camera + default microphone; --camera csi://0 on a Jetson)")
    missed = [t.name for t in [*goals, *bench_goals] if t.gating and not t.met]
    if summary.live_accuracy is None:
        missed.append("live answers scored on the sample stream")
    if missed:
        print(f"edgemm: error: missed target(s): {'; '.join(missed)}", file=sys.stderr)
        return 1
    return 0


def _usable(bundle: Path, threads: int, say, **choice) -> BundleModel | None:
    """The bundle's artifact for `choice` that is usable on this machine, or None with the reason shown."""
    try:
        return load_bundle(bundle, threads=threads, **choice)
    except EdgemmError as exc:
        say(f"no usable {' '.join(choice.values())} artifact: {exc}")
        return None


def _unverified(manifest) -> str:
    """The artifacts that failed verification, with why, or ''."""
    return "; ".join(f"{a.file} ({a.failure})" for a in manifest.artifacts if not a.verified)
