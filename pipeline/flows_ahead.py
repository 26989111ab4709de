"""Flows computed ahead: the flows a later frame needs depend only on the input frames, so worker
threads compute frame t+1's (to t, and to its long-term frames) while the engine optimizes frame
t. It pays where cores are spare, beside a GPU; where torch runs on every core a flow thread
stalls its barriers (2 cores: a later frame at 256 px took 6.25 s instead of 0.45 s;
docs/benchmarks.md, "Throughput"), so on a CPU it is off.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from pipeline.temporal import FlowEstimator, FlowPair, Frame

Key = tuple[int, int, bool]  # (id of frame, id of earlier frame, neighbours)


def spare_cores(device: torch.device) -> int:
    """Cores the engine leaves idle: beside a GPU, torch's threads but the one that drives it
    (a --devices worker's share). On a CPU none: torch's threads take every physical core, and a
    flow thread on one (or on its hyperthread sibling) stalls torch's barriers."""
    return max(0, torch.get_num_threads() - 1) if device.type == "cuda" else 0


class FlowsAhead:
    """A FlowEstimator's `pair`, answered from the pairs asked for ahead where there are some
    (each worker thread with an estimator of its own: DIS keeps buffers), else computed here by
    `estimator`. The same pairs as `estimator` gives: DIS is deterministic."""

    def __init__(self, estimator: FlowEstimator, workers: int):
        self.estimator = estimator
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="flows-ahead")
        self.local = threading.local()
        self.pending: dict[Key, Future] = {}

    def ask(self, frame: Frame, earlier: Sequence[tuple[Frame, bool]]) -> None:
        """Start the pairs of `frame` to each of `earlier` (frame, neighbours)."""
        for other, _ in [(frame, False), *earlier]:  # grey made once, here, not in two threads
            other.grey
        for other, neighbours in earlier:
            key = (id(frame), id(other), neighbours)
            if key not in self.pending:
                self.pending[key] = self.pool.submit(self._pair, frame, other, neighbours)

    def pair(self, frame: Frame, earlier: Frame, neighbours: bool = False) -> FlowPair:
        future = self.pending.pop((id(frame), id(earlier), neighbours), None)
        if future is None:
            return self.estimator.pair(frame, earlier, neighbours)
        return future.result()

    def forget(self, frame: Frame) -> None:
        """Pairs of `frame` nobody took (its flows came from the work folder, or a cut)."""
        for key in [key for key in self.pending if key[0] == id(frame)]:
            self.pending.pop(key).cancel()

    def close(self) -> None:
        for future in self.pending.values():
            future.cancel()
        self.pending.clear()
        self.pool.shutdown(wait=True)

    def _pair(self, frame: Frame, earlier: Frame, neighbours: bool) -> FlowPair:
        if not hasattr(self.local, "estimator"):
            self.local.estimator = self.estimator.twin()
        return self.local.estimator.pair(frame, earlier, neighbours)
