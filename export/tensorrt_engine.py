"""TensorRT engines, built on the device from the bundle's ONNX: fp16 from `model.onnx`, INT8 from the
QDQ `model.int8.onnx` (explicit quantization), one optimization profile over the batch axis.

Where TensorRT or a CUDA GPU is missing (this build machine), nothing is built: the manifest records
why, with the exact `trtexec` command and the `edgemm build-engine` command to run on the device.
"""
from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path

from edgemm.runtimes.backends.tensorrt_backend import MAX_BATCH
from edgemm.runtimes.cuda_device import cuda_device
from edgemm.runtimes.errors import (
    BackendUnavailableError,
    BundleError,
    ChecksumError,
    DeviceUnavailableError,
    one_line,
)
from edgemm.runtimes.manifest import Manifest, sha256_file
from edgemm.runtimes.reference import ReferenceSet

from .bundle import BundleStage
from .registry import FORMATS, add_verified, record_failure, unavailable

OPT_BATCH = 8
SOURCES = {"fp16": "model.onnx", "int8": "model.int8.onnx"}  # engine precision → the ONNX it is built from


def engine_file(precision: str) -> str:
    fmt = FORMATS["tensorrt"]
    return fmt.files.get(precision) or fmt.int8_file


def profile_shapes(manifest: Manifest) -> dict[str, list[tuple[int, ...]]]:
    """Input name → (min, opt, max) shapes: batch 1 / OPT_BATCH / MAX_BATCH, other axes as in the manifest."""
    return {name: [(b, *shape[1:]) for b in (1, OPT_BATCH, MAX_BATCH)] for name, shape in manifest.contract.input_shapes().items()}


def trtexec_command(precision: str, manifest: Manifest) -> str:
    """The `trtexec` command that builds the same engine by hand, run inside the bundle folder on the device
    (`edgemm build-engine` also verifies it and records it in the manifest)."""
    shapes = profile_shapes(manifest)

    def flag(k: int) -> str:
        return ",".join(f"{name}:{'x'.join(map(str, s[k]))}" for name, s in shapes.items())

    args = ["trtexec", f"--onnx={SOURCES[precision]}", f"--saveEngine={engine_file(precision)}", "--fp16"]
    args += ["--int8"] if precision == "int8" else []
    args += [f"--minShapes={flag(0)}", f"--optShapes={flag(1)}", f"--maxShapes={flag(2)}"]
    return f"mkdir -p {Path(engine_file(precision)).parent} && {shlex.join(args)}"


def build_engine(onnx_path: Path, out: Path, precision: str, manifest: Manifest) -> dict:
    """Build and serialize one engine (written to a temp file, then renamed); returns what it was built for."""
    import tensorrt as trt
    from polygraphy.backend.trt import (
        CreateConfig,
        Profile,
        engine_from_network,
        network_from_onnx_path,
        save_engine,
    )

    profile = Profile()
    for name, (low, opt, high) in profile_shapes(manifest).items():
        profile.add(name, low, opt, high)
    # fp16 kernels everywhere they are faster; with a QDQ graph, int8 where the Q/DQ pairs say so
    config = CreateConfig(fp16=True, int8=precision == "int8", profiles=[profile])
    engine = engine_from_network(network_from_onnx_path(str(onnx_path)), config=config)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    save_engine(engine, str(tmp))
    os.replace(tmp, out)
    return {
        "tensorrt": trt.__version__,
        "gpu": cuda_device().to_dict(),
        "built_from": onnx_path.name,
        "profile": {"batch_min": 1, "batch_opt": OPT_BATCH, "batch_max": MAX_BATCH},
    }


def build_engines(stage: BundleStage, bundle: Path, reference: ReferenceSet, log: Callable[[str], None] = print) -> int:
    """Build every engine whose verified source ONNX is in the staged bundle and verify it; returns how many
    were built. `bundle` is the final path, for the commands written when the build cannot run here."""
    built = 0
    fmt = FORMATS["tensorrt"]
    verified = {a.file for a in stage.manifest.artifacts if a.verified}
    reason = unavailable(fmt, "building TensorRT engines")
    if reason is None and cuda_device() is None:
        reason = "no CUDA GPU on this machine (engines are built on the GPU that will run them)"
    for precision, source in SOURCES.items():
        if source not in verified:
            continue
        file = engine_file(precision)
        stage.manifest.failures = [f for f in stage.manifest.failures if (f.format, f.precision) != (fmt.name, precision)]
        if reason:
            command = trtexec_command(precision, stage.manifest)
            record_failure(stage, fmt.name, precision, "build", reason, log, skipped=True, trtexec=command, on_device=f"edgemm build-engine {bundle}")
            log(f"  build it on the device: edgemm build-engine {bundle}")
            log(f"  or by hand, inside the bundle folder: {command}")
            continue
        started = time.perf_counter()
        try:
            target = build_engine(stage.path / source, stage.path / file, precision, stage.manifest)
        except Exception as exc:  # a failed build must not lose the rest of the bundle
            record_failure(stage, fmt.name, precision, "build", one_line(exc), log)
            continue
        artifact = add_verified(stage, fmt, file, precision, reference, tensorrt=target, export_seconds=round(time.perf_counter() - started, 2))
        log(f"tensorrt {precision}: {'verified' if artifact.verified else 'FAILED verification'}")
        built += 1
    return built


def build_bundle_engines(bundle: str | Path, log: Callable[[str], None] = print) -> Manifest:
    """`edgemm build-engine BUNDLE` on the device: build and verify the engines on the reference samples the
    bundle carries (torch's outputs), then swap the updated bundle into place."""
    bundle = Path(bundle)
    manifest = Manifest.read(bundle)
    missing = FORMATS["tensorrt"].missing()
    if missing:
        raise BackendUnavailableError("edgemm build-engine", missing, FORMATS["tensorrt"].extra)
    if cuda_device() is None:
        raise DeviceUnavailableError("edgemm build-engine: no CUDA GPU on this machine; run it on the device that will run the engine")
    recorded = manifest.model.get("reference")
    if not recorded or not (bundle / recorded["file"]).is_file():
        raise BundleError(f"{bundle}: no reference samples to verify engines on (re-export it with this edgemm)")
    if sha256_file(bundle / recorded["file"]) != recorded["sha256"]:
        raise ChecksumError(f"{bundle / recorded['file']}: sha256 differs from the manifest")
    reference = ReferenceSet.load(bundle / recorded["file"])
    with BundleStage(bundle, manifest) as stage:
        if build_engines(stage, bundle, reference, log) == 0:
            raise BundleError(f"{bundle}: no verified model.onnx or model.int8.onnx to build an engine from")
        stage.commit()
    return stage.manifest
