"""Device install sizes: what `pip install -c device/constraints.txt "./device[EXTRA]"` puts on disk, per extra, on
x86-64 (a fresh venv, this machine) and aarch64 (the host's pip with `--target --platform manylinux_2_N_aarch64`, as
tests/arm64.py installs the emulated device). Site-packages without pip and setuptools, as pip writes it and with
`--no-compile` (no .pyc); the biggest parts beside. Needs the package index pip uses (a few hundred MB the first time).

    .venv/bin/python bench/install_size.py [--extras litert onnx openvino litert,app] [--constraints device/constraints.txt]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

from edgemm.tables import format_table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from arm64 import PIP_AARCH64, build_device_wheel  # noqa: E402  (the emulated device's platform tags and wheel)

SAME_PACKAGE = {"opencv_python_headless": "cv2"}  # a wheel's .libs folder named after the distribution, not the module
PIP_ITSELF = {"pip", "setuptools", "pkg_resources", "_distutils_hack", "distutils-precedence.pth", "bin"}  # bin: --target's scripts


def tree_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6 if path.is_dir() else path.stat().st_size / 1e6


def parts(site: Path) -> dict[str, float]:
    """MB per top-level entry of a site-packages folder (a package's .libs folder counted with it), pip's own left out."""
    sizes: dict[str, float] = {}
    for entry in site.iterdir():
        if entry.name in PIP_ITSELF or entry.name.split("-")[0] in PIP_ITSELF:
            continue
        name = entry.name.removesuffix(".libs").split("-")[0].removesuffix(".py")
        name = SAME_PACKAGE.get(name, name)
        sizes[name] = sizes.get(name, 0.0) + tree_mb(entry)
    return sizes


def install(wheel: Path, extra: str, constraints: Path, where: Path, arch: str, compile_: bool) -> Path:
    spec = f"edgemm-device[{extra}] @ {wheel.as_uri()}"
    common = ["install", "-q", "--disable-pip-version-check", "--no-warn-conflicts", "-c", str(constraints), *([] if compile_ else ["--no-compile"])]
    if arch == "x86_64":
        venv.create(where, with_pip=True)
        subprocess.run([str(where / "bin" / "python"), "-m", "pip", *common, spec], check=True)
        return next((where / "lib").glob("python3*/site-packages"))
    subprocess.run([sys.executable, "-m", "pip", *common, "--target", str(where), *PIP_AARCH64, spec], check=True)
    return where


def measure(wheel: Path, extra: str, constraints: Path) -> list[str]:
    """One table row: MB on x86-64 and aarch64 (as installed / --no-compile), the three biggest parts."""
    row, biggest = [f"[{extra}]"], {}
    for arch in ("x86_64", "aarch64"):
        sizes = []
        for compile_ in (True, False):
            with tempfile.TemporaryDirectory() as tmp:
                found = parts(install(wheel, extra, constraints, Path(tmp) / "site", arch, compile_))
            sizes.append(sum(found.values()))
            biggest[arch] = found
        row.append(f"{sizes[0]:.1f} / {sizes[1]:.1f}")
    top = sorted(biggest["x86_64"], key=lambda n: -biggest["x86_64"][n])[:3]
    row.append(", ".join(f"{n} {biggest['x86_64'][n]:.1f} / {biggest['aarch64'].get(n, 0):.1f}" for n in top))
    print(f"measured [{extra}]", file=sys.stderr)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extras", nargs="+", default=["litert", "onnx", "openvino", "litert,app"])
    parser.add_argument("--constraints", type=Path, default=REPO / "device" / "constraints.txt")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as build:
        wheel = build_device_wheel(Path(build))
        rows = [measure(wheel, extra, args.constraints) for extra in args.extras]
    print(f"device install with -c {args.constraints.relative_to(REPO) if args.constraints.is_relative_to(REPO) else args.constraints}: site-packages"
          " without pip/setuptools, as installed / --no-compile")  # fmt: skip
    print(format_table(["device install", "x86-64 MB", "aarch64 MB", "biggest parts (x86-64 / aarch64 MB, no .pyc)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
