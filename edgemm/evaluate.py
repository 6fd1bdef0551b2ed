"""Accuracy per modality pattern and batch-1 latency, for torch models and loaded bundles alike."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

PATTERNS = {"fused": (1.0, 1.0), "image_only": (1.0, 0.0), "audio_only": (0.0, 1.0)}


def presence(pattern: str, n: int) -> np.ndarray:
    """(n, 2) presence flags for a modality pattern; the absent tensor is fed as zeros."""
    return np.tile(np.asarray(PATTERNS[pattern], np.float32), (n, 1))


def logits_by_pattern(run: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], image: np.ndarray, audio: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
    """Logits for every pattern; `run(image, audio, present)` is a batch call returning logits."""
    out = {}
    for name in PATTERNS:
        chunks = []
        for s in range(0, len(image), batch):
            p = presence(name, len(image[s : s + batch]))
            chunks.append(run(image[s : s + batch] * p[:, :1, None, None], audio[s : s + batch] * p[:, 1:, None, None], p))
        out[name] = np.concatenate(chunks)
    return out


def accuracies(logits: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    return {name: float((l.argmax(1) == labels).mean()) for name, l in logits.items()}


def torch_runner(model) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """A batch call for a torch model (no grad, eval mode)."""
    import torch

    model.eval()

    def run(image, audio, present):
        with torch.no_grad():
            return model(torch.from_numpy(image), torch.from_numpy(audio), torch.from_numpy(present))[0].numpy()

    return run


def bundle_runner(model) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """A batch call for a loaded bundle (`edgemm.runtimes.BundleModel`)."""
    return lambda image, audio, present: model.infer(image, audio, present)["logits"]


def median_latency_ms(fn: Callable[[], object], warmup: int = 10, runs: int = 100) -> float:
    """Median wall time of `fn()` in milliseconds after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)
