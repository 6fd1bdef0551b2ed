"""The machine a verdict was made on: CPU, architecture, the ISA features that change numerics, OS, tool versions.

INT8 answers depend on the CPU's integer kernels: x86 without VNNI multiplies u8 x s8 pairs with
`vpmaddubsw`, whose 16-bit intermediate saturates; VNNI/AMX and ARM's dot-product kernels accumulate
exactly. Every verification records `this_machine()`; on-target checks are kept per machine class.
"""
from __future__ import annotations

import functools
import hashlib
import platform
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

# ISA features that select different integer/float kernels in onnxruntime (MLAS), OpenVINO (oneDNN) or XNNPACK
NUMERIC_FEATURES = (
    # x86
    "sse4_1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx_vnni_int8", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
    # ARM ("asimd" is NEON)
    "asimd", "asimddp", "asimdhp", "fphp", "i8mm", "bf16", "sve", "sve2", "sme",
)  # fmt: skip

# tools whose versions decide what an artifact contains or how it computes (distribution names)
TOOLS = ("edgemm", "numpy", "torch", "onnx", "onnxscript", "onnxruntime", "openvino", "nncf", "litert-torch",
         "ai-edge-litert", "ai-edge-quantizer", "tflite-runtime", "tensorrt", "polygraphy")  # fmt: skip
BACKEND_DISTRIBUTIONS = {"onnxruntime": "onnxruntime", "openvino": "openvino", "litert": "ai-edge-litert", "tensorrt": "tensorrt"}

# ARM "CPU part" numbers (implementer 0x41, Arm Ltd) of the cores edge devices use
ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57", "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77",
    "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78", "0xd42": "Cortex-A78AE", "0xd44": "Cortex-X1", "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710", "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2",
}  # fmt: skip


@dataclass(frozen=True)
class MachineInfo:
    """What a verification ran on."""

    cpu: str
    arch: str
    features: tuple[str, ...]  # the NUMERIC_FEATURES this CPU has
    os: str

    @property
    def int8_kernels(self) -> str:
        """The family of int8 dot-product kernels the runtimes use on this CPU."""
        f = set(self.features)
        if self.arch in ("x86_64", "amd64", "i686", "x86"):
            if "amx_int8" in f:
                return "x86-amx"
            if f & {"avx512_vnni", "avx_vnni"}:
                return "x86-vnni"
            return "x86-avx2" if f & {"avx2", "avx512bw"} else "x86-sse"
        if self.arch in ("aarch64", "arm64") or self.arch.startswith("arm"):
            return "arm-i8mm" if "i8mm" in f else "arm-dotprod" if "asimddp" in f else "arm-neon"
        return f"{self.arch}-generic"

    @property
    def int8_saturates(self) -> bool:
        """Whether onnxruntime's/oneDNN's u8 x s8 kernels here can saturate a 16-bit intermediate (no VNNI/AMX on x86)."""
        return self.int8_kernels in ("x86-avx2", "x86-sse")

    @property
    def key(self) -> str:
        """Names the machine class: machines with the same key run the same kernels on the same artifact."""
        digest = hashlib.sha256(" ".join((self.arch, *self.features)).encode()).hexdigest()[:10]
        return f"{self.arch}-{self.int8_kernels.split('-', 1)[1]}-{digest}"

    def describe(self) -> str:
        """One line for logs and tables."""
        return f"{self.cpu} ({self.arch}, int8 kernels {self.int8_kernels}; {' '.join(self.features) or 'no feature list'}; {self.os})"

    def to_dict(self) -> dict:
        return {**asdict(self), "features": list(self.features), "int8_kernels": self.int8_kernels, "key": self.key}

    @classmethod
    def from_dict(cls, data: dict) -> "MachineInfo":
        return cls(str(data["cpu"]), str(data["arch"]), tuple(data["features"]), str(data.get("os", "")))


def parse_cpuinfo(text: str, arch: str) -> tuple[str, tuple[str, ...]]:
    """(CPU name, numerics-relevant features) from /proc/cpuinfo's text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    name = fields.get("model name") or fields.get("Model name") or fields.get("Hardware") or ""
    if not name and fields.get("CPU implementer") == "0x41":
        name = ARM_PARTS.get(fields.get("CPU part", ""), f"Arm core part {fields.get('CPU part', '?')}")
    elif not name and "CPU part" in fields:
        name = f"implementer {fields.get('CPU implementer')} part {fields['CPU part']}"
    return name or platform.processor() or arch, tuple(f for f in NUMERIC_FEATURES if f in flags)


# numpy's own CPUID/HWCAP detection (what this process's CPU reports, also under an emulator) → our names
NUMPY_FEATURES = {
    "SSE41": "sse4_1", "AVX": "avx", "AVX2": "avx2", "FMA3": "fma", "F16C": "f16c", "AVX512F": "avx512f", "AVX512BW": "avx512bw",
    "AVX512VL": "avx512vl", "AVX512VNNI": "avx512_vnni", "AVX512BF16": "avx512_bf16", "AVX512FP16": "avx512_fp16",
    "ASIMD": "asimd", "ASIMDDP": "asimddp", "ASIMDHP": "asimdhp", "FPHP": "fphp", "SVE": "sve",
}  # fmt: skip


def _numpy_features() -> dict[str, bool] | None:
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__
        except ImportError:
            return None
    return {ours: bool(__cpu_features__.get(theirs)) for theirs, ours in NUMPY_FEATURES.items() if theirs in __cpu_features__}


def reconcile(name: str, listed: tuple[str, ...], probed: dict[str, bool] | None) -> tuple[str, tuple[str, ...]]:
    """The CPU name and features, trusting the CPU's own report (numpy's probe) over /proc/cpuinfo: under an
    emulator (qemu-user) /proc/cpuinfo describes the host, not the CPU the process runs on. Features numpy does
    not probe (AMX, AVX-VNNI, i8mm, ...) are taken from /proc/cpuinfo only when the two agree on the rest."""
    if not probed:
        return name, listed
    agree = all((f in listed) == has for f, has in probed.items())
    features = {f for f, has in probed.items() if has} | ({f for f in listed if f not in probed} if agree else set())
    shown = name if agree else f"emulated or masked CPU (its features differ from /proc/cpuinfo's {name})"
    return shown, tuple(f for f in NUMERIC_FEATURES if f in features)


@functools.lru_cache(maxsize=1)
def this_machine() -> MachineInfo:
    """This machine, read once: the CPU's own feature report (numpy's probe) and Linux's /proc/cpuinfo."""
    arch = platform.machine().lower() or "unknown"
    try:
        name, listed = parse_cpuinfo(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"), arch)
    except OSError:
        name, listed = platform.processor() or arch, ()
    name, features = reconcile(name, listed, _numpy_features())
    return MachineInfo(name, arch, features, f"{platform.system()} {platform.release()}".strip())


def tool_versions(names: tuple[str, ...] = TOOLS) -> dict[str, str]:
    """Installed versions of `names` (distribution names), read from package metadata without importing them."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def backend_version(backend: str) -> str:
    """The installed version of a backend's package ("?" when no metadata is found, e.g. a source-built TensorRT)."""
    versions = tool_versions((BACKEND_DISTRIBUTIONS.get(backend, backend), "tflite-runtime"))
    return versions.get(BACKEND_DISTRIBUTIONS.get(backend, backend)) or (versions.get("tflite-runtime") if backend == "litert" else None) or "?"
