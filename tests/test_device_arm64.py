"""The device half on aarch64 (emulated by qemu-user, see tests/arm64.py), as two CPU classes: Armv8.2 with dot
product (Neoverse-N1, Jetson Orin's class) and Armv8.0 (Cortex-A72, Raspberry Pi 4's). The shipped student's
bundle, exported on this x86 machine, is checked on each with `edgemm verify` (torch-free, every backend: onnxruntime,
LiteRT, OpenVINO's ARM plugin), answers a PNG + WAV through `edgemm predict`, and runs the live app headless on a
recorded stream; the answers are compared with this machine's. `make device-test` runs this file alone."""
import json
import platform
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from arm64 import CPUINFO, Arm64Device, DeviceUnavailable
from edgemm.runtimes import load_bundle
from edgemm.runtimes.manifest import Manifest
from edgemm.runtimes.media import read_audio, read_image, write_audio, write_image

pytestmark = pytest.mark.slow

INT8 = ["model.int8.onnx", "openvino/model.int8.xml", "tflite/model.int8.tflite"]
FP32 = {"onnxruntime": "model.onnx", "litert": "tflite/model.tflite", "openvino": "openvino/model.xml"}
KERNELS = {"neoverse-n1": "arm-dotprod", "cortex-a72": "arm-neon"}


@pytest.fixture(scope="module")
def arm64() -> Arm64Device:
    if platform.machine() != "x86_64":
        pytest.skip("the emulated aarch64 device is set up from an x86-64 host")
    try:
        return Arm64Device.prepare()
    except DeviceUnavailable as exc:
        pytest.skip(f"no emulated aarch64 device here: {exc}")


@pytest.fixture(scope="module")
def inputs(shipped_bundle_master, tmp_path_factory):
    """A PNG + WAV of one test sample and a 3 s recorded stream (video + WAV) of two more."""
    from edgemm.data.avdigits import config_from_record, load_split
    from edgemm.sample_stream import sample_stream

    folder = tmp_path_factory.mktemp("device-inputs")
    data = config_from_record(Manifest.read(shipped_bundle_master).model["data"])
    test = load_split("test", data)
    write_image(folder / "x.png", test.images[7])
    write_audio(folder / "x.wav", test.audio[7], 16000)
    stream = sample_stream(segments=2, config=data, root=folder)
    # re-encoded losslessly (FFV1): MJPG frames decode a little differently per architecture (libjpeg-turbo's IDCT),
    # lossless ones decode to the same pixels, so the live answers can be held to the tolerance of the same tensors
    import cv2

    source = cv2.VideoCapture(str(stream.video))
    lossless = cv2.VideoWriter(str(folder / "stream.avi"), cv2.VideoWriter_fourcc(*"FFV1"), source.get(cv2.CAP_PROP_FPS),
                               (int(source.get(cv2.CAP_PROP_FRAME_WIDTH)), int(source.get(cv2.CAP_PROP_FRAME_HEIGHT))))  # fmt: skip
    while (frame := source.read()[1]) is not None:
        lossless.write(frame)
    source.release()
    lossless.release()
    return folder / "x.png", folder / "x.wav", replace(stream, video=folder / "stream.avi")


def guest(arm64: Arm64Device, cpu: str, *args, cache=None) -> subprocess.CompletedProcess:
    return arm64.run(cpu, list(args), env={"EDGEMM_CACHE": str(cache)} if cache else None)


@pytest.mark.parametrize("cpu", list(CPUINFO))
def test_the_bundle_on_emulated_aarch64(arm64, cpu, shipped_bundle_master, inputs, tmp_path):
    bundle = shutil.copytree(shipped_bundle_master, tmp_path / "av_digits.edgemm")
    shutil.rmtree(bundle / "checks")  # as it arrives on a device: checked on x86 only
    png, wav, stream = inputs
    cache = tmp_path / "cache"

    proc = guest(arm64, cpu, "-c", "import platform; from edgemm.runtimes.machine import this_machine as m; "
                 "print(platform.machine(), m().int8_kernels, m().cpu)")  # fmt: skip
    assert proc.stdout.split()[:2] == ["aarch64", KERNELS[cpu]], proc.stdout + proc.stderr
    print(f"\n{cpu}: platform.machine() = {proc.stdout.strip()}; device install (3 runtimes, OpenCV, soundfile, edgemm) {arm64.site_size_mb():.0f} MB")

    # the on-target check of every INT8 artifact (and, on the first class, one fp32 artifact per backend)
    files = INT8 + (list(FP32.values()) if cpu == "neoverse-n1" else [])
    proc = guest(arm64, cpu, "-m", "edgemm", "verify", str(bundle), *(f"--only={f}" for f in files), cache=cache)
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.split() and line.split()[0] in files}
    print(proc.stdout)
    assert set(rows) == set(files) and proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert all(" passed " in row for row in rows.values())
    record = json.loads(next((bundle / "checks").glob("aarch64-*.json")).read_text())
    assert record["machine"]["int8_kernels"] == KERNELS[cpu] and all(c["passed"] for c in record["checks"].values())

    # a prediction from files, auto (LiteRT on ARM) and fp32 per backend, against this machine's answers
    image, (audio, rate) = read_image(png), read_audio(wav)
    choices = [("auto", "int8")] + ([(b, "fp32") for b in FP32] if cpu == "neoverse-n1" else [])
    for backend, precision in choices:
        proc = guest(arm64, cpu, "-m", "edgemm", "predict", str(bundle), "--image", str(png), "--audio", str(wav), "--json",
                     "--backend", backend, "--precision", precision, cache=cache)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = json.loads(proc.stdout)
        here = load_bundle(bundle, backend=got["backend"], precision=precision).predict(image=image, audio=audio, sample_rate=rate)
        assert got["label"] == here.label and got["modalities"] == ["image", "audio"]
        tolerance = 1e-4 if precision == "fp32" else 2e-2  # INT8 on another CPU class: judged by its check, close here
        np.testing.assert_allclose(got["probabilities"], here.probabilities, atol=tolerance)
        assert backend != "auto" or got["artifact"] == "tflite/model.int8.tflite"  # auto prefers LiteRT on ARM

    # the live app, headless, on the recorded stream: every frame answered, the same answers as here
    live = ["-m", "edgemm.apps.live", str(bundle), "--camera", str(stream.video), "--mic", str(stream.audio), "--headless", "--fast",
            "--backend", "litert", "--precision", "fp32", "--events"]  # fmt: skip
    proc = guest(arm64, cpu, *live, str(tmp_path / "arm.jsonl"), cache=cache)
    assert proc.returncode == 0 and "live summary" in proc.stderr, proc.stderr[-2000:]
    ours = subprocess.run([sys.executable, *live, str(tmp_path / "x86.jsonl")], capture_output=True, text=True, timeout=300)
    assert ours.returncode == 0, ours.stderr
    arm_events, x86_events = ([json.loads(line) for line in (tmp_path / f).read_text().splitlines()] for f in ("arm.jsonl", "x86.jsonl"))
    assert len(arm_events) == len(x86_events) == 90
    assert [e["label"] for e in arm_events] == [e["label"] for e in x86_events]
    assert [e["modalities"] for e in arm_events] == [e["modalities"] for e in x86_events]
    # the same pixels and audio, the same streaming front-end: the fp32 answers agree as the same tensors do
    np.testing.assert_allclose([e["probabilities"] for e in arm_events], [e["probabilities"] for e in x86_events], atol=1e-4)
