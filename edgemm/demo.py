"""`edgemm demo`: the default job end to end on the built-in data set, no downloads."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from edgemm.checkpoint import default_checkpoint, load_checkpoint, save_checkpoint
from edgemm.data.avdigits import SAMPLE_RATE, build, config_from_record, load_split
from edgemm.data.features import split_tensors
from edgemm.evaluate import median_latency_ms
from edgemm.export.source import ReferenceSet, torch_reference
from edgemm.export.verify import MODES, accuracy_by_mode, run_model
from edgemm.exporting import export_checkpoint
from edgemm.models import count_parameters
from edgemm.runtimes import load_bundle
from edgemm.runtimes.media import read_audio, read_image, write_audio, write_image
from edgemm.tables import format_table


def _teacher(out: Path, checkpoint: str | None, retrain: bool) -> Path:
    if checkpoint:
        return Path(checkpoint)
    if not retrain and default_checkpoint().is_file():
        return default_checkpoint()
    from edgemm.train import TrainConfig, train

    print("training the teacher (use the shipped checkpoint to skip this: drop --train)")
    return save_checkpoint(out / "teacher.safetensors", train(TrainConfig(threads=2)))


def run_demo(out: Path, checkpoint: str | None = None, retrain: bool = False, threads: int = 2) -> int:
    """Data → teacher → ONNX bundle → verify → accuracy/latency table → one prediction from files."""
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    print("1/5 built-in data set av-digits (MNIST digits + espeak-ng spoken digits, cached)")
    print(f"    {build()}")
    ckpt_path = _teacher(out, checkpoint, retrain)
    ckpt = load_checkpoint(ckpt_path)
    run = ckpt.record.get("training", {})
    print(f"2/5 teacher {ckpt_path}: {count_parameters(ckpt.model):,} parameters, trained {run.get('seconds', '?')} s, seed {run.get('seed', '?')}")

    bundle_path = out / "av_digits.edgemm"
    print(f"3/5 export to ONNX and verify against torch → {bundle_path}")
    manifest = export_checkpoint(ckpt_path, "onnx", bundle_path, log=lambda m: print(f"    {m}"))
    onnx = manifest.artifact("model.onnx")
    v = onnx.verification
    print(f"    model.onnx: {'verified' if onnx.verified else 'FAILED'}, max |Δ logits| {v.get('max_abs_diff', float('nan')):.1e}, "
          f"top-1 agreement {v.get('top1_agreement', 0):.2%} on {v.get('samples', 0)} held-out inputs")  # fmt: skip

    print("4/5 accuracy on the test split (held-out images and voices), batch-1 latency on", threads, "threads")
    test = load_split("test", config_from_record(ckpt.record.get("data", {})))
    image, audio = split_tensors(test, ckpt.image, ckpt.audio)
    model = load_bundle(bundle_path, threads=threads)
    reference = ReferenceSet.build(torch_reference(ckpt.model), image, audio, test.labels)
    one = (image[:1], audio[:1], np.ones((1, 2), np.float32))
    rows, results = [], {}
    for name, logits, size, call in (
        ("teacher fp32 (torch eager)", reference.logits, ckpt_path.stat().st_size, lambda: torch_reference(ckpt.model)(*one)),
        (f"teacher fp32 ({model.artifact.file}, {model.backend.name})", run_model(model.infer, reference), onnx.bytes, lambda: model.infer(*one)),
    ):
        acc = results[name] = accuracy_by_mode(logits.argmax(1), reference)
        rows.append([name, f"{count_parameters(ckpt.model):,}", f"{size / 1e6:.2f}", *(f"{acc[m]:.3f}" for m in MODES), f"{median_latency_ms(call):.2f}"])
    print(format_table(["model", "params", "MB", "fused", "image-only", "audio-only", "latency ms"], rows))
    acc = next(iter(results.values()))
    gain = acc["fused"] - max(acc["image_only"], acc["audio_only"])
    print(f"    fusion gain over the best single modality: {gain * 100:+.1f} points (target ≥ +10)")

    print("5/5 predict from files through the torch-free runtime")
    index = int(np.flatnonzero(~test.heavy_image & ~test.heavy_audio)[0])
    write_image(out / "sample.png", test.images[index])
    write_audio(out / "sample.wav", test.audio[index], SAMPLE_RATE)
    wav, rate = read_audio(out / "sample.wav")
    pred = model.predict(image=read_image(out / "sample.png"), audio=wav, sample_rate=rate)
    print(f"    {out / 'sample.png'} + {out / 'sample.wav'} → {pred.label} (p={pred.probabilities[pred.index]:.3f}, truth {test.labels[index]}); "
          f"try: edgemm predict {bundle_path} --image {out / 'sample.png'} --audio {out / 'sample.wav'}")  # fmt: skip
    if not onnx.verified:
        print("edgemm: error: the ONNX artifact failed verification", file=sys.stderr)
        return 1
    return 0
