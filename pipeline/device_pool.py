"""Several devices of this machine at once, without Ray (`--devices`): one worker process per
device, each running the job's `setup` once and then `work` for the items it is handed (a chunk of
frames, a photo), through the same executor interface as Ray's.

A worker sees only its own GPU (CUDA_VISIBLE_DEVICES, set before CUDA starts in it), so the job's
own `--device auto` picks it, as under Ray with `num_gpus`. A "cpu" worker sees no GPU. Each
worker's torch and OpenCV take its share of the cores.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from pipeline.errors import OutputError, SettingsError

# how often a pool's `on_wait` hears that its workers are still at work (Ray's too)
WAIT_SECONDS = 5.0


# the worker process's job state, built once by `setup` (or the error it raised)
_state: object = None
_error: BaseException | None = None


def resolve_devices(devices: Sequence[str]) -> list[str]:
    """ "all": every GPU this process sees; else the names as given (cpu, cuda, cuda:N), each GPU
    checked against those this process sees (NVML's count: no CUDA context is made here)."""
    import torch

    count = torch.cuda.device_count()
    if list(devices) == ["all"]:
        if count == 0:
            raise SettingsError("--devices all: no GPU is visible to this process")
        return [f"cuda:{index}" for index in range(count)]
    for device in devices:
        if device != "cpu" and gpu_index(device) >= count:
            raise SettingsError(
                f"--devices {','.join(devices)}: {device} is not there (this process sees"
                f" {count} GPU{'s' if count != 1 else ''})"
            )
    return list(devices)


def gpu_index(device: str) -> int:
    return int(device.partition(":")[2] or 0)


def visible_as(device: str, parent: str | None) -> str:
    """CUDA_VISIBLE_DEVICES for a worker on `device`: this process's GPU number N is the Nth entry
    of its own CUDA_VISIBLE_DEVICES, where one is set (an index, a UUID, a MIG instance)."""
    if device == "cpu":
        return ""
    if parent is None:
        return str(gpu_index(device))
    return [entry.strip() for entry in parent.split(",")][gpu_index(device)]


def cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def pin(visible: str, threads: int) -> None:
    """Show this process only the GPU `visible` ("" none); torch and OpenCV take `threads`."""
    os.environ["CUDA_VISIBLE_DEVICES"] = visible
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def _start(shown, setup: Callable, threads: int) -> None:
    global _state, _error
    # Ctrl-C reaches the whole process group: the parent ends the workers, which stay quiet
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pin(shown.get(), threads)  # the next device's CUDA_VISIBLE_DEVICES
    try:
        _state = setup()
    except Exception as error:  # raised by each item, so that the caller sees the job's error
        _error = error


def _run(work: Callable, item):
    if _error is not None:
        raise _error
    return work(_state, item)


class DevicePoolExecutor:
    """One worker process per device; results in completion order."""

    def __init__(
        self,
        devices: Sequence[str],
        on_workers: Callable[[int], None] | None = None,
        on_wait: Callable[[], None] | None = None,
        wait_seconds: float = WAIT_SECONDS,
    ):
        self.devices, self.on_workers = list(devices), on_workers
        self.on_wait, self.wait_seconds = on_wait, wait_seconds

    def run(self, setup, work, items: Iterable, on_result=None, on_start=None) -> list:
        """`on_start` is not called: the workers do not say when they take an item."""
        items = list(items)
        devices = resolve_devices(self.devices)[: max(1, len(items))]
        context = multiprocessing.get_context("spawn")  # a forked CUDA cannot start again
        shown, parent = context.Queue(), os.environ.get("CUDA_VISIBLE_DEVICES")
        for device in devices:
            shown.put(visible_as(device, parent))
        threads = max(1, cores() // len(devices))
        pool = ProcessPoolExecutor(
            len(devices), context, initializer=_start, initargs=(shown, setup, threads)
        )
        results, others = [], set(multiprocessing.active_children())
        try:
            if self.on_workers:
                self.on_workers(len(devices))
            for result in self.completed(pool, work, items):
                results.append(result)
                if on_result:
                    on_result(result)
        except BaseException:
            # Ctrl-C, SIGTERM, an item's error: the workers' items are idempotent, so a rerun
            # redoes what they were in the middle of; they must not outlive the run
            for worker in set(multiprocessing.active_children()) - others:
                worker.kill()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return results

    def completed(self, pool: ProcessPoolExecutor, work: Callable, items: list) -> Iterator:
        """The items' results as they complete; `on_wait` between them every `wait_seconds`
        (each finished future queues itself: no rescan of the pending ones, however many)."""
        finished: queue.SimpleQueue = queue.SimpleQueue()
        for item in items:
            pool.submit(_run, work, item).add_done_callback(finished.put)
        for _ in items:
            while True:
                try:
                    future = finished.get(timeout=self.wait_seconds)
                    break
                except queue.Empty:
                    if self.on_wait:
                        self.on_wait()
            yield worker_result(future)


def worker_result(future):
    """The item's result, or its error; a worker that died (killed for memory, a driver fault)
    is one line."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise OutputError(
            "a --devices worker process died or could not start (out of memory?); rerun the same"
            " command to resume"
        ) from None
