"""Frames written behind: a thread encodes and writes each frame's PNG (and names its checkpoint)
while the engine goes on to the next frame. Beside a GPU a 1080p frame's PNG takes about 80 ms of
a frame that should take 200; on a CPU torch's threads take every core and the write stays in line
(`flows_ahead.spare_cores`). One thread, in order: a checkpoint is named only after its frame and
every frame before it are on disk.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

# writes waiting at most: the engine waits rather than hold more frames in memory
MOST_PENDING = 4


class WriteBehind:
    """Writes run in order on one thread; the first that failed raises in the caller's thread at
    the next `submit` or at `close`, and none after it runs (no checkpoint past a lost frame)."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="write-behind")
        self.pending: deque[Future] = deque()
        self.failed = False

    def submit(self, write: Callable[[], None]) -> None:
        self._settle(MOST_PENDING - 1)
        self.pending.append(self.pool.submit(self._run, write))

    def _run(self, write: Callable[[], None]) -> None:
        if self.failed:
            return
        try:
            write()
        except BaseException:
            self.failed = True
            raise

    def close(self) -> None:
        """Every write done (or the first error raised); the thread ends."""
        try:
            self._settle(0)
        finally:
            self.pool.shutdown(wait=True)

    def abandon(self) -> None:
        """The run ends on another error, which stands: the write under way is finished, those not
        begun are dropped (in order, so every checkpoint named is whole), none raises."""
        self.failed = True
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _settle(self, most: int) -> None:
        """Wait for the oldest writes until at most `most` are pending; raise a failed one's
        error. Done writes are collected as they go."""
        while self.pending and (len(self.pending) > most or self.pending[0].done()):
            self.pending.popleft().result()
