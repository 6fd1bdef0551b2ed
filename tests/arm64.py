"""An emulated aarch64 device for the tests: a Debian arm64 userland run by qemu-user, with the device install.

No package scripts run under emulation and nothing is mounted: `mmdebstrap --variant=extract` unpacks the
rootfs, the host's pip installs the aarch64 wheels (the runtimes, OpenCV, soundfile, soxr) and edgemm's device
distribution (`device/`: edgemm-device, no torch, no model code) into it, and `qemu-aarch64-static -L ROOTFS`
runs its Python. qemu looks paths up under ROOTFS first, so a plain file `ROOTFS/proc/cpuinfo` describes the
emulated CPU to the guest (onnxruntime reads it at import, and must see the CPU that `QEMU_CPU` emulates: a
cpuinfo claiming dot product on a core without it ends in SIGILL). The rootfs and wheels are cached between
runs under `$EDGEMM_DEVICE_CACHE` (default `~/.cache/edgemm-device`; the userlands of other pins are removed);
edgemm-device is reinstalled on every run.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
DEVICE_CONSTRAINTS = REPO / "device" / "constraints.txt"  # the device install's pins
DEVICE_SOURCES = ("device", "edgemm", "runtimes", "apps", "export", "calibration")  # device/pyproject.toml's ../ sources and the rest
SUITE = "bookworm"  # Python 3.11, like the host: the host's pip picks cp311 wheels for it
GLIBC = 36  # bookworm's glibc 2.36: every manylinux_2_N tag up to it (without 2_35/2_36 pip falls back to old releases)
PIP_AARCH64 = ("--only-binary=:all:", "--python-version=3.11", "--implementation=cp", "--abi=cp311",
               *[f"--platform=manylinux_2_{n}_aarch64" for n in range(17, GLIBC + 1)], "--platform=manylinux2014_aarch64")  # fmt: skip
DEVICE_PACKAGES = ("numpy", "onnxruntime", "ai-edge-litert", "openvino", "opencv-python-headless", "soundfile", "soxr")
DEBIAN_PACKAGES = "python3,libc-bin,libstdc++6,libgomp1"  # what the wheels' native code links against

CPUINFO = {  # QEMU_CPU → what /proc/cpuinfo shows on such a core (two of them)
    "neoverse-n1": ("0xd0c", "0x3", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"),
    "cortex-a72": ("0xd08", "0x0", "fp asimd evtstrm crc32 cpuid"),
}


class DeviceUnavailable(Exception):
    """The emulated device cannot be set up here; the message says why in one line."""


def build_device_wheel(folder: Path) -> Path:
    """edgemm-device's wheel, built in `folder` from a copy of every source folder (no build folders left in the
    checkout, none read from it; what the wheel must leave out is there to leave out)."""
    tree = folder / "src"
    for name in DEVICE_SOURCES:
        shutil.copytree(REPO / name, tree / name, ignore=shutil.ignore_patterns("__pycache__", "build", "dist", "*.egg-info"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps", "--no-build-isolation",
                           "--wheel-dir", str(folder), str(tree / "device")], capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"building edgemm-device's wheel failed:\n{proc.stdout}{proc.stderr}")
    return next(folder.glob("edgemm_device-*.whl"))


def read_pins(path: Path) -> dict[str, str]:
    """{canonical package name: version} of a pip constraints file's `name==version` lines."""
    pins = {}
    for line in path.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[canonicalize_name(name.strip())] = version.strip()
    return pins


def _mirror() -> str:
    """The host's own Debian mirror (never written into the repo)."""
    for source in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in source.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    list_file = Path("/etc/apt/sources.list")
    for line in list_file.read_text().splitlines() if list_file.is_file() else []:
        if line.startswith("deb ") and "security" not in line:
            return line.split()[1]
    return "http://deb.debian.org/debian"


def _run(cmd: list[str], what: str, timeout: float = 900) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeviceUnavailable(f"{what}: {exc}") from exc
    if proc.returncode != 0:
        last = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()][-1:]
        raise DeviceUnavailable(f"{what} failed: {last[0] if last else f'exit {proc.returncode}'}")


@dataclass
class Arm64Device:
    """A prepared arm64 userland; `run` executes Python code in it on an emulated CPU."""

    root: Path
    qemu: str

    @classmethod
    def prepare(cls, cache: Path | None = None) -> "Arm64Device":
        """Build (or reuse) the rootfs and the wheels, then install this checkout's device distribution into it."""
        qemu = shutil.which("qemu-aarch64-static")
        if qemu is None:
            raise DeviceUnavailable("qemu-aarch64-static is not installed (Debian: apt-get install qemu-user-static; make test does it as root)")
        if shutil.which("mmdebstrap") is None:
            raise DeviceUnavailable("mmdebstrap is not installed (Debian: apt-get install mmdebstrap; make test does it as root)")
        pins = read_pins(DEVICE_CONSTRAINTS)
        wheels = [f"{name}=={pins[canonicalize_name(name)]}" for name in DEVICE_PACKAGES]
        key = hashlib.sha256(" ".join([SUITE, DEBIAN_PACKAGES, *wheels]).encode()).hexdigest()[:12]
        cache = Path(cache or os.environ.get("EDGEMM_DEVICE_CACHE", Path.home() / ".cache" / "edgemm-device"))
        root = cache / f"arm64-{SUITE}-{key}"
        if not (root / "ready").is_file():
            shutil.rmtree(root, ignore_errors=True)
            root.parent.mkdir(parents=True, exist_ok=True)
            staging = root.with_name(root.name + ".staging")
            shutil.rmtree(staging, ignore_errors=True)
            _run(["mmdebstrap", "--arch=arm64", "--variant=extract", "--skip=check/qemu", f"--include={DEBIAN_PACKAGES}",
                  SUITE, str(staging), _mirror()], "unpacking a Debian arm64 userland (mmdebstrap)")  # fmt: skip
            _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(staging / "opt" / "site"), *PIP_AARCH64,
                  "-c", str(DEVICE_CONSTRAINTS), *wheels], "installing the aarch64 wheels (pip)")  # fmt: skip
            (staging / "proc").mkdir(exist_ok=True)
            (staging / "ready").write_text(" ".join(wheels))
            staging.rename(root)
        for stale in root.parent.glob("arm64-*"):  # userlands of other pins (~430 MB each): this one replaces them
            if stale != root:
                shutil.rmtree(stale, ignore_errors=True)
        device = cls(root, qemu)
        shutil.rmtree(root / "opt" / "edgemm", ignore_errors=True)
        _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--no-build-isolation",
              "--target", str(root / "opt" / "edgemm"), str(REPO / "device")], "installing edgemm-device into the arm64 userland")  # fmt: skip
        return device

    def site_size_mb(self) -> float:
        """What the device install takes (wheels + edgemm-device), in MB."""
        return sum(p.stat().st_size for base in ("opt/site", "opt/edgemm") for p in (self.root / base).rglob("*") if p.is_file()) / 1e6

    def run(self, cpu: str, args: list[str], env: dict[str, str] | None = None, timeout: float = 1200) -> subprocess.CompletedProcess:
        """`python3 ARGS` on an emulated `cpu` (a key of CPUINFO) with edgemm and the wheels on the path."""
        part, variant, features = CPUINFO[cpu]
        block = "processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: {f}\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: {v}\nCPU part\t: {p}\nCPU revision\t: 1\n"
        (self.root / "proc" / "cpuinfo").write_text("\n".join(block.format(i=i, f=features, v=variant, p=part) for i in range(2)))
        guest_env = {
            "PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", "QEMU_CPU": cpu,
            "PYTHONPATH": "/opt/edgemm:/opt/site", "PYTHONDONTWRITEBYTECODE": "1", **(env or {}),  # guest paths: qemu looks under ROOTFS first
        }  # fmt: skip
        return subprocess.run([self.qemu, "-L", str(self.root), str(self.root / "usr/bin/python3"), *args], cwd=self.root / "opt",
                              capture_output=True, text=True, timeout=timeout, env=guest_env)  # fmt: skip (not the checkout: its edgemm/ would shadow the install)
