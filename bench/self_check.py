"""What the on-target self-check costs: for every verified artifact of a bundle, `load_bundle` on a machine with
no record of it (open + the check on the bundle's reference samples + writing the record), beside a load that
finds the record and a load with `self_check=False`, measured in one run, torch-free.

    .venv/bin/python bench/self_check.py BUNDLE [--repeats 5] [--threads 2]

Prints the medians (ms) per artifact; the target is ≤ 1 s per artifact for the default student.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from edgemm.runtimes import load_bundle
from edgemm.runtimes.backends import BACKENDS
from edgemm.runtimes.machine import this_machine
from edgemm.runtimes.manifest import Manifest
from edgemm.runtimes.target_check import CHECKS_DIR, CheckStore, reference_digest

from edgemm.tables import format_table

MODES = {"no check (self_check=False)": {"self_check": False}, "first use (self-check)": {}, "record found": {}}


def measure(bundle: Path, manifest: Manifest, file: str, backend: str, repeats: int, threads: int) -> dict[str, float]:
    """Median load times (ms) per mode, with the manifest narrowed to this artifact so `load_bundle` picks it."""
    alone = Manifest.from_dict(manifest.to_dict())
    alone.artifacts = [a for a in alone.artifacts if a.file == file]
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        (bundle / "manifest.json").write_text(json.dumps(alone.to_dict()))
        for _ in range(repeats):
            shutil.rmtree(bundle / CHECKS_DIR, ignore_errors=True)
            for mode, options in MODES.items():  # in this order: no record, then the check writes it, then it is found
                started = time.perf_counter()
                load_bundle(bundle, backend=backend, threads=threads, **options)
                times[mode].append(1000 * (time.perf_counter() - started))
    finally:
        (bundle / "manifest.json").write_text(json.dumps(manifest.to_dict()))
    return {mode: statistics.median(values) for mode, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(shutil.copytree(args.bundle, Path(tmp) / "b.edgemm"))
        manifest = Manifest.read(bundle)
        digest = reference_digest(bundle, manifest)
        for art in (a for a in manifest.artifacts if a.verified):
            info = next(b for b in BACKENDS.values() if art.format in b.formats)
            if not info.installed():
                continue
            ms = measure(bundle, manifest, art.file, info.name, args.repeats, args.threads)
            check = CheckStore(bundle).lookup(art, digest, info.name)
            cost = ms["first use (self-check)"] - ms["no check (self_check=False)"]
            rows.append([art.file, info.name, *(f"{v:.0f}" for v in ms.values()), f"{cost:.0f}", "passed" if check and check.passed else "FAILED"])
    samples = manifest.model["reference"]["samples"]
    print(f"{this_machine().describe()}\n{args.repeats} repeats, {args.threads} threads, reference {samples} samples x 3 patterns")
    print(format_table(["artifact", "backend", *(f"{m} ms" for m in MODES), "self-check costs ms", "check here"], rows))


if __name__ == "__main__":
    main()
