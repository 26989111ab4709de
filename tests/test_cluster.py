"""Ray: the same folder and video jobs on a local cluster (ray.init(num_cpus=2))."""

from __future__ import annotations

import statistics
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.batch import stylize_folder
from pipeline.chunks import Chunk, plan_chunks
from pipeline.settings import ClusterSettings, StyleSettings, VideoSettings
from pipeline.temporal import WarpingError
from pipeline.video_io import Reader, probe
from pipeline.video_job import stylize_video
from tests.conftest import data_file

ray = pytest.importorskip("ray")

SMALL = dict(size=48, iterations=5, tolerance=0.0, precision="fp32", device="cpu")


@pytest.fixture(scope="module")
def local_cluster():
    ray.init(num_cpus=2, namespace="stylize", log_to_driver=False, include_dashboard=False)
    yield
    ray.shutdown()


def photo_tree(root, count: int):
    root.mkdir()
    sources = [data_file("contents/tubingen.jpg"), data_file("contents/golden_gate.jpg")]
    for i in range(count):
        Image.open(sources[i % 2]).save(root / f"p{i}.png")
    return root


def test_chunk_plan_splits_shots_and_overlaps():
    assert plan_chunks(100, [], 40, 8) == [Chunk(0, 0, 40), Chunk(1, 32, 72), Chunk(2, 64, 100)]
    # a cut starts a new shot: no overlap across it; a short tail joins its chunk
    assert plan_chunks(50, [20], 16, 4) == [
        Chunk(0, 0, 20),
        Chunk(1, 20, 36, 20),
        Chunk(2, 32, 50, 20),
    ]


def no_setup():
    return None


def sleep_for(state, seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def test_a_ray_pool_tells_its_progress_bar_while_items_are_at_work(local_cluster, monkeypatch):
    from pipeline.cluster import RayExecutor

    monkeypatch.setattr("pipeline.cluster.WAIT_SECONDS", 0.2)
    waits, done = [], []
    executor = RayExecutor(
        ClusterSettings(workers=2, cpus_per_worker=1), on_wait=lambda: waits.append(1)
    )
    results = executor.run(no_setup, sleep_for, [1.5, 1.5, 0.1], on_result=done.append)
    assert sorted(results) == [0.1, 1.5, 1.5] and sorted(done) == sorted(results)
    assert len(waits) >= 3  # heard between results, not only when one came


def time_out(state, item):
    raise TimeoutError(f"item {item}: the shared storage did not answer")


def test_a_worker_s_timeout_is_an_error_not_a_wait(local_cluster, monkeypatch):
    from pipeline.cluster import RayExecutor

    monkeypatch.setattr("pipeline.cluster.WAIT_SECONDS", 0.2)
    executor = RayExecutor(ClusterSettings(workers=1, cpus_per_worker=1), on_wait=lambda: None)
    with pytest.raises(TimeoutError, match="did not answer"):
        executor.run(no_setup, time_out, [1, 2])


def test_folder_over_ray_matches_a_local_run(tmp_path, starry_night, local_cluster):
    source = photo_tree(tmp_path / "in", 3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray workers run one thread each
    try:
        local = stylize_folder(
            source, tmp_path / "local", [starry_night], style_settings=StyleSettings(**SMALL)
        )
    finally:
        torch.set_num_threads(threads)
    remote = stylize_folder(
        source,
        tmp_path / "ray",
        [starry_night],
        style_settings=StyleSettings(**SMALL),
        cluster=ClusterSettings(workers=2, cpus_per_worker=1),
    )
    assert len(local.of("done")) == len(remote.of("done")) == 3
    local_files = sorted(
        p.relative_to(tmp_path / "local") for p in (tmp_path / "local").glob("*.png")
    )
    ray_files = sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").glob("*.png"))
    assert local_files == ray_files and len(local_files) == 3
    for name in local_files:
        assert np.array_equal(
            np.asarray(Image.open(tmp_path / "local" / name)),
            np.asarray(Image.open(tmp_path / "ray" / name)),
        )


@pytest.mark.slow
def test_killing_a_worker_loses_no_photo(tmp_path, starry_night, local_cluster):
    source = photo_tree(tmp_path / "in", 6)
    killed = []

    def kill_once(index, total, item, result):
        if result is not None and not killed:
            from pipeline.cluster import WORKER_NAME

            actor = ray.get_actor(WORKER_NAME.format(0))
            killed.append(ray.get(actor.pid.remote()))
            ray.kill(actor, no_restart=False)  # Ray restarts it and retries its task

    settings = StyleSettings(**{**SMALL, "size": 64, "iterations": 15})
    report = stylize_folder(
        source,
        tmp_path / "out",
        [starry_night],
        style_settings=settings,
        on_item=kill_once,
        cluster=ClusterSettings(workers=2, cpus_per_worker=1),
    )
    assert killed
    assert sorted(r.item.source.name for r in report.results) == [
        f"p{i}.png" for i in range(6)
    ]  # each once
    assert all(r.status in ("done", "skipped") for r in report.results)
    assert len(list((tmp_path / "out").glob("p*.png"))) == 6


def pair_errors(source, output, seconds: float) -> list[float]:
    """The warping error of each pair of an encoded output's frames."""
    info, out, error = probe(source), probe(output), WarpingError()
    with (
        Reader(info, (out.width, out.height), 0.0, seconds) as frames_in,
        Reader(out, (out.width, out.height)) as frames_out,
    ):
        for frame_in, frame_out in zip(frames_in.frames(), frames_out.frames()):
            error.add(frame_in, frame_out)
    return error.errors


@pytest.mark.slow
def test_video_in_two_overlapping_chunks(tmp_path, starry_night, local_cluster):
    """Two chunks of 40 frames sharing 4 (10 % extra work): the second chunk starts from the
    shot's first result carried along the flows, not cold, so the ramp across the overlap costs
    those frames no more than one unchunked run does (cold starts: 2.4x the inside error, 6 of 60).
    Against the same frame pairs, not the clip's mean: where a seam falls as a car drives in
    (car-detection, 6 of 60), those pairs cost 3x the mean in one run too."""
    source = data_file("videos/car-detection.mp4")
    seconds = 76 / 12.5  # 2 x 40 - 4 frames
    # the first frame's full budget: a cut one goes on converging in each chunk its own way
    style = StyleSettings(size=96, device="cpu")
    video = VideoSettings(duration=seconds, iterations_next=10)
    cluster = ClusterSettings(workers=2, cpus_per_worker=1, chunk_frames=40, overlap_frames=4)
    result = stylize_video(
        source,
        [starry_night],
        tmp_path / "chunks.mp4",
        style_settings=style,
        video=video,
        cluster=cluster,
    )
    info, out = probe(source), probe(tmp_path / "chunks.mp4")
    assert (
        out.frames == result.frames == 76
        and out.fps == Fraction(25, 2) == info.fps
        and out.audio == ("aac",)
    )
    assert any("2 chunks" in line for line in result.log)
    # the shot's first frame, the second chunk's head and every frame of the overlap twice
    assert result.computed == 76 + 4
    stylize_video(source, [starry_night], tmp_path / "one.mp4", style_settings=style, video=video)
    chunked, one_run = (
        pair_errors(source, tmp_path / "chunks.mp4", seconds),
        pair_errors(source, tmp_path / "one.mp4", seconds),
    )
    seam = slice(35, 40)  # pairs (35,36) .. (39,40): into, across and out of the overlap [36, 40)
    # plus a twentieth of the clip's mean: x264 codes a still frame as the same picture, and near
    # 1e-7 the encoder decides
    allowed = 1.5 * statistics.mean(one_run[seam]) + 0.05 * statistics.mean(one_run)
    assert statistics.mean(chunked[seam]) <= allowed, (
        chunked[seam],
        one_run[seam],
        statistics.mean(one_run),
    )
