"""`edgemm demo` end to end on the shipped teacher and student and the full built-in data set."""
import re
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_compresses_verifies_and_reports(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgemm", "demo", "--out", tmp_path], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "model.onnx: verified" in out and "model.int8.onnx: verified" in out
    for row in ("teacher fp32 (torch eager)", "student fp32 (model.onnx", "student int8 (model.int8.onnx"):
        assert row in out
    # accuracy targets (not the timing ones: those are measured in bench/, never asserted in tests)
    assert re.search(r"fused beats each single modality by ≥ 10 points \(int8 student\)\s+\+[\d.]+ points\s+yes", out), out
    assert re.search(r"≥ 99% top-1 agreement int8 vs fp32 student \(fused inputs\)\s+[\d.]+% \(all patterns [\d.]+%\)\s+yes", out), out
    assert (tmp_path / "av_digits.edgemm" / "model.int8.onnx").is_file()
    assert (tmp_path / "sample.png").is_file() and (tmp_path / "sample.wav").is_file()
