"""The format's own benchmark tool on an artifact's file, as a reference figure for `edgemm bench`.

| format   | tool (package)                         | what its median is                                               |
|----------|----------------------------------------|------------------------------------------------------------------|
| openvino | `benchmark_app` (openvino)             | `InferRequest.latency` of sync `infer()` on pre-filled inputs, measured in C++ |
| tflite   | `litert-benchmark` (ai-edge-litert)    | Python wall time of `CompiledModel.run_by_name` on pre-filled TensorBuffers (read unrounded) |

The commands (`vendor_command`), batch 1, the thread count and number of runs `edgemm bench` uses:

    benchmark_app -m model.xml -d CPU -load_config config.json -api sync -shape image[1,1,32,32],... -niter RUNS
        config.json: {"CPU": {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "N"}}
    litert-benchmark --model model.tflite --num_threads N --num_runs RUNS --warmup_runs 20 --result_json result.json

litert-benchmark prints its median to 0.01 ms (its JSON too): 30 % of a 0.03 ms INT8 figure. Where its module is
importable here, it runs as `python -c LITERT_UNROUNDED ARGS`: the tool's own `main()`, with its `statistics.median`
kept before the report rounds it (`edgemm: unrounded median ... ms`); else the executable, rounded.
(benchmark_app accepts -nthreads only with `-hint none`, so `-hint latency` and the threads go in its config file;
f32 is what edgemm's OpenVINO backend compiles every IR at.) Neither tool times feeding inputs or reading outputs,
and benchmark_app's figure is measured inside C++, without the ~20 µs a Python `infer()` call adds: an `edgemm`
call, which does all of that, has that much to pay on top. onnxruntime's pip wheel ships no benchmark CLI
(`onnxruntime_perf_test` comes only with source builds) and TensorRT's `trtexec` is not wired here: their rows get
no reference. A tool that is missing, fails, crashes or prints nothing this module can read gives a `VendorFigure`
whose `p50_ms` is None and whose `note` says why; nothing here raises.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = {"openvino": "benchmark_app", "tflite": "litert-benchmark"}
LITERT_MODULE = "ai_edge_litert.tools.benchmark_litert_model"  # litert-benchmark's entry point: `main()`
# litert-benchmark's own run, its median kept before the report rounds it to 0.01 ms (every other statistic as is)
LITERT_UNROUNDED = f"""
import statistics, sys
import {LITERT_MODULE} as tool
kept = []
class Statistics:
    def __getattr__(self, name):
        return getattr(statistics, name)
    def median(self, values):
        kept.append(statistics.median(values))
        return kept[-1]
tool.statistics = Statistics()
sys.argv[0] = "litert-benchmark"
try:
    sys.exit(tool.main())
finally:
    if kept:
        print(f"edgemm: unrounded median {{kept[-1]!r}} ms")
"""
UNROUNDED = re.compile(r"^edgemm: unrounded median ([0-9.eE+-]+) ms$", re.MULTILINE)
TIMEOUT_S = 120  # per tool run; a run that takes longer is reported as a note, not waited for


@dataclass
class VendorFigure:
    """The vendor tool's batch-1 latency on one file (None with a `note` when it could not be had)."""

    tool: str
    p50_ms: float | None = None  # the median the tool reports
    mean_ms: float | None = None
    command: list[str] = field(default_factory=list)
    note: str = ""


def find_tool(name: str) -> Path | None:
    """The tool on PATH, else next to this Python (a venv's bin/ that is not on PATH)."""
    found = shutil.which(name)
    if found:
        return Path(found)
    here = Path(sys.executable).parent / name
    return here if here.is_file() and os.access(here, os.X_OK) else None


def ir_batch1_shapes(xml: Path) -> str:
    """benchmark_app's `-shape` for an OpenVINO IR at batch 1: `name[1,...],...`, dynamic dims set to 1."""
    shapes = []
    for layer in ET.parse(xml).getroot().iter("layer"):
        if layer.get("type") != "Parameter":
            continue
        port = layer.find("output/port")
        names = (port.get("names") if port is not None else None) or layer.get("name")
        dims = [d.text.strip() for d in port.iter("dim")] if port is not None else []
        dims = ["1" if d in ("-1", "?") or not d.isdigit() else d for d in dims]
        shapes.append(f"{names.split(',')[0].strip()}[{','.join(dims)}]")
    return ",".join(shapes)


def _ms(value: str, unit: str) -> float:
    return float(value) / 1000 if unit == "us" else float(value)


def parse_benchmark_app(text: str) -> tuple[float | None, float | None]:
    """(median, average) in ms from benchmark_app's report (`Median: 159.48 us`, or `ms` for slower models)."""
    found = {}
    for stat in ("Median", "Average"):
        m = re.search(rf"^\[ INFO \]\s+{stat}:\s+([0-9.]+)\s*(us|ms)\s*$", text, re.MULTILINE)
        found[stat] = _ms(*m.groups()) if m else None
    return found["Median"], found["Average"]


def parse_litert_benchmark(text: str, result_json: Path | None = None) -> tuple[float | None, float | None]:
    """(median, average) in ms from litert-benchmark's `--result_json` file, else from its printed table; the median
    unrounded where the run printed it so (`LITERT_UNROUNDED`)."""
    unrounded = UNROUNDED.search(text)
    median, avg = None, None
    if result_json is not None and result_json.is_file():
        try:
            latency = json.loads(result_json.read_text())["latency"]
            median, avg = float(latency["median_ms"]), float(latency["avg_ms"])
        except (ValueError, KeyError, TypeError):
            pass
    if median is None:
        printed = re.search(r"^Inference \(median\):\s+([0-9.]+) ms", text, re.MULTILINE)
        mean = re.search(r"^Inference \(avg\):\s+([0-9.]+) ms", text, re.MULTILINE)
        median, avg = (float(printed.group(1)) if printed else None), (float(mean.group(1)) if mean else None)
    return (float(unrounded.group(1)) if unrounded else median), avg


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line or "Error" in line or "error" in line]
    return (errors or lines or ["no output"])[-1][:200]


def _run(command: list[str], parse, tool: str) -> VendorFigure:
    figure = VendorFigure(tool, command=command)
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        figure.note = f"{tool} ran over {TIMEOUT_S} s and was stopped"
        return figure
    except OSError as exc:
        figure.note = f"{tool} could not be started ({exc})"
        return figure
    output = done.stdout + "\n" + done.stderr
    if done.returncode < 0:  # e.g. litert-benchmark (ai-edge-litert 2.3's CompiledModel) on a truncated file: SIGSEGV
        try:
            figure.note = f"{tool} crashed ({signal.Signals(-done.returncode).name})"
        except ValueError:
            figure.note = f"{tool} crashed (signal {-done.returncode})"
        return figure
    if done.returncode != 0:
        figure.note = f"{tool} failed (exit {done.returncode}): {_last_line(output)}"
        return figure
    try:
        figure.p50_ms, figure.mean_ms = parse(output)
    except (ValueError, OSError) as exc:  # a figure the tool printed in a form this module cannot read
        figure.note = f"cannot read {tool}'s output ({exc})"
        return figure
    if figure.p50_ms is None:
        figure.note = f"{tool} printed no median latency this module can read: {_last_line(output)}"
    elif figure.p50_ms == 0:  # litert-benchmark prints to 0.01 ms
        figure.p50_ms = None
        figure.note = f"{tool}'s median is below the 0.01 ms it prints"
    return figure


def _own_litert_tool(exe: str) -> bool:
    """Is `exe` the litert-benchmark of this Python's environment, whose module it can run itself?"""
    if Path(exe).absolute().parent != Path(sys.executable).absolute().parent:  # (a venv's python is a link: not resolved)
        return False
    try:
        return importlib.util.find_spec(LITERT_MODULE) is not None
    except ImportError:  # ai_edge_litert itself is not installed here
        return False


def vendor_command(file: Path, fmt: str, threads: int | None, runs: int, warmup: int, workdir: Path, exe: Path | str | None = None):
    """(command, parse) that run the format's tool on `file` at batch 1 and read its (median, mean) ms from the
    output; files the tool needs (config, result) go in `workdir`. None for a format without a tool."""
    tool = TOOLS.get(fmt)
    if tool is None:
        return None
    exe = str(exe or find_tool(tool) or tool)
    if fmt == "openvino":
        # `-hint latency` with the thread count and f32 precision the edgemm backend compiles with: benchmark_app takes
        # -nthreads only with `-hint none`, so the hint and the threads go in a config file, and `-api sync` is then
        # needed (the tool picks sync from the -hint flag only). Other CPU settings stay the tool's (pinning on).
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        (workdir / "config.json").write_text(json.dumps({"CPU": config}))
        command = [exe, "-m", str(file), "-d", "CPU", "-load_config", str(workdir / "config.json"), "-api", "sync",
                   "-shape", ir_batch1_shapes(file), "-niter", str(runs)]  # fmt: skip
        return command, parse_benchmark_app
    result = workdir / "result.json"
    runner = [sys.executable, "-c", LITERT_UNROUNDED] if _own_litert_tool(exe) else [exe]
    command = [*runner, "--model", str(file), "--num_threads", str(threads or 0), "--num_runs", str(runs), "--warmup_runs", str(warmup),
               "--result_json", str(result)]  # fmt: skip
    return command, lambda text: parse_litert_benchmark(text, result)


def vendor_latency(file: str | Path, fmt: str, threads: int | None = None, runs: int = 200, warmup: int = 20) -> VendorFigure | None:
    """Run the format's own benchmark tool on `file` at batch 1 with `threads` CPU threads (the runtime's default
    when None) for `runs` timed calls; None when the format has no such tool. Never raises: what went wrong is in
    the figure's `note`."""
    tool = TOOLS.get(fmt)
    if tool is None:
        return None
    exe = find_tool(tool)
    if exe is None:
        return VendorFigure(tool, note=f"{tool} is not installed (not on PATH nor next to {sys.executable})")
    with tempfile.TemporaryDirectory(prefix="edgemm-vendor-") as tmp:
        try:
            command, parse = vendor_command(Path(file), fmt, threads, runs, warmup, Path(tmp), exe)
        except (ET.ParseError, OSError, AttributeError, ValueError) as exc:  # an IR this module cannot read its inputs from
            return VendorFigure(tool, note=f"cannot prepare {tool}'s run on {file} ({exc})")
        return _run(command, parse, tool)
