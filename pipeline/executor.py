"""Where work items run: in this process, in a worker process per device (`--devices`), or on
Ray workers (`--ray`).

A job hands an executor two functions and its items. `setup()` builds what a worker keeps for
all its items (VGG and the style targets), once per worker; `work(state, item)` processes one
item and returns its result, which names its item. Both are module-level functions (or
`functools.partial`s of them) and items are plain values, so that they pickle for Ray.

This module knows no job (folders, videos) and imports Ray nowhere: `pipeline.cluster` does,
and only when a cluster is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from pipeline.errors import SettingsError
from pipeline.settings import ClusterSettings, StyleSettings

State = TypeVar("State")
Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class Executor(Protocol):
    def run(
        self,
        setup: Callable[[], State],
        work: Callable[[State, Item], Outcome],
        items: Iterable[Item],
        on_result: Callable[[Outcome], None] | None = None,
        on_start: Callable[[int, Item], None] | None = None,
    ) -> list[Outcome]:
        """Results in completion order (each also to `on_result` as it arrives). `on_start(index,
        item)` where the executor sees an item start (in this process; worker processes and Ray
        workers do not say)."""
        ...


class LocalExecutor:
    """One worker: this process, the items in order."""

    def run(self, setup, work, items, on_result=None, on_start=None) -> list:
        items = list(items)
        state = setup()
        results = []
        for index, item in enumerate(items):
            if on_start:
                on_start(index, item)
            result = work(state, item)
            results.append(result)
            if on_result:
                on_result(result)
        return results


def make_executor(
    cluster: ClusterSettings | None,
    on_workers: Callable[[int], None] | None = None,
    on_wait: Callable[[], None] | None = None,
) -> Executor:
    """This process without `cluster`; else a worker process per device of `cluster.devices`, or
    Ray workers; `on_workers` told how many started, `on_wait` called every few seconds while
    the workers are at work (for a progress bar between items)."""
    if cluster is None:
        return LocalExecutor()
    if cluster.devices:
        from pipeline.device_pool import DevicePoolExecutor

        return DevicePoolExecutor(cluster.devices, on_workers, on_wait)
    from pipeline.cluster import RayExecutor

    return RayExecutor(cluster, on_workers, on_wait)


def check_worker_device(cluster: ClusterSettings | None, settings: StyleSettings) -> None:
    """Before any work: with --devices, each worker process runs on its own device, which must be
    there, and the job's --device must leave the choice to it (auto, or the one kind all the
    workers share)."""
    if cluster is None or not cluster.devices:
        return
    from pipeline.device_pool import resolve_devices

    kinds = {device.partition(":")[0] for device in resolve_devices(cluster.devices)}
    allowed = {"auto", *kinds} if len(kinds) == 1 else {"auto"}
    if settings.device not in allowed:
        raise SettingsError(
            f"--device {settings.device}: with --devices {','.join(cluster.devices)} each worker"
            " runs on its own device; leave --device at auto"
        )
