"""Run folder and video jobs on a Ray cluster (an engine the user may already have).

The work items are the one-machine ones: a photo, or a chunk of frames, each written atomically
into a folder every worker can reach. Workers are Ray actors (plain actors, not Ray Data: Ray
Data would pull in pyarrow and pandas for what is a list of file paths), each loading VGG and
the style targets once. An actor that dies is restarted and its task retried; an item is
idempotent (an existing output is skipped), so a retry never writes it twice.

Ray is imported only here, and only when `--ray` is given.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from pipeline.errors import SettingsError
from pipeline.settings import ClusterSettings, FolderSettings, StyleSettings

WORKER_NAME = "stylize-worker-{}"
NAMESPACE = "stylize"


def connect(address: str):
    """Start or join a cluster. "local" starts one on this machine; "auto" joins $RAY_ADDRESS or the local one."""
    try:
        import ray
    except ImportError:
        raise SettingsError("--ray needs the optional extra: pip install 'stylize[cluster]'") from None
    if ray.is_initialized():
        return ray
    try:
        if address == "local":
            ray.init(namespace=NAMESPACE, log_to_driver=False)
        else:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise SettingsError(f"--ray {address}: cannot reach a Ray cluster ({str(err).splitlines()[0][:160]})") from None
    return ray


def _worker_class(ray, cpus: int):
    @ray.remote(num_cpus=cpus, max_restarts=-1, max_task_retries=-1)
    class Worker:
        """Holds VGG and the style targets; stylizes photos or chunks of frames."""

        def __init__(self, styles: list[str], style: StyleSettings, weights: str | None):
            import torch

            torch.set_num_threads(cpus)  # Ray sets OMP_NUM_THREADS=1 in workers otherwise
            from pipeline.weights import load_weights

            self.styles, self.style = [Path(s) for s in styles], style
            self.weights = load_weights(weights)  # from the installed package, not Ray's working_dir
            self._batches: dict = {}
            self._stylizers: dict = {}

        def photo(self, item, folder: FolderSettings):
            from pipeline.batch import Batch

            key = (item.style, folder)
            if key not in self._batches:
                self._batches[key] = Batch([item.style], self.style, folder, self.weights)
            return self._batches[key].run_item(item)

        def chunk(self, chunk, job):
            from pipeline.video_job import job_stylizer, stylize_chunk

            if job.work_dir not in self._stylizers:  # the work folder is keyed by every setting of the job
                self._stylizers[job.work_dir] = job_stylizer(job, self.weights)
            return stylize_chunk(job, chunk, self._stylizers[job.work_dir])

        def pid(self) -> int:
            return os.getpid()

    return Worker


def start_workers(settings: ClusterSettings, styles: list[Path], style: StyleSettings, weights: str | None):
    ray = connect(settings.address)
    cpus = max(1, settings.cpus_per_worker)
    count = settings.workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus)
    worker = _worker_class(ray, cpus)
    workers = [worker.options(name=WORKER_NAME.format(i), lifetime=None).remote([str(s) for s in styles], style, weights)
               for i in range(count)]
    return ray, workers


def run_on_pool(workers, method: str, items: Iterable, extra: tuple = (),
                on_result: Callable[[object], None] | None = None) -> list:
    """Each item to the next free worker; results (which name their item) in completion order."""
    from ray.util import ActorPool

    pool = ActorPool(workers)
    results = []
    for result in pool.map_unordered(lambda actor, value: getattr(actor, method).remote(value, *extra), list(items)):
        results.append(result)
        if on_result:
            on_result(result)
    return results


def shutdown_workers(ray, workers) -> None:
    for worker in workers:
        ray.kill(worker, no_restart=True)
