"""The device install (`device/pyproject.toml` → the `edgemm-device` wheel): the runtime, the live app and the device
commands, without checkpoints, models, data or the export side. The wheel is built from a copy of the sources, installed
with `pip --target`, and its `edgemm` CLI runs on its own (neither the checkout nor the venv's editable edgemm on the
path, the export extra's packages hidden): info, predict, verify, bench and live work on a bundle; the toolkit's
commands end in one line naming what to install."""
import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tomllib
from arm64 import DEVICE_CONSTRAINTS, build_device_wheel, read_pins
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
# import names of the export extra (and the data extra's tqdm), hidden from the device CLI: none of them is a device dependency
HIDDEN = ("torch", "onnx", "onnxscript", "safetensors", "nncf", "litert_torch", "ai_edge_quantizer", "matplotlib", "yaml", "tqdm", "rich")
LABELS = ("zero", "one", "two", "three")
WEIGHTS = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
TOOLKIT_ONLY = ("edgemm/models/", "edgemm/data/", "edgemm/checkpoints/", "edgemm/export/", "edgemm/calibration/", "edgemm/train.py",
                "edgemm/distill.py", "edgemm/exporting.py", "edgemm/quantizing.py", "edgemm/checkpoint.py", "edgemm/demo.py")  # fmt: skip


def pip(*args) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *map(str, args), "-q", "--disable-pip-version-check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def device_wheel(tmp_path_factory) -> Path:
    return build_device_wheel(tmp_path_factory.mktemp("device-dist"))


@pytest.fixture(scope="module")
def device_site(device_wheel, tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("device-site")
    pip("install", "--no-deps", "--no-compile", "--target", site, device_wheel)
    return site


def device_python(site: Path, code: str, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """`code` in a Python that sees the device install, then the venv's third-party packages with HIDDEN hidden: `-I -S`
    keep the checkout and the venv's editable edgemm (a .pth hook) off the path."""
    boot = (
        "import sys, importlib.abc\n"
        f"sys.path[:0] = [{str(site)!r}]\n"
        f"sys.path.append({sysconfig.get_paths()['purelib']!r})\n"
        "class _Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        f"        if name.split('.')[0] in {HIDDEN!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    return subprocess.run([sys.executable, "-I", "-S", "-c", boot + code, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def edgemm(site: Path, *args) -> subprocess.CompletedProcess:
    return device_python(site, "from edgemm.cli import main\nsys.exit(main(sys.argv[1:]))", *args)


def expected_logits(image: np.ndarray, audio: np.ndarray, present: np.ndarray | None = None) -> dict[str, np.ndarray]:
    return {"logits": np.concatenate([image.mean((2, 3)), audio.mean(2)], axis=1) @ WEIGHTS}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A bundle made in milliseconds: an ONNX model (channel means and the waveform's mean → 4 class scores) under its
    contract, with reference samples and outputs, as an export writes them."""
    import onnx
    from edgemm.runtimes.contract import ModelContract
    from edgemm.runtimes.manifest import Artifact, Manifest, Verification, sha256_file
    from edgemm.runtimes.preprocess import AudioSpec, ImageSpec
    from edgemm.runtimes.reference import ReferenceSet, on_grid
    from onnx import TensorProto, helper, numpy_helper

    folder = tmp_path_factory.mktemp("device-bundle") / "toy.edgemm"
    folder.mkdir()
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image", "axes_hw"], ["colour"], keepdims=0), helper.make_node("ReduceMean", ["audio", "axes_t"], ["level"], keepdims=0),
         helper.make_node("Concat", ["colour", "level"], ["features"], axis=1), helper.make_node("MatMul", ["features", "w"], ["logits"])],
        "toy", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 16, 16]), helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["N", 1, 4000])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.array([2, 3], np.int64), "axes_hw"), numpy_helper.from_array(np.array([2], np.int64), "axes_t"), numpy_helper.from_array(WEIGHTS, "w")],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(folder / "model.onnx"))
    image_spec = ImageSpec(height=16, width=16, channels=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    contract = ModelContract(image=image_spec, audio=AudioSpec(clip_seconds=0.25, features="waveform"), missing="zeros", mask_input=None,
                             embedding_output=None, labels=LABELS)  # fmt: skip
    rng = np.random.default_rng(1)
    image, audio = on_grid(rng.standard_normal((8, 3, 16, 16)).astype(np.float32)), on_grid(rng.standard_normal((8, 1, 4000)).astype(np.float32))
    labels = expected_logits(image, audio)["logits"].argmax(1)
    reference = ReferenceSet.build(expected_logits, image, audio, labels, name="numpy")
    reference.save(folder / "reference.npz")
    model = {"name": "toy", "reference": {"file": "reference.npz", "sha256": sha256_file(folder / "reference.npz"), "samples": 8, "outputs_from": "numpy"}}
    art = Artifact("model.onnx", "onnx", "fp32", sha256_file(folder / "model.onnx"), (folder / "model.onnx").stat().st_size, Verification(passed=True))
    (folder / "manifest.json").write_text(json.dumps(Manifest(model=model, contract=contract, artifacts=[art]).to_dict()))
    return folder


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """A PNG, a WAV, and a 1 s recorded stream (MJPG video + WAV) for the live app."""
    import cv2
    from edgemm.runtimes.media import write_audio, write_image

    folder = tmp_path_factory.mktemp("device-media")
    rng = np.random.default_rng(2)
    write_image(folder / "x.png", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    write_audio(folder / "x.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    writer = cv2.VideoWriter(str(folder / "stream.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (32, 24))
    for _ in range(30):
        writer.write(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    writer.release()
    return {"png": folder / "x.png", "wav": folder / "x.wav", "video": folder / "stream.avi"}


def test_the_device_pins_are_the_toolkits_but_the_lighter_litert():
    """device/constraints.txt pins what the device extras need, at the toolkit's versions, except ai-edge-litert (2.1.1,
    without the accelerators a CPU interpreter never loads; the converter needs 2.3): one file cannot drift from the other."""
    device, toolkit = read_pins(DEVICE_CONSTRAINTS), read_pins(REPO / "constraints.txt")
    assert {name: version for name, version in device.items() if toolkit.get(name) != version} == {"ai-edge-litert": "2.1.1"}
    project = tomllib.loads((REPO / "device" / "pyproject.toml").read_text())["project"]
    needed = {canonicalize_name(Requirement(r).name) for r in project["dependencies"] + sum(project["optional-dependencies"].values(), [])}
    assert needed <= set(device)


def test_the_wheel_holds_the_device_half_only(device_wheel):
    names = zipfile.ZipFile(device_wheel).namelist()
    for needed in ("edgemm/__init__.py", "edgemm/__main__.py", "edgemm/cli.py", "edgemm/runtimes/model.py", "edgemm/runtimes/backends/litert_backend.py",
                   "edgemm/runtimes/live/pipeline.py", "edgemm/apps/live.py"):  # fmt: skip
        assert needed in names
    assert not [n for n in names if n.endswith(".safetensors") or n.startswith(TOOLKIT_ONLY) or "calibration" in n]
    metadata = next(zipfile.Path(device_wheel, n).read_text() for n in names if n.endswith(".dist-info/METADATA"))
    assert "Name: edgemm-device" in metadata and "Requires-Dist: numpy" in metadata and "Provides-Extra: litert" in metadata
    assert "edgemm = edgemm.cli:main" in next(zipfile.Path(device_wheel, n).read_text() for n in names if n.endswith("entry_points.txt"))
    assert device_wheel.stat().st_size < 500_000


def test_the_device_cli_runs_a_bundle_without_the_toolkit(device_site, bundle, media, tmp_path):
    probe = device_python(device_site, "import importlib.util, edgemm, edgemm.cli\n"
                          "print(edgemm.__file__, [m for m in ('edgemm.export', 'edgemm.models', 'edgemm.data') if importlib.util.find_spec(m)])")  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    where, found = probe.stdout.split(maxsplit=1)
    assert Path(where).is_relative_to(device_site) and found.strip() == "[]"

    proc = edgemm(device_site, "info", bundle)
    assert proc.returncode == 0 and "model.onnx" in proc.stdout and "class scores 'logits' over 4 labels" in proc.stdout, proc.stderr

    proc = edgemm(device_site, "predict", bundle, "--image", media["png"], "--audio", media["wav"], "--backend", "onnxruntime", "--json")
    assert proc.returncode == 0, proc.stderr
    pred = json.loads(proc.stdout)
    assert pred["label"] in LABELS and pred["modalities"] == ["image", "audio"] and pred["backend"] == "onnxruntime"

    proc = edgemm(device_site, "verify", bundle, "--only", "model.onnx")
    assert proc.returncode == 0 and " passed " in proc.stdout, proc.stdout + proc.stderr

    events = tmp_path / "events.jsonl"
    proc = edgemm(device_site, "live", bundle, "--camera", media["video"], "--mic", media["wav"], "--headless", "--fast", "--events", events,
                  "--backend", "onnxruntime", "--duration", "20")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    answers = [e for e in map(json.loads, events.read_text().splitlines()) if e.get("label") is not None]
    assert answers and {e["label"] for e in answers} <= set(LABELS)


def test_bench_runs_on_the_device_install(device_site, bundle):
    proc = edgemm(device_site, "bench", bundle, "--runs", "5", "--threads", "1")
    assert proc.returncode == 0 and "model.onnx" in proc.stdout and "Traceback" not in proc.stderr, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "args, extra",
    [
        (["export", "teacher.safetensors", "-o", "x.edgemm"], "export,data"),
        (["train", "--tiny"], "export,data"),
        (["build-engine", "x.edgemm"], "tensorrt"),
        (["verify", "BUNDLE", "--checkpoint", "teacher.safetensors"], "export,data"),
        (["bench", "BUNDLE", "--checkpoint", "teacher.safetensors"], "export,data"),
        (["live", "--sample", "--headless"], "data,app"),
    ],
)
def test_toolkit_commands_name_what_to_install(device_site, bundle, args, extra):
    proc = edgemm(device_site, *(str(bundle) if a == "BUNDLE" else a for a in args))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"edgemm: error: `edgemm {args[0]}") and "not in the device install (edgemm-device)" in line
    assert line.endswith(f"pip install 'edgemm[{extra}]'")
