"""--devices: one worker process per device of this machine, without Ray. The GPU workers' pinning
is checked on what each process is shown; the jobs run here on "cpu" workers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from fractions import Fraction
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.batch import stylize_folder
from pipeline.device_pool import DevicePoolExecutor, cores
from pipeline.errors import SettingsError
from pipeline.executor import check_worker_device
from pipeline.settings import ClusterSettings, StyleSettings, VideoSettings
from pipeline.video_io import probe
from pipeline.video_job import stylize_video
from tests.conftest import data_file, folder_command, run_ffmpeg, stylize_command

SMALL = dict(size=48, iterations=5, tolerance=0.0, precision="fp32", device="cpu")


def shown_devices(prefix: str) -> str:
    """A job's setup, run once per worker: what the worker is shown."""
    return f"{prefix}{os.environ['CUDA_VISIBLE_DEVICES']!r}"


def where_it_ran(state: str, item: int, seconds: float = 0.0) -> tuple[int, str, int, int]:
    time.sleep(seconds)  # an item long enough for the other worker to start and take some
    return item, state, os.getpid(), torch.get_num_threads()


def broken_setup() -> None:
    raise SettingsError("style.jpg: not an image")


def test_each_worker_is_shown_only_its_own_gpu(monkeypatch):
    """No GPU is needed to see it: CUDA_VISIBLE_DEVICES is set before CUDA starts in the worker,
    so that the job's --device auto takes that GPU. This process's GPU N is the Nth of the GPUs
    it is shown itself."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    results = DevicePoolExecutor(["cuda:0", "cuda:1"]).run(
        partial(shown_devices, "sees "), partial(where_it_ran, seconds=1.0), range(6)
    )
    assert sorted(item for item, *_ in results) == list(range(6))
    shown = {state: pid for _, state, pid, _ in results}
    assert set(shown) == {"sees '3'", "sees '5'"}
    assert len(set(shown.values())) == 2  # two processes


def test_cpu_workers_see_no_gpu_and_share_the_cores():
    workers = DevicePoolExecutor(["cpu", "cpu"])
    results = workers.run(partial(shown_devices, ""), partial(where_it_ran, seconds=1.0), range(4))
    assert {state for _, state, _, _ in results} == {"''"}
    assert {threads for *_, threads in results} == {max(1, cores() // 2)}


def test_the_caller_hears_while_the_workers_are_at_work():
    waits = []
    DevicePoolExecutor(["cpu"], on_wait=lambda: waits.append(1), wait_seconds=0.2).run(
        partial(shown_devices, ""), partial(where_it_ran, seconds=1.0), range(2)
    )
    assert len(waits) >= 3


def test_a_failing_setup_is_the_jobs_own_error():
    with pytest.raises(SettingsError, match="not an image"):
        DevicePoolExecutor(["cpu"]).run(broken_setup, where_it_ran, range(2))


def test_devices_that_are_not_there_or_a_pinned_device_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(SettingsError, match="no GPU is visible"):
        check_worker_device(ClusterSettings(devices=("all",)), StyleSettings())
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(SettingsError, match="cuda:5 is not there"):
        check_worker_device(ClusterSettings(devices=("cuda:0", "cuda:5")), StyleSettings())
    cluster = ClusterSettings(devices=("cuda:0", "cuda:1"))
    with pytest.raises(SettingsError, match="leave --device at auto"):
        check_worker_device(cluster, StyleSettings(device="cuda:1"))
    check_worker_device(cluster, StyleSettings(device="cuda"))
    # one worker on a GPU and one on the CPU: only auto suits both
    mixed = ClusterSettings(devices=("cpu", "cuda:0"))
    for device in ("cpu", "cuda"):
        with pytest.raises(SettingsError, match="leave --device at auto"):
            check_worker_device(mixed, StyleSettings(device=device))
    check_worker_device(mixed, StyleSettings(device="auto"))
    with pytest.raises(SettingsError, match="--devices"):
        ClusterSettings(devices=("gpu0",))


def test_a_folder_over_two_cpu_workers_matches_one_process(tmp_path, starry_night):
    source = tmp_path / "in"
    source.mkdir()
    for index, name in enumerate(["tubingen.jpg", "golden_gate.jpg", "tubingen.jpg"]):
        Image.open(data_file(f"contents/{name}")).save(source / f"p{index}.png")
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cores() // 2))  # each worker's share
    try:
        here = stylize_folder(
            source, tmp_path / "here", [starry_night], style_settings=StyleSettings(**SMALL)
        )
    finally:
        torch.set_num_threads(threads)
    workers = []
    pooled = stylize_folder(
        source,
        tmp_path / "pool",
        [starry_night],
        style_settings=StyleSettings(**SMALL),
        cluster=ClusterSettings(devices=("cpu", "cpu")),
        on_workers=workers.append,
    )
    assert workers == [2]
    assert len(here.of("done")) == len(pooled.of("done")) == 3
    for index in range(3):
        name = f"p{index}.png"
        assert np.array_equal(
            np.asarray(Image.open(tmp_path / "here" / name)),
            np.asarray(Image.open(tmp_path / "pool" / name)),
        )


def test_a_video_in_chunks_over_two_cpu_workers(tmp_path, starry_night):
    """Two chunks of a lavfi clip, each on its own worker: every frame once in the output, the
    input's rate kept."""
    clip = tmp_path / "clip.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=2", str(clip))
    heard = []
    result = stylize_video(
        clip,
        [starry_night],
        tmp_path / "out.mp4",
        style_settings=StyleSettings(**{**SMALL, "size": 64}),
        video=VideoSettings(iterations_next=2, evaluations_next=2),
        cluster=ClusterSettings(devices=("cpu", "cpu"), chunk_frames=12, overlap_frames=2),
        on_chunk=lambda *progress: heard.append(progress),
    )
    out = probe(tmp_path / "out.mp4")
    assert out.frames == result.frames == 20 and out.fps == Fraction(10)
    assert any("2 chunks" in line for line in result.log)
    # the frames the workers wrote, counted as they go: 12 + 10 (2 overlapping) at the end
    written = [frames for _, _, _, frames, _ in heard]
    assert written == sorted(written) and heard[-1] == (2, 2, 2, 22, 22)


def test_the_command_refuses_ray_and_devices_together(tmp_path, starry_night):
    done = subprocess.run(
        stylize_command(
            "video", tmp_path / "in.mp4", "-s", starry_night, "-o", tmp_path / "out.mp4",
            "--devices", "cpu,cpu", "--ray", "local",
        ),
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--devices runs without Ray: --ray does not apply" in done.stderr
    assert "Traceback" not in done.stderr


def spawned_workers(parent: int) -> set[int]:
    """The worker processes `parent` started (multiprocessing's spawn children)."""
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
            command = (status.parent / "cmdline").read_bytes()
            if int(fields["PPid"]) == parent and b"spawn_main" in command:
                found.add(int(status.parent.name))
    return found


def alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return "\tZ" not in Path(f"/proc/{pid}/status").read_text().split("State:")[1][:4]
    return False


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc")
def test_sigterm_ends_the_workers_with_the_run(tmp_path, starry_night):
    output, command = folder_command(
        tmp_path, starry_night, 4, "--size", "64", "--iterations", "300", "--devices", "cpu,cpu"
    )
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, workers = time.monotonic() + 90, set()
    while len(workers) < 2 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.2)
        workers = spawned_workers(run.pid)
    assert len(workers) == 2, run.communicate()
    time.sleep(2)  # at work on their first photos
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=30)
    assert run.returncode == 143, stderr
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)


class FakeRay:
    """What worker_count asks of Ray: the live nodes' GPUs, the cluster's CPUs."""

    def __init__(self, gpus: list[float]):
        self.gpus = gpus

    def nodes(self) -> list[dict]:
        return [{"Alive": True, "Resources": {"GPU": count}} for count in self.gpus]

    def cluster_resources(self) -> dict:
        return {"CPU": 8.0, "GPU": sum(self.gpus)}


def test_ray_workers_with_gpus_fit_the_nodes_gpus():
    from pipeline.cluster import worker_count

    assert worker_count(FakeRay([]), ClusterSettings(cpus_per_worker=2)) == 4
    assert worker_count(FakeRay([1, 1]), ClusterSettings(gpus_per_worker=1)) == 2
    assert worker_count(FakeRay([4]), ClusterSettings(gpus_per_worker=0.5)) == 8
    assert worker_count(FakeRay([1]), ClusterSettings(gpus_per_worker=0.1)) == 10
    refused = {
        "no node has 2": (FakeRay([1, 1]), ClusterSettings(gpus_per_worker=2)),
        "no GPU": (FakeRay([]), ClusterSettings(gpus_per_worker=1)),
        "more workers than GPUs": (FakeRay([1, 1]), ClusterSettings(workers=3, gpus_per_worker=1)),
        "one node holds one": (FakeRay([3, 1]), ClusterSettings(workers=2, gpus_per_worker=2)),
    }
    for case, (ray, settings) in refused.items():
        with pytest.raises(SettingsError, match="--ray-gpus-per-worker"):
            worker_count(ray, settings)


def test_a_devices_dry_run_shares_the_chunks_out():
    """100 frames in chunks of 40 overlapping by 8: (0, 40), (32, 72), (64, 100). 16 frames are
    made twice and the two chunks inside the shot start with a first frame's budget."""
    from pipeline.video_estimate import VideoEstimate, spread_over

    guess = VideoEstimate(
        frames=100, cuts=[], resumed=0, size=(256, 144), first_frame_seconds=20.0,
        later_frame_seconds=0.5, seconds=20.0 + 99 * 0.5, work_bytes=0, work_dir=Path("w"),
    )  # fmt: skip
    cluster = ClusterSettings(devices=("cuda:0", "cuda:1"), chunk_frames=40, overlap_frames=8)
    work = 69.5 + 16 * 0.5 + 2 * 20.0
    assert spread_over(guess, 2, cluster) == pytest.approx(work / 2)
    assert spread_over(guess, 8, cluster) == pytest.approx(work / 3)  # three chunks to share
