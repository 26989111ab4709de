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

import math
import os
from collections.abc import Callable, Iterable

from pipeline.errors import SettingsError, first_line
from pipeline.device_pool import WAIT_SECONDS
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

    def __init__(
        self,
        settings: ClusterSettings,
        on_workers: Callable[[int], None] | None = None,
        on_wait: Callable[[], None] | None = None,
    ):
        self.settings, self.on_workers, self.on_wait = settings, on_workers, on_wait

    def run(self, setup, work, items: Iterable, on_result=None, on_start=None) -> list:
        from ray.util import ActorPool

        ray = connect(self.settings.address)
        cpus, gpus = max(1, self.settings.cpus_per_worker), self.settings.gpus_per_worker
        count = worker_count(ray, self.settings)
        actor = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=-1, max_task_retries=-1)(
            Worker
        )
        workers = [
            actor.options(name=WORKER_NAME.format(i), lifetime=None).remote(setup, work, cpus)
            for i in range(count)
        ]
        results, pool = [], ActorPool(workers)
        try:
            if self.on_workers:
                self.on_workers(count)
            for item in items:
                pool.submit(lambda worker, item: worker.run.remote(item), item)
            while pool.has_next():
                try:
                    result = pool.get_next_unordered(timeout=WAIT_SECONDS)
                except TimeoutError as error:
                    if isinstance(error, ray.exceptions.RayError):
                        raise  # a worker's own TimeoutError (Ray's errors are of its class too)
                    if self.on_wait:  # still at work: a progress bar between items moves
                        self.on_wait()
                    continue
                results.append(result)
                if on_result:
                    on_result(result)
        finally:
            for worker in workers:
                ray.kill(worker, no_restart=True)
        return results


def worker_count(ray, settings: ClusterSettings) -> int:
    """--ray-workers, else as many workers as the cluster's CPUs hold or, with GPUs per worker, as
    its nodes' GPUs hold. A worker given GPUs is shown only those (Ray sets CUDA_VISIBLE_DEVICES),
    so --device auto takes one. Workers asking for GPUs no node has, or more than the cluster has,
    would wait for ever: refused."""
    cpus, gpus = max(1, settings.cpus_per_worker), settings.gpus_per_worker
    if gpus <= 0:
        return settings.workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus)
    nodes = [node["Resources"].get("GPU", 0) for node in ray.nodes() if node.get("Alive")]
    # workers a node holds, to Ray's 1e-4 resource steps (1.0 // 0.1 is 9.0)
    fit = sum(math.floor(round(gpu_count / gpus, 4)) for gpu_count in nodes)
    count = settings.workers or fit
    if fit == 0 or count > fit:
        raise SettingsError(
            f"--ray-gpus-per-worker {gpus:g}: {max(count, 1)} workers do not fit the cluster's"
            f" GPUs ({', '.join(f'{n:g}' for n in nodes) or 'none'} on its nodes)"
        )
    return count
