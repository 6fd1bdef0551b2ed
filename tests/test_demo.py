"""`edgemm demo` end to end on the shipped teacher and the full built-in data set."""
import re
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_and_fusion_pays(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgemm", "demo", "--out", tmp_path], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "model.onnx: verified" in out
    gain = float(re.search(r"fusion gain over the best single modality: ([+-][\d.]+) points", out).group(1))
    assert gain >= 10.0
    assert (tmp_path / "av_digits.edgemm" / "manifest.json").is_file()
    assert (tmp_path / "sample.png").is_file() and (tmp_path / "sample.wav").is_file()
