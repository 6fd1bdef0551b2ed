"""Run an ONNX model as another CPU would: under qemu-user's emulated CPU (`qemu-x86_64-static -cpu Haswell`
is an AVX2-only x86: onnxruntime then takes the int8 kernels of CPUs without VNNI).

`python -m edgemm.runtimes.emulation MODEL IN.npz OUT.npz` is the side that runs inside the emulator."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .errors import EdgemmError

AVX2_ONLY_CPU = "Haswell"  # QEMU's model of an AVX2 x86 without AVX-512/VNNI


class EmulationError(EdgemmError):
    """The emulator is missing or the emulated run failed."""


def qemu_binary(arch: str = "x86_64") -> str | None:
    """The qemu-user binary for `arch` on this machine (Debian's qemu-user-static), if installed."""
    return shutil.which(f"qemu-{arch}-static") or shutil.which(f"qemu-{arch}")


def run_emulated(model: Path, feeds: dict[str, np.ndarray], cpu: str = AVX2_ONLY_CPU, timeout: float = 900) -> dict[str, np.ndarray]:
    """Every output of `model` on `feeds` (batched along axis 0), computed by onnxruntime on qemu's emulated `cpu`."""
    qemu = qemu_binary()
    if qemu is None:
        raise EmulationError("qemu-x86_64-static is not installed (Debian: apt-get install qemu-user-static)")
    with tempfile.TemporaryDirectory(prefix="edgemm-emulated-") as tmp:
        np.savez(Path(tmp) / "in.npz", **feeds)
        cmd = [qemu, "-cpu", cpu, sys.executable, "-m", "edgemm.runtimes.emulation", str(model), f"{tmp}/in.npz", f"{tmp}/out.npz"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise EmulationError(f"{model} under qemu -cpu {cpu}: no answer within {timeout:.0f} s") from exc
        if proc.returncode != 0:
            last = [line for line in proc.stderr.splitlines() if line.strip() and "TCG doesn't support" not in line][-1:]
            raise EmulationError(f"{model} under qemu -cpu {cpu} failed (exit {proc.returncode}): {last[0] if last else 'no message'}")
        with np.load(Path(tmp) / "out.npz") as out:
            return {k: out[k] for k in out.files}


def main(argv: list[str]) -> int:
    """Inside the emulator: run MODEL on the arrays of IN.npz in batches of 64 and write every output to OUT.npz."""
    import onnxruntime as ort

    model, inp, out = argv
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = 2, 1, 3
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    with np.load(inp) as data:
        feeds = {k: data[k] for k in data.files}
    n = len(next(iter(feeds.values())))
    parts = [session.run(names, {k: v[s : s + 64] for k, v in feeds.items()}) for s in range(0, n, 64)]
    np.savez(out, **{name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(names)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
