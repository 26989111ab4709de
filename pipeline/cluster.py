"""Run work items on a Ray cluster (an engine the user may already have): the `--ray` executor.

The work items are the one-machine ones: a photo, or a chunk of frames, each written atomically
into a folder every worker can reach. Workers are Ray actors (plain actors, not Ray Data: Ray
Data would pull in pyarrow and pandas for what is a list of file paths), each running the job's
`setup` once (VGG and the style targets) and its `work` per item. An actor that dies is
restarted and its task retried; an item is idempotent (an existing output is skipped), so a
retry never writes it twice.

Ray is imported only here, and only when `--ray` is given. This module knows no job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from pipeline.errors import SettingsError, first_line
from pipeline.settings import ClusterSettings

WORKER_NAME = "stylize-worker-{}"
NAMESPACE = "stylize"


def connect(address: str):
    """Start or join a cluster. "local" starts one on this machine; "auto" joins $RAY_ADDRESS or
    the local one."""
    try:
        import ray
    except ImportError:
        raise SettingsError(
            "--ray needs the optional extra: pip install 'stylize[cluster]'"
        ) from None
    if ray.is_initialized():
        return ray
    try:
        if address == "local":
            ray.init(namespace=NAMESPACE, log_to_driver=False)
        else:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise SettingsError(
            f"--ray {address}: cannot reach a Ray cluster ({first_line(err)})"
        ) from None
    return ray


class Worker:
    """A Ray actor's body: the job's state, built once by `setup`, then `work` for each item.

    A failing `setup` (a broken style image) is raised by each item, so that the caller sees the
    job's own error rather than a dead actor.
    """

    def __init__(self, setup: Callable, work: Callable, threads: int):
        import torch

        torch.set_num_threads(threads)  # Ray sets OMP_NUM_THREADS=1 in workers otherwise
        self.work, self.error = work, None
        try:
            self.state = setup()
        except Exception as error:
            self.error = error

    def run(self, item):
        if self.error is not None:
            raise self.error
        return self.work(self.state, item)

    def pid(self) -> int:
        return os.getpid()


class RayExecutor:
    """Ray actors, one per `cpus_per_worker` CPUs (or `gpus_per_worker` GPUs) of the cluster, or
    `workers`; results in completion order; the actors are killed when the run ends, however it
    ends."""

    def __init__(self, settings: ClusterSettings, on_workers: Callable[[int], None] | None = None):
        self.settings, self.on_workers = settings, on_workers

    def run(self, setup, work, items: Iterable, on_result=None, on_start=None) -> list:
        from ray.util import ActorPool

        ray = connect(self.settings.address)
        cpus = max(1, self.settings.cpus_per_worker)
        # a worker given GPUs is shown only those (Ray sets CUDA_VISIBLE_DEVICES): --device auto
        # takes one; then the GPUs, not the CPUs, say how many workers fit
        gpus = self.settings.gpus_per_worker
        resource, share = ("GPU", gpus) if gpus > 0 else ("CPU", cpus)
        available = ray.cluster_resources().get(resource, 0)
        if gpus > available:  # an actor asking for GPUs no node has would wait for ever
            raise SettingsError(
                f"--ray-gpus-per-worker {gpus:g}: the cluster has {available:g} GPUs"
            )
        count = self.settings.workers or max(1, int(available // share))
        actor = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=-1, max_task_retries=-1)(
            Worker
        )
        workers = [
            actor.options(name=WORKER_NAME.format(i), lifetime=None).remote(setup, work, cpus)
            for i in range(count)
        ]
        results = []
        try:
            if self.on_workers:
                self.on_workers(count)
            for result in ActorPool(workers).map_unordered(
                lambda worker, item: worker.run.remote(item), list(items)
            ):
                results.append(result)
                if on_result:
                    on_result(result)
        finally:
            for worker in workers:
                ray.kill(worker, no_restart=True)
        return results
