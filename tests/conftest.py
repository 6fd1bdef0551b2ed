"""Shared fixtures: a hermetic data cache, a tiny teacher trained for real, and its ONNX bundle."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def without_package(package: str) -> str:
    """Python source that makes `package` unimportable (as if not installed) for the rest of a `-c` script."""
    return (
        "import sys, importlib.abc\n"
        "class _Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        f"        if name.split('.')[0] == {package!r}:\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory) -> Path:
    """Point EDGEMM_CACHE at a session folder unless the caller chose one (CI may reuse a warm cache)."""
    if "EDGEMM_CACHE" not in os.environ:
        os.environ["EDGEMM_CACHE"] = str(tmp_path_factory.mktemp("edgemm-cache"))
    return Path(os.environ["EDGEMM_CACHE"])


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from edgemm.checkpoint import save_checkpoint
    from edgemm.train import tiny_config, train

    ckpt = train(tiny_config(), progress=False)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", ckpt)


def export_onnx_bundle(checkpoint: Path, out: Path, samples: int = 32) -> Path:
    from edgemm.exporting import export_checkpoint

    export_checkpoint(checkpoint, "onnx", out, samples=samples, log=lambda _: None)
    return out


@pytest.fixture(scope="session")
def tiny_bundle_master(tiny_checkpoint, tmp_path_factory) -> Path:
    return export_onnx_bundle(tiny_checkpoint, tmp_path_factory.mktemp("bundles") / "tiny.edgemm")


@pytest.fixture
def tiny_bundle(tiny_bundle_master, tmp_path) -> Path:
    """A private copy of the tiny bundle that a test may damage."""
    return Path(shutil.copytree(tiny_bundle_master, tmp_path / "tiny.edgemm"))


@pytest.fixture(scope="session")
def tiny_test_split():
    from edgemm.data.avdigits import load_split
    from edgemm.train import tiny_config

    return load_split("test", tiny_config().data)


@pytest.fixture(scope="session")
def tiny_student(tiny_checkpoint, tmp_path_factory) -> Path:
    """A student distilled for real from the tiny teacher, through the CLI (recipe file + flag override)."""
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("student")
    recipe = folder / "recipe.yaml"
    recipe.write_text("epochs: 2\nbatch_size: 16\nlr: 0.004\nstudent:\n  widths: [8, 16]\n  dim: 16\n  hidden: 32\n  embedding_dim: 16\n")
    out = folder / "student.safetensors"
    subprocess.run(
        [sys.executable, "-m", "edgemm", "distill", "--teacher", tiny_checkpoint, "--recipe", recipe, "--epochs", "6", "-o", out, "--quiet"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def tiny_student_bundle_master(tiny_student, tmp_path_factory) -> Path:
    return export_onnx_bundle(tiny_student, tmp_path_factory.mktemp("student-bundles") / "student.edgemm")


@pytest.fixture
def tiny_student_bundle(tiny_student_bundle_master, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_student_bundle_master, tmp_path / "student.edgemm"))


@pytest.fixture(scope="session")
def shipped_bundle_master(tmp_path_factory) -> Path:
    """The shipped student exported to ONNX, OpenVINO and TFLite with every format's INT8, calibrated on the
    built-in data (the demo's bundle without TensorRT): the model the INT8 tests judge. ~2 minutes."""
    from edgemm.checkpoint import default_checkpoint
    from edgemm.exporting import export_checkpoint

    out = tmp_path_factory.mktemp("shipped") / "av_digits.edgemm"
    export_checkpoint(default_checkpoint("student"), "onnx,openvino,tflite", out, int8_calib="av-digits", log=lambda _: None)
    return out


@pytest.fixture
def shipped_bundle(shipped_bundle_master, tmp_path) -> Path:
    """A private copy of the shipped student's bundle."""
    return Path(shutil.copytree(shipped_bundle_master, tmp_path / "av_digits.edgemm"))


@pytest.fixture
def shipped_onnx_bundle(tmp_path) -> Path:
    """The shipped student exported to ONNX fp32 only (seconds), for tests that quantize it themselves."""
    from edgemm.checkpoint import default_checkpoint

    return export_onnx_bundle(default_checkpoint("student"), tmp_path / "onnx.edgemm", samples=300)
