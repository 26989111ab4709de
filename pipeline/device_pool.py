"""Several devices of this machine at once, without Ray (`--devices`): one worker process per
device, each running the job's `setup` once and then `work` for the items it is handed (a chunk of
frames, a photo), through the same executor interface as Ray's.

A worker sees only its own GPU (CUDA_VISIBLE_DEVICES, set before CUDA starts in it), so the job's
own `--device auto` picks it, as under Ray with `num_gpus`. A "cpu" worker sees no GPU and takes
its share of the cores.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

from pipeline.errors import SettingsError

# the worker process's job state, built once by `setup` (or the error it raised)
_state: object = None
_error: BaseException | None = None


def resolve_devices(devices: Sequence[str]) -> list[str]:
    """ "all": every GPU this process sees; else the names as given (cpu, cuda, cuda:N)."""
    if list(devices) != ["all"]:
        return list(devices)
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        raise SettingsError("--devices all: no GPU is visible to this process")
    return [f"cuda:{index}" for index in range(count)]


def pin(device: str, workers: int) -> None:
    """Show this process only `device`; a CPU worker takes its share of the cores."""
    index = device.partition(":")[2] or "0"
    os.environ["CUDA_VISIBLE_DEVICES"] = "" if device == "cpu" else index
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def _start(devices, setup: Callable, workers: int) -> None:
    global _state, _error
    pin(devices.get(), workers)
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

    def __init__(self, devices: Sequence[str], on_workers: Callable[[int], None] | None = None):
        self.devices, self.on_workers = list(devices), on_workers

    def run(self, setup, work, items: Iterable, on_result=None, on_start=None) -> list:
        devices = resolve_devices(self.devices)
        context = multiprocessing.get_context("spawn")  # a forked CUDA cannot start again
        queue = context.Queue()
        for device in devices:
            queue.put(device)
        pool = ProcessPoolExecutor(
            len(devices), context, initializer=_start, initargs=(queue, setup, len(devices))
        )
        results, others = [], set(multiprocessing.active_children())
        try:
            if self.on_workers:
                self.on_workers(len(devices))
            futures = [pool.submit(_run, work, item) for item in items]
            for future in as_completed(futures):
                results.append(future.result())
                if on_result:
                    on_result(results[-1])
        except BaseException:
            # Ctrl-C, SIGTERM, an item's error: the workers' items are idempotent, so a rerun
            # redoes what they were in the middle of; they must not outlive the run
            for worker in set(multiprocessing.active_children()) - others:
                worker.kill()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return results
