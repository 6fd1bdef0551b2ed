"""Verification on the machine that runs the bundle: reference samples kept exactly, the self-check on first use,
records per machine class, fallback with reasons, torch-free `edgemm verify`, and the int8 kernels of x86 CPUs
without VNNI proven under qemu's emulated Haswell."""
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import without_package
from edgemm.runtimes import load_bundle
from edgemm.runtimes.machine import this_machine
from edgemm.runtimes.manifest import Artifact, Manifest, Verification, sha256_file
from edgemm.runtimes.model import NoUsableArtifactError
from edgemm.runtimes.reference import (
    REFERENCE_FILE,
    ReferenceSet,
    decode_inputs,
    encode_inputs,
    on_grid,
)
from edgemm.runtimes.target_check import CHECKS_DIR, RECORD_SCHEMA

BAD = "model.int8.onnx"
VNNI_MACHINE = {"cpu": "Intel(R) Xeon(R) Gold 6338", "arch": "x86_64", "features": ["avx2", "avx512f", "avx512bw", "avx512_vnni"],
                "os": "Linux", "int8_kernels": "x86-vnni", "key": "x86_64-vnni-0000000000"}  # fmt: skip


def record_path(bundle: Path) -> Path:
    return bundle / CHECKS_DIR / f"{this_machine().key}.json"


def plant_failing_int8(bundle: Path) -> None:
    """Put `model.int8.onnx` first in the bundle: the fp32 graph with its logits negated (every answer wrong here, as
    a saturating int8 kernel makes answers wrong), recorded as verified on a VNNI machine."""
    model = onnx.load(str(bundle / "model.onnx"))
    producer = next(n for n in model.graph.node if "logits" in n.output)
    producer.output[list(producer.output).index("logits")] = "logits_before_neg"
    model.graph.node.append(onnx.helper.make_node("Neg", ["logits_before_neg"], ["logits"]))
    onnx.save(model, str(bundle / BAD))
    manifest = Manifest.read(bundle)
    fp32 = manifest.artifact("model.onnx").verification.reference_check
    verified_there = Verification(passed=True, machine=VNNI_MACHINE, reference_check=fp32, backend="onnxruntime")
    art = Artifact(BAD, "onnx", "int8", sha256_file(bundle / BAD), (bundle / BAD).stat().st_size, verified_there, {"quantization": {"max_drop": 1.0}})
    manifest.artifacts.insert(0, art)
    (bundle / "manifest.json").write_text(json.dumps(manifest.to_dict()))


def edgemm(*args, env=None):
    return subprocess.run([sys.executable, "-m", "edgemm", *map(str, args)], capture_output=True, text=True, timeout=600, env=env)


def test_reference_inputs_are_stored_exactly_in_8_bits(tmp_path):
    rng = np.random.default_rng(0)
    for scale, offset in ((1.0, 0.0), (3.2, -2.0), (1e-3, 5.0), (0.0, 3.0)):
        x = (rng.standard_normal((20, 1, 40, 98)) * scale + offset).astype(np.float32)
        grid = on_grid(x)
        assert np.array_equal(decode_inputs(*encode_inputs(grid)), grid)  # stored exactly, again and again
        assert np.abs(grid - x).max() <= max(scale, 1e-30) * 8 / 253  # one grid step at most
    image, audio = on_grid(rng.random((5, 1, 32, 32)).astype(np.float32)), on_grid(rng.standard_normal((5, 1, 40, 98)).astype(np.float32))
    ref = ReferenceSet.build(lambda i, a, p: {"logits": i.mean((1, 2, 3))[:, None] + a.mean((1, 2, 3))[:, None], "embedding": p}, image, audio, np.arange(5))
    ref.save(tmp_path / "r.npz")
    back = ReferenceSet.load(tmp_path / "r.npz")
    assert np.array_equal(back.image, ref.image) and np.array_equal(back.audio, ref.audio) and np.array_equal(back.logits, ref.logits)
    with np.load(tmp_path / "r.npz") as data:
        assert data["image_codes"].dtype == np.uint8 and "image" not in data


def test_bundle_reference_is_visible_at_one_point(tiny_student, tiny_test_split, tmp_path):
    """The default reference: 300 held-out samples per pattern (1 point = 3 samples; the tiny data set has fewer)."""
    from edgemm.exporting import REFERENCE_SAMPLES, export_checkpoint

    out = export_checkpoint(tiny_student, "onnx", tmp_path / "b.edgemm", log=lambda _: None)
    assert REFERENCE_SAMPLES == 300 and out.model["reference"]["samples"] == min(300, len(tiny_test_split))
    size = (tmp_path / "b.edgemm" / REFERENCE_FILE).stat().st_size
    assert size < 2e6, size


def test_first_load_checks_the_artifact_here_once(tiny_bundle):
    shutil.rmtree(tiny_bundle / CHECKS_DIR)
    load_bundle(tiny_bundle, self_check=False)
    assert not record_path(tiny_bundle).exists()  # embedders can turn it off
    model = load_bundle(tiny_bundle)
    record = json.loads(record_path(tiny_bundle).read_text())
    check = record["checks"][f"{model.artifact.sha256}@default"]
    assert check["passed"] and check["checked_by"] == "self-check" and check["backend_version"] and check["samples"] == 96
    assert record["machine"]["key"] == this_machine().key and record["schema"] == RECORD_SCHEMA
    before = record_path(tiny_bundle).read_bytes()
    load_bundle(tiny_bundle)
    assert record_path(tiny_bundle).read_bytes() == before  # cached: not checked again


def test_export_records_its_own_machines_checks(tiny_bundle):
    record = json.loads(record_path(tiny_bundle).read_text())
    (check,) = record["checks"].values()
    assert check["file"] == "model.onnx" and check["passed"] and check["checked_by"] == "export"
    art = Manifest.read(tiny_bundle).artifact("model.onnx")
    assert art.verification.machine["key"] == this_machine().key and art.verification.tools["numpy"]
    assert art.extra["made_with"]["tools"]["torch"] and art.extra["made_with"]["machine"]["cpu"] == this_machine().cpu


def test_an_artifact_failing_here_is_never_chosen(tiny_bundle, caplog):
    plant_failing_int8(tiny_bundle)
    with caplog.at_level(logging.WARNING, logger="edgemm"):
        model = load_bundle(tiny_bundle)
    assert model.artifact.file == "model.onnx"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and f"not using {BAD}" in lines[0] and "top-1 agreement" in lines[0], lines
    check = json.loads(record_path(tiny_bundle).read_text())["checks"][f"{Manifest.read(tiny_bundle).artifact(BAD).sha256}@default"]
    assert not check["passed"] and check["checked_by"] == "self-check"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgemm"):
        assert load_bundle(tiny_bundle).artifact.file == "model.onnx"  # the record refuses it, no second run
    assert [r.getMessage() for r in caplog.records][0].startswith(f"edgemm: not using {BAD}: it failed its check on this machine class")
    with pytest.raises(NoUsableArtifactError, match=rf"{BAD}: failed verification on this CPU \(.*\): top-1 agreement \d+\.\d % < 99\.0 % on fused"):
        load_bundle(tiny_bundle, precision="int8")


def test_an_artifact_this_machine_cannot_load_falls_back(tiny_bundle, caplog):
    plant_failing_int8(tiny_bundle)
    (tiny_bundle / BAD).write_bytes(b"not an onnx model")  # a file this machine's backend cannot read, checksum re-recorded
    manifest = Manifest.read(tiny_bundle)
    art = manifest.artifact(BAD)
    art.sha256, art.bytes = sha256_file(tiny_bundle / BAD), (tiny_bundle / BAD).stat().st_size
    (tiny_bundle / "manifest.json").write_text(json.dumps(manifest.to_dict()))
    with caplog.at_level(logging.WARNING, logger="edgemm"):
        assert load_bundle(tiny_bundle).artifact.file == "model.onnx"
    (line,) = [r.getMessage() for r in caplog.records]
    assert f"not using {BAD}" in line and "cannot load here" in line and "onnxruntime cannot load it" in line


def test_missing_reference_samples_are_an_error_not_a_silent_skip(tiny_bundle):
    from edgemm.runtimes import ChecksumError

    (tiny_bundle / REFERENCE_FILE).unlink()
    with pytest.raises(ChecksumError, match=f"{REFERENCE_FILE}: the reference samples listed in the manifest are missing"):
        load_bundle(tiny_bundle)
    proc = edgemm("verify", tiny_bundle)
    assert proc.returncode == 2 and "reference samples listed in the manifest are missing" in proc.stderr and "Traceback" not in proc.stderr


def test_each_device_keeps_its_own_check(tiny_bundle):
    """A check on the CPU says nothing about another execution provider: they are kept apart."""
    load_bundle(tiny_bundle, device="CPUExecutionProvider")
    record = json.loads(record_path(tiny_bundle).read_text())
    sha = Manifest.read(tiny_bundle).artifact("model.onnx").sha256
    assert {f"{sha}@default", f"{sha}@CPUExecutionProvider"} <= set(record["checks"])
    assert record["checks"][f"{sha}@CPUExecutionProvider"]["checked_by"] == "self-check"


def test_verify_fails_when_nothing_could_be_checked(tiny_bundle):
    code = without_package("onnxruntime") + f"import sys\nfrom edgemm.cli import main\nsys.exit(main(['verify', {str(tiny_bundle)!r}]))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no artifact could be checked on this machine" in proc.stderr and "pip install 'edgemm[onnx]'" in proc.stderr


def test_cli_names_the_refused_candidates_and_goes_on(tiny_bundle, tiny_test_split, tmp_path):
    from edgemm.runtimes.media import write_audio, write_image

    plant_failing_int8(tiny_bundle)
    write_image(tmp_path / "x.png", tiny_test_split.images[0])
    write_audio(tmp_path / "x.wav", tiny_test_split.audio[0], 16000)
    proc = edgemm("predict", tiny_bundle, "--image", tmp_path / "x.png", "--audio", tmp_path / "x.wav", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["artifact"] == "model.onnx", proc.stderr
    assert proc.stderr.count("\n") == 1 and f"not using {BAD}" in proc.stderr and "Traceback" not in proc.stderr
    proc = edgemm("live", tiny_bundle, "--precision", "int8", "--camera", "none", "--mic", tmp_path / "x.wav", "--headless")
    assert proc.returncode == 2 and f"{BAD}: failed verification on this CPU" in proc.stderr and "Traceback" not in proc.stderr


def test_verify_here_is_torch_free_and_fails_what_fails(tiny_bundle):
    code = without_package("torch") + (
        "import sys\nfrom edgemm.cli import main\n"
        f"sys.exit(main(['verify', {str(tiny_bundle)!r}]))\n"
    )
    good = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr
    assert f"this machine: {this_machine().cpu}" in good.stdout and "model.onnx" in good.stdout and "passed" in good.stdout
    assert f"recorded for this machine class ({this_machine().key}) in {record_path(tiny_bundle)}" in good.stdout
    plant_failing_int8(tiny_bundle)
    bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and f"edgemm: error: failed verification: {BAD}" in bad.stderr
    row = next(line for line in bad.stdout.splitlines() if line.startswith(BAD))
    assert "FAILED: top-1 agreement" in row
    info = edgemm("info", tiny_bundle)
    assert f"checked on {this_machine().cpu} ({this_machine().int8_kernels}): 1 passed, FAILED: {BAD}" in info.stdout


@pytest.mark.parametrize("damage", ["corrupt", "newer"])
def test_a_bad_record_is_ignored_with_a_warning_and_redone(tiny_bundle, caplog, damage):
    path = record_path(tiny_bundle)
    path.write_text("{not json" if damage == "corrupt" else json.dumps({"schema": RECORD_SCHEMA + 1, "checks": {}}))
    with caplog.at_level(logging.WARNING, logger="edgemm"):
        model = load_bundle(tiny_bundle)
    assert any(f"ignoring on-target check record {path}" in r.getMessage() for r in caplog.records)
    record = json.loads(path.read_text())
    assert record["schema"] == RECORD_SCHEMA and record["checks"][f"{model.artifact.sha256}@default"]["passed"]


def test_a_read_only_bundle_records_into_the_user_cache(tiny_bundle, tmp_path):
    shutil.rmtree(tiny_bundle / CHECKS_DIR)
    cache = tmp_path / "user-cache"
    cache.mkdir()
    env = {**os.environ, "EDGEMM_CACHE": str(cache)}
    before = sorted(p.name for p in tiny_bundle.rglob("*"))
    if os.geteuid() == 0:  # root writes anywhere: run as an unprivileged user instead
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make the bundle read-only")
        os.chmod(cache, 0o777)
        for folder in (tmp_path, *tmp_path.parents[:-1]):  # let that user reach the bundle (but not write it)
            os.chmod(folder, folder.stat().st_mode | 0o005)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "edgemm", "verify", str(tiny_bundle)]
    else:
        os.chmod(tiny_bundle, 0o555)
        cmd = [sys.executable, "-m", "edgemm", "verify", str(tiny_bundle)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    finally:
        os.chmod(tiny_bundle, 0o755)
    assert proc.returncode == 0, proc.stderr
    where = cache / CHECKS_DIR / f"{this_machine().key}.json"
    assert f"in {where}" in proc.stdout and json.loads(where.read_text())["checks"]
    assert sorted(p.name for p in tiny_bundle.rglob("*")) == before  # the bundle was not touched
    code = f"from edgemm.runtimes import load_bundle; print(load_bundle({str(tiny_bundle)!r}).artifact.file)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.stdout.strip() == "model.onnx" and not (tiny_bundle / CHECKS_DIR).exists()  # the cached record was used: no new check


@pytest.mark.slow
def test_int8_holds_on_x86_without_vnni_under_qemu_haswell(shipped_bundle, tmp_path):
    """Every INT8 artifact of the shipped student passes its on-target check on an emulated AVX2-only x86 (qemu's
    Haswell), whatever CPU runs the test; the 8-bit-weight form, correct on exact kernels (VNNI/AMX/ARM), fails there."""
    from edgemm.runtimes.emulation import qemu_binary

    if qemu_binary() is None:
        pytest.skip("qemu-x86_64-static is not installed (make test installs qemu-user-static where it runs as root with apt)")
    if this_machine().arch != "x86_64":
        pytest.skip("qemu-x86_64 emulates an x86 CPU for x86 Python only")
    from edgemm.export.int8_kernels import unfused_outputs
    from edgemm.export.onnx_int8 import CONFIGS, Int8Options, Int8Quantizer
    from edgemm.runtimes.target_check import (
        MEASURED,
        reference_of,
        save_verified_outputs,
    )
    from edgemm.runtimes.verification import compare

    from edgemm.sources import calibration_set

    int8 = ["model.int8.onnx", "openvino/model.int8.xml", "tflite/model.int8.tflite"]
    emulated = [qemu_binary(), "-cpu", "Haswell", sys.executable, "-m", "edgemm", "verify", str(shipped_bundle), *(f"--only={f}" for f in int8)]
    shutil.rmtree(shipped_bundle / CHECKS_DIR)
    proc = subprocess.run(emulated, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.split() and line.split()[0] in int8}
    assert set(rows) == set(int8) and all("passed" in r for r in rows.values()), proc.stdout
    assert "int8 kernels x86-avx2" in proc.stdout  # the emulated CPU was seen as what it is

    # the same student with 8-bit weights, made and verified as on a machine with exact int8 kernels
    manifest = Manifest.read(shipped_bundle)
    with_8bit = tmp_path / "w8.onnx"
    quantizer = Int8Quantizer(shipped_bundle / "model.onnx", calibration_set("av-digits", manifest.contract, 300, manifest.model.get("data")), Int8Options(), tmp_path)
    quantizer.quantize(with_8bit, [], CONFIGS["s8s8-w8"])
    reference = reference_of(shipped_bundle, manifest)
    exact = unfused_outputs(with_8bit, reference, manifest.contract)  # what VNNI/AMX/ARM kernels answer
    shutil.copy(with_8bit, shipped_bundle / "model.int8.onnx")
    art = manifest.artifact("model.int8.onnx")
    art.sha256, art.bytes = sha256_file(with_8bit), with_8bit.stat().st_size
    baseline = {k: v for k, v in compare(exact, reference, "int8").items() if k in MEASURED}
    baseline["outputs"] = save_verified_outputs(shipped_bundle, art, exact)
    art.verification = Verification(passed=True, machine=VNNI_MACHINE, reference_check=baseline)
    (shipped_bundle / "manifest.json").write_text(json.dumps(manifest.to_dict()))
    proc = subprocess.run(emulated[:-3] + ["--only=model.int8.onnx"], capture_output=True, text=True, timeout=900)
    row = next((line for line in proc.stdout.splitlines() if line.startswith("model.int8.onnx")), "")
    assert proc.returncode == 1 and "FAILED" in row and "agreement with its answers where it was verified" in row, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("config", ["s8s8-w8", "u8u8"])
def test_exact_int8_kernels_answer_as_the_unfused_graph(shipped_onnx_bundle, tmp_path, config):
    """Where the CPU's int8 kernels accumulate exactly (x86 VNNI/AMX, ARM), onnxruntime's fused INT8 kernels answer as
    the Q/DQ graph run unfused — the simulation by which a CPU without them measures that family — for the shipped
    student's saturating (8-bit weights) and chosen configurations. Only such a CPU can check it (QEMU emulates no VNNI)."""
    machine = this_machine()
    if machine.int8_saturates:
        pytest.skip(f"this CPU's int8 kernels saturate ({machine.int8_kernels}): the exact family can only be simulated here")
    from edgemm.export.int8_kernels import EXACT, measurements, unfused_outputs
    from edgemm.export.onnx_int8 import CONFIGS, Int8Options, Int8Quantizer
    from edgemm.runtimes.target_check import reference_of
    from edgemm.sources import calibration_set

    manifest = Manifest.read(shipped_onnx_bundle)
    int8 = tmp_path / f"{config}.onnx"
    calib = calibration_set("av-digits", manifest.contract, 300, manifest.model.get("data"))
    Int8Quantizer(shipped_onnx_bundle / "model.onnx", calib, Int8Options(), tmp_path).quantize(int8, [], CONFIGS[config])
    reference = reference_of(shipped_onnx_bundle, manifest)
    native = measurements(machine)[EXACT].run(int8, reference, manifest.contract)  # this CPU's own kernels
    unfused = unfused_outputs(int8, reference, manifest.contract)
    agreement = float(np.mean(native.argmax(-1) == unfused.argmax(-1)))
    assert agreement >= 0.99, (config, agreement, float(np.abs(native - unfused).max()))
