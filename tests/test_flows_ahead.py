"""Flows computed ahead by worker threads (where cores are spare): the same frames, bit for bit,
and no flow work for frames an earlier run made."""

import threading

import pytest
import torch

import pipeline.temporal
from pipeline.flows_ahead import spare_cores
from pipeline.frames import FrameStylizer, stylize_frames
from pipeline.settings import VideoSettings
from pipeline.work_folder import frame_path
from tests.conftest import PANNED_FRAMES, Killed, killed_after

FRAMES = PANNED_FRAMES


def run(stylizer, frames, folder, workers: int, on_frame=None) -> list[bytes]:
    video = VideoSettings(iterations_next=2, evaluations_next=2)
    frame_stylizer = FrameStylizer(stylizer, video)
    frame_stylizer.ahead_workers = workers
    stylize_frames(frames, frame_stylizer, folder, video, len(frames), on_frame)
    return [frame_path(folder, index).read_bytes() for index in range(len(frames))]


def counting_pairs(monkeypatch) -> tuple[list[int], list[int]]:
    """The pairs computed, counted: by the worker threads, and by the main thread."""
    threads, main = [], []
    real = pipeline.temporal.FlowEstimator.pair

    def counted(self, *args, **kwargs):
        here = threading.current_thread() is threading.main_thread()
        (main if here else threads).append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pipeline.temporal.FlowEstimator, "pair", counted)
    return threads, main


def test_flows_from_the_threads_give_the_same_frames(
    tmp_path, monkeypatch, tiny_stylizer, panning_frames
):
    here = run(tiny_stylizer, panning_frames, tmp_path / "here", workers=0)
    threads, main = counting_pairs(monkeypatch)
    ahead = run(tiny_stylizer, panning_frames, tmp_path / "ahead", workers=2)
    assert ahead == here
    # frames 1-5, each to t-1 and the long-term frames t-2 and t-4 where there are some, all
    # computed ahead and taken from there
    assert (len(threads), len(main)) == (5 + 4 + 2, 0)
    assert not [t for t in threading.enumerate() if t.name.startswith("flows-ahead")]


def test_a_resumed_run_computes_no_flows_for_the_frames_it_keeps(
    tmp_path, monkeypatch, tiny_stylizer, panning_frames
):
    finished = run(tiny_stylizer, panning_frames, tmp_path / "whole", workers=0)
    folder = tmp_path / "killed"
    with pytest.raises(Killed):
        run(tiny_stylizer, panning_frames, folder, workers=0, on_frame=killed_after(FRAMES - 2))
    threads, main = counting_pairs(monkeypatch)
    assert run(tiny_stylizer, panning_frames, folder, workers=2) == finished
    # the last frame's three pairs (to t-1, t-2 and t-4) only
    assert (len(threads), len(main)) == (3, 0)


def test_threads_beside_a_gpu_only():
    threads = torch.get_num_threads()
    torch.set_num_threads(4)  # a --devices worker's share of the cores, say
    try:
        assert spare_cores(torch.device("cpu")) == 0
        assert spare_cores(torch.device("cuda")) == 3
    finally:
        torch.set_num_threads(threads)
