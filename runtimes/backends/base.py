"""The one small interface every inference backend implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class Backend(ABC):
    """Runs one model file: named float32 inputs in, named outputs out.

    Subclasses load the model in `__init__` and set `_inputs` / `_outputs` (names in graph order)."""

    name: str = ""
    _inputs: tuple[str, ...] = ()
    _outputs: tuple[str, ...] = ()

    def __init__(self, path: Path, threads: int | None = None, device: str | None = None) -> None:
        self.path = Path(path)
        self.threads = threads
        self.device = device

    @property
    def input_names(self) -> tuple[str, ...]:
        """The model's input names, in graph order."""
        return self._inputs

    @property
    def output_names(self) -> tuple[str, ...]:
        """The model's output names, in graph order."""
        return self._outputs

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One inference call on a batch; returns every output by name."""
