"""Flow control: a one-item mailbox where the newest item wins. A stale item is dropped and counted,
never queued, so latency cannot grow when inference is slower than the camera."""
from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """`put` replaces any item not yet taken (a drop); `take` waits for the next item."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._cond = threading.Condition()
        self.drops = 0
        self.max_depth = 0
        self._closed = False

    def put(self, item: T, wait: bool = False) -> None:
        """Offer an item; with `wait` (offline playback, where every frame counts), first wait for the
        previous item to be taken instead of dropping it."""
        with self._cond:
            while wait and self._item is not None and not self._closed:
                self._cond.wait(0.1)
            if self._item is not None:
                self.drops += 1
            self._item = item
            self.max_depth = max(self.max_depth, self.depth)
            self._cond.notify_all()

    @property
    def depth(self) -> int:
        """Items waiting (0 or 1 by construction)."""
        return int(self._item is not None)

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item, or None after `timeout` seconds or once closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
