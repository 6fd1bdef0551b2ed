"""The `edgemm` command line. Device-side commands (info, predict, verify, live, bench, build-engine) never import torch.

The device install (`edgemm-device`, built from `device/pyproject.toml`) holds this module with the runtime, the live
app and the few modules the device commands use; the toolkit's commands then fail with one line naming what to install."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgemm import __version__
from edgemm.runtimes.errors import (
    DEVICE_DISTRIBUTION,
    EdgemmError,
    installed_distribution,
)

TORCH_COMMANDS = ("train", "distill", "quantize", "export", "demo")
# commands that need the toolkit's export side (edgemm.export), with the extra that provides what they use
TOOLKIT_COMMANDS = {**dict.fromkeys(TORCH_COMMANDS, "export,data"), "build-engine": "tensorrt"}


class UsageError(EdgemmError):
    """Flags that do not go together."""


class ToolkitMissingError(EdgemmError):
    """A command (or an option of one) needs the full toolkit, and this is the device install, which leaves it out."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} is not in the device install ({DEVICE_DISTRIBUTION}): install the full toolkit in its place: "
                         f"pip uninstall edgemm-device && pip install 'edgemm[{extra}]'")  # fmt: skip


def device_install() -> bool:
    """Whether this edgemm is the device install: the runtime and the device commands, without the export side."""
    return installed_distribution() == DEVICE_DISTRIBUTION


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from edgemm.checkpoint import save_checkpoint
    from edgemm.train import TrainConfig, tiny_config, train

    config = tiny_config() if args.tiny else TrainConfig()
    flags = ("epochs", "batch_size", "lr", "image_augment", "seed", "threads", "device", "limit")
    overrides = {k: getattr(args, k) for k in flags if getattr(args, k) is not None}
    config = replace(config, **overrides)
    ckpt = train(config, progress=not args.quiet)
    path = save_checkpoint(args.output, ckpt)
    run = ckpt.record["training"]
    print(f"wrote {path} (+ {path.with_suffix('.json').name}): {run['parameters']:,} parameters, "
          f"best val fused accuracy {run['best_val_fused']:.3f}, {run['seconds']:.0f} s")  # fmt: skip
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from edgemm.checkpoint import recipe_file, save_checkpoint
    from edgemm.distill import DistillConfig, distill, distill_checkpoint
    from edgemm.recipes import read_recipe, write_recipe
    from edgemm.runtimes.manifest import sha256_file
    from edgemm.train import training_device

    config = read_recipe(DistillConfig, args.recipe) if args.recipe else DistillConfig()
    flags = ("epochs", "batch_size", "lr", "temperature", "seed", "threads", "device", "limit", "patience")
    config = replace(config, **{k: getattr(args, k) for k in flags if getattr(args, k) is not None})
    if args.val and not args.data:
        raise UsageError("--val is for --data (validation samples of your data set)")
    training_device(config.device)  # refused before a model or data set is read
    if any(".py:" in teacher for teacher in args.teacher):
        if len(args.teacher) > 1:
            raise UsageError("several --teacher are for built-in checkpoints (an ensemble); a FILE.py:FUNCTION teacher comes alone")
        if not args.spec or not args.data:
            raise UsageError("a --teacher FILE.py:FUNCTION needs --spec (its contract) and --data (samples to distil on)")
        from edgemm.user_model import user_source

        source = user_source(*_user_model(args.teacher[0], args.weights, args.spec))
        data = _distill_data(args, source.contract)
        student = distill(source, data, config, sha256_file(Path(args.weights)) if args.weights else "", progress=not args.quiet)
    else:
        if args.spec or args.weights:
            raise UsageError("--spec and --weights are for a --teacher FILE.py:FUNCTION (a checkpoint carries its own)")
        data = None
        if args.data:
            from edgemm.checkpoint import load_checkpoint

            data = _distill_data(args, load_checkpoint(args.teacher[0]).contract)
        student = distill_checkpoint(args.teacher, config, data, progress=not args.quiet)
    path = save_checkpoint(args.output, student)
    recipe = write_recipe(config, recipe_file(path))
    run = student.record["distillation"]
    first = next(iter(run["teacher"]["val"]))
    print(f"wrote {path} (+ {path.with_suffix('.json').name}, {recipe.name}): {run['parameters']:,} parameters "
          f"({run['teacher']['parameters'] / run['parameters']:.0f}x fewer than the teacher), best val {first} {run['val_metric']} "
          f"{run['best_val_fused']:.3f} (teacher {run['teacher']['val'][first]:.3f}), {run['seconds']:.0f} s")  # fmt: skip
    return 0


def _user_model(model: str, weights: str | None, spec_path: str):
    """The user's module with its weights, its contract and its name (the spec's, else the file's)."""
    from edgemm.runtimes.contract import ModelContract
    from edgemm.user_model import load_factory, load_weights, read_spec

    spec = read_spec(spec_path)
    contract = ModelContract.from_spec(spec, spec_path)  # a bad spec fails before the model is even built
    module = load_factory(model)
    if weights:
        load_weights(module, weights)
    return module, contract, spec.get("name") or Path(model.rpartition(":")[0]).stem


def _distill_data(args: argparse.Namespace, contract):
    """--data (and --val) read whole, shaped by the teacher's contract."""
    from edgemm.distill import samples_data
    from edgemm.sources import calibration_set

    everything = 10**9
    train = calibration_set(args.data, contract, everything)
    val = calibration_set(args.val, contract, everything) if args.val else None
    print(f"distilling on {len(train)} samples of {args.data} ({sum(int(label) >= 0 for label in train.labels)} labelled)"
          + (f"; validating on {len(val)} of {args.val}" if val is not None else "; validating on a held-out part of them"))  # fmt: skip
    return samples_data(train, val, {"name": "user", "train": str(args.data), "val": str(args.val) if args.val else None})


def _cmd_quantize(args: argparse.Namespace) -> int:
    from edgemm.export.onnx_int8 import Int8Options
    from edgemm.qat import QATConfig
    from edgemm.quantizing import INT8_FILE, quantize_bundle

    options = Int8Options(
        method=args.method, max_drop=args.max_drop, exclude=tuple(args.exclude or ()), max_float=args.max_float, per_channel=not args.per_tensor,
        config=args.int8_config,
    )
    manifest = quantize_bundle(args.bundle, args.calib, options, size=args.samples, checkpoint=args.checkpoint, qat=QATConfig(epochs=args.qat_epochs))
    print(_artifact_table(manifest))
    art = manifest.artifact(INT8_FILE)
    q = art.extra["quantization"]
    print(f"{INT8_FILE}: {q['config']['name']} ({q['config']['weights']}), worst kernel family's {q['metric']} drop {q['drop_points']:.2f} points "
          f"(budget {q['max_drop']}){' after QAT' if q['qat'] else ''}, {len(q['excluded_nodes'])} node(s) kept in float"
          f"{': ' + ', '.join(q['excluded_nodes']) if q['excluded_nodes'] else ''}")  # fmt: skip
    failed = [a.file for a in manifest.artifacts if a.precision == "int8" and not a.verified]
    if failed:
        print(f"edgemm: error: {', '.join(failed)}: over the budget or failed verification (recorded in the manifest)", file=sys.stderr)
        return 1
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from edgemm.export.onnx_int8 import Int8Options

    if args.calib and not args.int8:
        raise UsageError("--calib is for --int8")
    if bool(args.checkpoint) == bool(args.model):
        raise UsageError("give a checkpoint, or your own model with --model FILE.py:FUNCTION --spec model.yaml --data DATA")
    options = Int8Options(max_drop=args.max_drop, config=args.int8_config)
    if args.checkpoint:
        from edgemm.exporting import export_checkpoint

        if args.spec or args.weights:
            raise UsageError("--spec and --weights are for --model (a checkpoint carries its own)")
        calib = (args.calib or args.data or "av-digits") if args.int8 else None
        manifest = export_checkpoint(args.checkpoint, args.to, args.output, samples=args.samples, int8_calib=calib, int8=options, data=args.data)
        return _report(manifest, f"bundle written to {args.output}")
    from edgemm.exporting import export_model

    if not args.spec or not args.data:
        raise UsageError("--model needs --spec (the model's contract) and --data (held-out samples to verify on)")
    module, contract, name = _user_model(args.model, args.weights, args.spec)
    calib = (args.calib or args.data) if args.int8 else None
    manifest = export_model(module, contract, args.to, args.output, args.data, samples=args.samples, int8_calib=calib, int8=options, name=name)
    return _report(manifest, f"bundle written to {args.output}")


def _report(manifest, done: str) -> int:
    """Print the artifact table and what failed; exit status 1 when anything did."""
    print(_artifact_table(manifest))
    for f in manifest.failures:
        print(f"not produced: {f.name} ({f.stage}): {f.error}")
    failed = [a.file for a in manifest.artifacts if not a.verified] + [f.name for f in manifest.failures]
    if failed:
        print(f"edgemm: error: not verified or not produced: {', '.join(failed)} (the rest of the bundle is usable)", file=sys.stderr)
        return 1
    print(done)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from edgemm.bundle_bench import bench_bundle, plot_bench, render_bench

    extra = [_eager_subject(args.checkpoint, args.threads)] if args.checkpoint else []
    rows, title = bench_bundle(args.bundle, threads=args.threads, runs=args.runs, extra=extra, vendor=not args.no_vendor)
    print(render_bench(rows, title, baseline=extra[0].name if extra else None))
    if args.plot:
        print(f"plot written to {plot_bench(rows, Path(args.plot), title)}")
    return 0


def _eager_subject(checkpoint: str, threads: int | None):
    """The checkpoint's model in PyTorch eager, as a bench row to compare the artifacts with."""
    import torch

    from edgemm.bundle_bench import Subject
    from edgemm.checkpoint import load_checkpoint
    from edgemm.export.source import torch_infer

    if threads:
        torch.set_num_threads(threads)
    path = Path(checkpoint)
    ckpt = load_checkpoint(path)
    return Subject("torch eager", "pytorch", "fp32", torch_infer(ckpt.model, ckpt.contract), path.stat().st_size, "reference", "torch")


def _cmd_live(args: argparse.Namespace) -> int:
    from edgemm.apps.live import run

    if args.sample:
        from edgemm.sample_stream import use_sample_stream

        use_sample_stream(args)
    run(args)
    return 0


def _cmd_build_engine(args: argparse.Namespace) -> int:
    from edgemm.export.tensorrt_engine import build_bundle_engines

    return _report(build_bundle_engines(args.bundle), f"engines built and verified in {args.bundle}")


def _cmd_verify(args: argparse.Namespace) -> int:
    if args.checkpoint:
        from edgemm.exporting import verify_bundle

        manifest = verify_bundle(args.bundle, args.checkpoint, samples=args.samples, log=lambda _: None)
        print(_artifact_table(manifest))
        failed = [a.file for a in manifest.artifacts if not a.verified]
    else:
        failed = _verify_here(args)
    if failed:
        print(f"edgemm: error: failed verification: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


CLOSENESS = "max|Δ| / cos min,mean"  # logits: max |Δ|; an embedding: cosine to the reference, worst row and mean


def _closeness(measured: dict) -> str:
    """How close an artifact's outputs came to the reference: max |Δ logits|, or an embedding's cosine (worst, mean)."""
    if "min_cosine" in measured:
        return f"cos {measured['min_cosine']:.4f}, {measured['mean_cosine']:.4f}"
    return f"{measured['max_abs_diff']:.1e}" if "max_abs_diff" in measured else "-"


def _verify_here(args: argparse.Namespace) -> list[str]:
    """`edgemm verify BUNDLE` without a checkpoint: torch-free, on this machine, against the bundle's reference samples.
    Returns what failed (here or at export); nothing checkable here is an error."""
    from edgemm.runtimes.machine import this_machine
    from edgemm.runtimes.on_target import verify_here
    from edgemm.tables import format_table

    machine = this_machine()
    print(f"this machine: {machine.describe()}")
    report = verify_here(args.bundle, only=set(args.only) if args.only else None, threads=args.threads)
    rows = []
    for c in report.checks:
        m = c.measured
        fused = m.get("top1_agreement_by_mode", {}).get("fused")
        rows.append([c.file, f"{c.backend} {c.backend_version}", "passed" if c.passed else f"FAILED: {c.reason}",
                     _closeness(m), f"{100 * fused:.1f} %" if fused is not None else "-",
                     f"{100 * m['agreement_with_verified']:.1f} %" if "agreement_with_verified" in m else "-",
                     f"{m['drop_points']:.1f}" if "drop_points" in m else "-", f"{c.seconds:.2f}"])  # fmt: skip
    rows += [[file, "-", f"FAILED at export: {why}", *["-"] * 5] for file, why in report.failed_at_export.items()]
    print(format_table(["artifact", "backend", "on this machine", CLOSENESS, "fused agree", "agree w/ verified", "acc drop", "s"], rows))
    for file, why in report.skipped.items():
        print(f"not run here: {file}: {why}")
    if report.record is not None:
        print(f"recorded for this machine class ({machine.key}) in {report.record}")
    if not report.checks:
        raise UsageError(f"{args.bundle}: no artifact could be checked on this machine" + (f" ({'; '.join(report.skipped.values())})" if report.skipped else ""))
    if args.only and report.skipped:
        raise UsageError(f"not checked here: {', '.join(report.skipped)}")
    return [c.file for c in report.checks if not c.passed] + list(report.failed_at_export)


def _artifact_table(manifest) -> str:
    from edgemm.tables import format_table

    rows = []
    for a in manifest.artifacts:
        v = a.verification
        acc = v.accuracy
        rows.append([
            a.file, a.format, a.precision, f"{a.total_bytes / 1e6:.2f}", "passed" if a.verified else f"FAILED {v.error}".strip(),
            _closeness(v.to_dict()), f"{v.top1_agreement:.2%}" if v.top1_agreement is not None else "-",
            f"{next(iter(acc.values())):.3f}" if acc else "-",
        ])  # fmt: skip
    return format_table(["artifact", "format", "precision", "MB", "verification", CLOSENESS, "agree", "acc (1st pattern)"], rows)


def _cmd_info(args: argparse.Namespace) -> int:
    from edgemm.runtimes.manifest import Manifest

    manifest = Manifest.read(Path(args.bundle))
    if args.json:
        print(json.dumps(manifest.to_dict(), indent=1))
        return 0
    model = manifest.model
    print(f"bundle {args.bundle}: {model.get('name')} ({model.get('arch')}, {model.get('parameters', 0):,} parameters), schema v{manifest.schema_version}")
    for line in _contract_lines(manifest.contract):
        print(line)
    if manifest.contract.audio is not None:
        gate = manifest.speech_gate
        print(f"speech gate: {gate.describe()}; {'on' if gate.live else 'off'} in the live app, {'on' if gate.predict else 'off'} in predict")
    print(_artifact_table(manifest))
    for f in manifest.failures:
        print(f"not produced: {f.name} ({'skipped' if f.skipped else 'failed'} at {f.stage}): {f.error}")
        if f.on_device:
            print(f"  on the device: {f.on_device}   or, inside the bundle folder: {f.trtexec}")
    _print_checks(Path(args.bundle))
    return 0


def _contract_lines(contract) -> list[str]:
    """The model contract, a line per input and for the outputs."""
    lines = []
    if contract.image is not None:
        img = contract.image
        lines.append(f"image → '{contract.image_input}' ({contract.image_layout}): {img.channels}x{img.height}x{img.width}, "
                     f"mean {list(img.mean)} std {list(img.std)}, {img.crop} crop")  # fmt: skip
    if contract.audio is not None:
        aud = contract.audio
        front = f"log-mel {aud.n_mels}x{aud.frames} (n_fft {aud.n_fft}, hop {aud.hop_length})" if aud.features == "log-mel" else f"waveform {aud.clip_samples} samples"
        lines.append(f"audio → '{contract.audio_input}': {aud.sample_rate} Hz, {aud.clip_seconds} s window, {front}")
    mask = f" via '{contract.mask_input}'" if contract.missing == "presence-mask" else ""
    lines.append(f"missing modality: {contract.missing}{mask}")
    outputs = [f"class scores '{contract.logits_output}' over {len(contract.labels)} labels ({', '.join(contract.labels)})"] if contract.logits_output else []
    outputs += [f"embedding '{contract.embedding_output}'" + (f" ({contract.embedding_dim})" if contract.embedding_dim else "")] if contract.embedding_output else []
    lines.append("outputs: " + "; ".join(outputs) + f"; batch {'dynamic' if contract.dynamic_batch else 1}")
    return lines


def _print_checks(bundle: Path) -> None:
    """One line per machine class that checked the bundle's artifacts on itself."""
    from edgemm.runtimes.target_check import CHECKS_DIR

    for path in sorted((bundle / CHECKS_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            checks = list(record["checks"].values())
            failed = [c["file"] for c in checks if not c["passed"]]
            print(f"checked on {record['machine']['cpu']} ({record['machine']['int8_kernels']}): {len(checks) - len(failed)} passed"
                  + (f", FAILED: {', '.join(failed)}" if failed else ""))  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):
            print(f"checked on ?: unreadable record {path}")


def _cmd_predict(args: argparse.Namespace) -> int:
    from edgemm.apps.live import apply_speech_threshold
    from edgemm.runtimes import load_bundle
    from edgemm.runtimes.errors import InputError
    from edgemm.runtimes.media import read_audio, read_image

    if not args.image and not args.audio:
        raise InputError("give --image, --audio or both")
    image = read_image(args.image) if args.image else None
    audio, rate = read_audio(args.audio) if args.audio else (None, None)
    model = load_bundle(args.bundle, backend=args.backend, precision=args.precision, threads=args.threads, self_check=not args.no_self_check)
    if args.enroll:
        gallery = model.enroll(args.enroll, warn=lambda message: print(f"edgemm predict: {message}", file=sys.stderr))
        print(f"enrolled {len(gallery.vectors)} examples of {len(gallery.labels)} labels from {args.enroll}", file=sys.stderr)
    apply_speech_threshold(model, args)
    pred = model.predict(image=image, audio=audio, sample_rate=rate, speech_gate=args.speech_gate)
    where = f"from {'+'.join(pred.modalities)}; {model.artifact.file} on {model.backend.name}, {pred.preprocess_ms + pred.inference_ms:.1f} ms"
    if args.json:
        print(json.dumps({**pred.to_dict(), "artifact": model.artifact.file, "backend": model.backend.name}))
        return 0
    if pred.speech is not None:
        d = pred.speech
        measured = f"range {d.range_db:.1f} dB, loudest frames {d.level_dbfs:.0f} dBFS, flatness {d.flatness_db:.1f} dB"
        print(f"speech gate: speech ({measured})" if d.speech else f"speech gate: no speech: {d.reason}; {measured}; "
              + ("the audio is left out" if pred.gated else "the audio is used (the gate is off: --speech-gate leaves it out)"))  # fmt: skip
    if not pred.modalities:
        print("no answer: the audio holds no speech and there is no image to answer from")
    elif pred.label is None:
        print(f"embedding of {len(pred.embedding)} values ({where}); the model gives no class scores: --enroll FOLDER answers with "
              "the nearest enrolled example, --json prints the vector")  # fmt: skip
    else:
        scores, kind = pred.scores, "cos" if pred.similarities is not None else "p"
        top = sorted(range(len(scores)), key=lambda i: -scores[i])[:3]
        others = ", ".join(f"{model.labels[i]} {scores[i]:.2f}" for i in top[1:])
        print(f"{pred.label}  ({kind}={pred.confidence:.3f}; next: {others}; {where})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from edgemm.demo import run_demo

    return run_demo(out=Path(args.out), retrain=args.train, threads=args.threads)


def build_parser() -> argparse.ArgumentParser:
    from edgemm.apps.live import add_live_arguments, add_speech_threshold
    from edgemm.runtimes.backends import BACKENDS

    if device_install():  # the toolkit's commands are still listed; `main` answers them with what to install
        CONFIGS, FORMATS = (), ()
    else:
        from edgemm.export.onnx_int8 import CONFIGS
        from edgemm.export.registry import FORMATS

    parser = argparse.ArgumentParser(prog="edgemm", description="Compress, export, verify and run camera+microphone models on edge devices.")
    parser.add_argument("--version", action="version", version=f"edgemm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train the teacher on the built-in av-digits data set")
    p.add_argument("-o", "--output", default="teacher.safetensors", help="checkpoint path (a .json sidecar is written beside it)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--image-augment", type=float, help="fraction of training images moved by a small random affine (default 0)")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--device", help="torch device to train on (default cpu; cuda where there is one)")
    p.add_argument("--limit", type=int, help="use only the first N training samples")
    p.add_argument("--tiny", action="store_true", help="a seconds-long configuration (small data and model) for smoke tests")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("distill", help="distil a teacher (a checkpoint or your own model) into a small student (KD + embedding alignment)")
    p.add_argument("--teacher", required=True, action="append", help="teacher checkpoint, or your own model as FILE.py:FUNCTION (with --spec, "
                   "--weights, --data); repeat it to teach from several checkpoints' mean answer (an ensemble)")  # fmt: skip
    p.add_argument("--spec", help="a FILE.py:FUNCTION teacher's contract (model.yaml)")
    p.add_argument("--weights", help="a FILE.py:FUNCTION teacher's weights (safetensors or a state_dict file)")
    p.add_argument("--data", help="samples to distil on (labels optional): a folder of [<label>/]<name>.png+.wav pairs, a .csv list or a "
                   "video with its .wav; default for a built-in checkpoint: its data set")  # fmt: skip
    p.add_argument("--val", help="validation samples (labelled: best epoch by accuracy; else by agreement with the teacher); default: "
                   "a held-out tenth of --data")  # fmt: skip
    p.add_argument("-o", "--output", default="student.safetensors", help="student checkpoint (+ .json and the effective .recipe.yaml)")
    p.add_argument("--recipe", help="YAML recipe with DistillConfig fields; flags below override it")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--temperature", type=float)
    p.add_argument("--patience", type=int, help="early stopping after N epochs without a better val accuracy")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--device", help="torch device to train on (default cpu; cuda where there is one)")
    p.add_argument("--limit", type=int, help="use only the first N training samples")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_distill)

    p = sub.add_parser("quantize", help="add an INT8 (QDQ) ONNX artifact, calibrated on real data, under an accuracy budget")
    p.add_argument("bundle")
    p.add_argument("--calib", required=True, help="av-digits[:split], a folder of name.png+name.wav pairs, a CSV (image,audio[,label]) or a video with its .wav")
    p.add_argument("--method", default="entropy", help="calibration: entropy (default), minmax or percentile")
    p.add_argument("--max-drop", type=float, default=1.0, help="accuracy points the INT8 model may lose (worst modality pattern)")
    p.add_argument("--samples", type=int, default=300, help="calibration samples (class-stratified)")
    p.add_argument("--exclude", action="append", help="node name to keep in float (repeatable)")
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor (for targets without per-channel int8)")
    p.add_argument("--int8-config", default="auto", choices=["auto", *CONFIGS],
                   help="ONNX INT8 types and weight bits; auto: measured on every int8 kernel family, the best within budget")
    p.add_argument("--max-float", type=float, default=0.25, help="fraction of quantizable nodes the guard may keep in float before PTQ counts as failed")
    p.add_argument("--checkpoint", help="the bundle's fp32 checkpoint: enables the QAT fallback when PTQ cannot meet the budget")
    p.add_argument("--qat-epochs", type=int, default=3)
    p.set_defaults(func=_cmd_quantize)

    p = sub.add_parser("export", help="export a checkpoint, or your own model (--model), to a bundle and verify every artifact")
    p.add_argument("checkpoint", nargs="?", help="a .safetensors checkpoint written by `edgemm train` (or use --model)")
    p.add_argument("--model", metavar="FILE.py:FUNCTION", help="your own model: a function that builds the torch module")
    p.add_argument("--weights", help="weights for --model: .safetensors, or a state_dict saved by torch.save (read without running pickled code)")
    p.add_argument("--spec", help="the --model's contract: model.yaml (inputs, preprocessing, missing modality, outputs, labels)")
    p.add_argument("--data", help="held-out samples to verify on: a folder of <label>/<name>.png+.wav pairs, a .csv list or a video "
                   "(needed for --model and for a checkpoint not trained on the built-in data set)")  # fmt: skip
    p.add_argument("--to", default="onnx", help=f"comma-separated formats: {', '.join(FORMATS)}")
    p.add_argument("-o", "--output", required=True, help="bundle folder to write (replaced atomically)")
    p.add_argument("--samples", type=int, default=300, help="held-out samples per modality pattern to verify on (kept in the bundle as reference.npz)")
    p.add_argument("--int8", action="store_true", help="also add each format's INT8 artifact (as `edgemm quantize` does)")
    p.add_argument("--calib", help="INT8 calibration source (default: av-digits for a checkpoint, --data for --model; forms as for `edgemm quantize`)")
    p.add_argument("--max-drop", type=float, default=1.0, help="INT8 accuracy budget in points (worst modality pattern)")
    p.add_argument("--int8-config", default="auto", choices=["auto", *CONFIGS], help="ONNX INT8 configuration (see edgemm quantize)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("bench", help="size, verification, accuracy and latency of every artifact of a bundle on this machine")
    p.add_argument("bundle")
    p.add_argument("--plot", metavar="PNG", help="also write an accuracy-vs-latency plot")
    p.add_argument("--threads", type=int, help="CPU threads per backend (default: the backend's own)")
    p.add_argument("--runs", type=int, default=200, help="timed batch-1 calls per artifact (after warm-up)")
    p.add_argument("--checkpoint", help="add the checkpoint's model in PyTorch eager as the baseline row (needs torch)")
    p.add_argument("--no-vendor", action="store_true",
                   help="skip the reference column from each format's own benchmark tool (benchmark_app, litert-benchmark; run where installed, a few seconds per artifact)")  # fmt: skip
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("live", help="run a bundle on a live camera and microphone (or files, or the built-in sample stream)")
    add_live_arguments(p)
    p.add_argument("--sample", action="store_true", help="run on the built-in sample stream (generated video + spoken digits) and score it")
    p.set_defaults(func=_cmd_live)

    p = sub.add_parser("build-engine", help="on the device: build and verify TensorRT engines from the bundle's ONNX")
    p.add_argument("bundle")
    p.set_defaults(func=_cmd_build_engine)

    p = sub.add_parser("verify", help="check every artifact on this machine against the bundle's reference samples (torch-free), "
                                      "or, with --checkpoint, re-verify against torch")
    p.add_argument("bundle")
    p.add_argument("--checkpoint", help="the checkpoint the bundle was exported from: re-verify against torch on fresh held-out data")
    p.add_argument("--samples", type=int, default=300, help="held-out samples per modality pattern (with --checkpoint)")
    p.add_argument("--threads", type=int, help="CPU threads per backend (without --checkpoint)")
    p.add_argument("--only", action="append", metavar="FILE", help="check only this artifact (repeatable; without --checkpoint)")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("info", help="describe a bundle: inputs, preprocessing, artifacts and their verification")
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="print the whole manifest")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("predict", help="run a bundle on an image file and/or an audio file")
    p.add_argument("bundle")
    p.add_argument("--image", help="image file (PNG/JPEG/...)")
    p.add_argument("--audio", help="audio file (WAV/FLAC/OGG), any rate, mono or stereo")
    p.add_argument("--backend", default="auto", help=f"auto or one of {', '.join(BACKENDS)}")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="restrict the artifact choice")
    p.add_argument("--threads", type=int)
    p.add_argument("--no-self-check", action="store_true", help="skip the first-use check of the artifact on this machine")
    p.add_argument("--enroll", metavar="FOLDER", help="answer with the nearest enrolled example of FOLDER/<label>/ (image and/or "
                   "audio files): a model with an embedding output")  # fmt: skip
    p.add_argument("--speech-gate", action=argparse.BooleanOptionalAction, help="leave out audio without speech (an image-only "
                   "answer) or use it anyway; the gate's decision is printed either way (default: the bundle's setting, off)")  # fmt: skip
    add_speech_threshold(p)
    p.add_argument("--json", action="store_true", help="print the prediction as JSON")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("demo", help="the default job: data → teacher → student → ONNX → INT8 → verify → comparison table")
    p.add_argument("--out", default="demo-out", help="folder for the bundle and sample files")
    p.add_argument("--train", action="store_true", help="train the two teachers and distil the student afresh (its shipped recipe) instead of using the shipped checkpoints")
    p.add_argument("--threads", type=int, default=2, help="threads for latency measurements")
    p.set_defaults(func=_cmd_demo)
    return parser


def _toolkit_need(args: argparse.Namespace) -> tuple[str, str] | None:
    """What a command (with these options) needs beyond the device install, named for a user, and the extra that
    provides it; None when the device install has all it needs."""
    if args.command in TOOLKIT_COMMANDS:
        return f"`edgemm {args.command}`", TOOLKIT_COMMANDS[args.command]
    if getattr(args, "checkpoint", None):  # verify/bench --checkpoint: torch and the export side
        return f"`edgemm {args.command} --checkpoint`", "export,data"
    if getattr(args, "sample", False):  # live --sample: the built-in data set makes the stream
        return f"`edgemm {args.command} --sample`", "data,app"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    command = next((a for a in argv if not a.startswith("-")), None)  # the top level has no options that take a value
    if command in TOOLKIT_COMMANDS and device_install():  # before parsing: its flags are the toolkit's business
        print(f"edgemm: error: {ToolkitMissingError(f'`edgemm {command}`', TOOLKIT_COMMANDS[command])}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EdgemmError as exc:
        print(f"edgemm: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        need = _toolkit_need(args)
        if need is None:
            raise
        if device_install():  # the toolkit's modules and packages (torch, the data set's) are not to be added one by one
            print(f"edgemm: error: {ToolkitMissingError(*need)}", file=sys.stderr)
        else:
            print(f"edgemm: error: {need[0]} needs {exc.name!r}: pip install 'edgemm[{need[1]}]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgemm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
