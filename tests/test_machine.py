"""Machine facts behind every verdict: CPU name, the ISA features that change int8/fp numerics, the kernel family."""
import subprocess
import sys

from edgemm.runtimes.machine import (
    MachineInfo,
    parse_cpuinfo,
    reconcile,
    this_machine,
    tool_versions,
)

X86_AVX2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse4_1 avx avx2 fma f16c\n"
X86_VNNI = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6338\nflags\t\t: sse4_1 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni\n"
X86_AMX = "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: avx2 avx512f avx512_vnni avx_vnni amx_tile amx_int8 amx_bf16\n"
ORIN = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU part\t: 0xd42\n"
PI4 = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n"


def test_cpuinfo_gives_the_name_and_the_numerics_features():
    assert parse_cpuinfo(X86_AVX2, "x86_64") == ("AMD EPYC 7B12", ("sse4_1", "avx", "avx2", "fma", "f16c"))
    assert parse_cpuinfo(ORIN, "aarch64") == ("Cortex-A78AE", ("asimd", "asimddp", "asimdhp", "fphp"))
    assert parse_cpuinfo(PI4, "aarch64")[0] == "Cortex-A72"


def test_int8_kernel_families_and_machine_keys():
    cpus = ((X86_AVX2, "x86_64"), (X86_VNNI, "x86_64"), (X86_AMX, "x86_64"), (ORIN, "aarch64"), (PI4, "aarch64"))
    machines = {text: MachineInfo(parse_cpuinfo(text, arch)[0], arch, parse_cpuinfo(text, arch)[1], "Linux") for text, arch in cpus}
    kinds = {text: (m.int8_kernels, m.int8_saturates) for text, m in machines.items()}
    assert kinds == {
        X86_AVX2: ("x86-avx2", True), X86_VNNI: ("x86-vnni", False), X86_AMX: ("x86-amx", False),
        ORIN: ("arm-dotprod", False), PI4: ("arm-neon", False),
    }  # fmt: skip
    keys = [m.key for m in machines.values()]
    assert len(set(keys)) == 5 and keys[0].startswith("x86_64-avx2-") and keys[3].startswith("aarch64-dotprod-")
    same_class_other_name = MachineInfo("AMD EPYC 9654", "x86_64", machines[X86_AVX2].features, "Linux 6.1")
    assert same_class_other_name.key == machines[X86_AVX2].key  # a key names the kernels, not the box
    assert MachineInfo.from_dict(machines[ORIN].to_dict()) == machines[ORIN]


def test_the_cpus_own_report_wins_over_an_emulator_hosts_cpuinfo():
    listed = ("sse4_1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni")
    probed_haswell = {"sse4_1": True, "avx": True, "avx2": True, "fma": True, "f16c": True, "avx512f": False, "avx512bw": False, "avx512_vnni": False}
    name, features = reconcile("Intel Xeon", listed, probed_haswell)
    assert "emulated" in name and features == ("sse4_1", "avx", "avx2", "fma", "f16c")  # avx_vnni from the host is not trusted
    probed_host = {f: f in listed for f in probed_haswell}
    assert reconcile("Intel Xeon", listed, probed_host) == ("Intel Xeon", listed)  # agreeing: cpuinfo adds what numpy does not probe


def test_this_machine_and_tool_versions_without_importing_them():
    machine = this_machine()
    assert machine.arch and machine.cpu and machine.key.startswith(machine.arch)
    code = "import sys; from edgemm.runtimes.machine import tool_versions; v = tool_versions(); print(sorted(v), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'numpy'" in out and "'onnxruntime'" in out and out.strip().endswith("False")
    assert tool_versions(("no-such-distribution",)) == {}
