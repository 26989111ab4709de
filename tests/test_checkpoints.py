"""Checkpoints of a later frame's carried state: written only as often as their cost allows, and a
run killed between two of them resumes from the last one with the frames of an uninterrupted run."""

import numpy as np
import pytest
import torch

import pipeline.carried_state
from pipeline.carried_state import CarriedState
from pipeline.engine import Curvature
from pipeline.frames import FrameStylizer, stylize_frames
from pipeline.settings import VideoSettings
from pipeline.video_estimate import resumed_frames
from pipeline.work_folder import CHECKPOINT, Checkpoint, frame_path, read_checkpoint
from tests.conftest import PANNED_FRAMES, Killed, killed_after

FRAMES = PANNED_FRAMES
VIDEO = VideoSettings(iterations_next=2, evaluations_next=2)


def run(stylizer, frames, folder, kill_after: int | None = None):
    return stylize_frames(
        frames, FrameStylizer(stylizer, VIDEO), folder, VIDEO, len(frames), killed_after(kill_after)
    )


def frames_in(folder) -> list[bytes]:
    return [frame_path(folder, index).read_bytes() for index in range(FRAMES)]


def test_a_run_killed_between_checkpoints_resumes_from_the_last_with_the_same_frames(
    tmp_path, monkeypatch, tiny_stylizer, panning_frames
):
    # the first frame's checkpoint costs nothing measured yet; none after it is ever due
    monkeypatch.setattr(pipeline.carried_state, "STATE_WRITE_SHARE", 1e-12)
    run(tiny_stylizer, panning_frames, tmp_path / "whole")
    assert read_checkpoint(tmp_path / "whole").frame == FRAMES - 1  # the end of a run is one
    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        run(tiny_stylizer, panning_frames, killed, kill_after=3)
    assert read_checkpoint(killed) == Checkpoint(0, ("curvature-000000.pt",))
    assert [p.name for p in killed.glob("curvature-*")] == ["curvature-000000.pt"]
    assert frame_path(killed, 3).is_file()
    done = run(tiny_stylizer, panning_frames, killed)
    assert done.computed == FRAMES - 1  # frames 1-3 made again, 4 and 5 for the first time
    assert frames_in(killed) == frames_in(tmp_path / "whole")
    assert [p.name for p in killed.glob("curvature-*")] == [f"curvature-{FRAMES - 1:06d}.pt"]


def test_a_finished_run_made_again_keeps_every_frame(
    tmp_path, monkeypatch, tiny_stylizer, panning_frames
):
    monkeypatch.setattr(pipeline.carried_state, "STATE_WRITE_SHARE", 1e-12)
    run(tiny_stylizer, panning_frames, tmp_path)
    assert run(tiny_stylizer, panning_frames, tmp_path).computed == 0


def test_a_folder_without_checkpoints_keeps_its_frames(tmp_path, tiny_stylizer, panning_frames):
    """A work folder from before checkpoints (every frame's state written beside it): resumed at
    its first missing frame, as it was made for."""
    run(tiny_stylizer, panning_frames, tmp_path / "whole")
    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        run(tiny_stylizer, panning_frames, killed, kill_after=3)
    (killed / CHECKPOINT).unlink()
    assert run(tiny_stylizer, panning_frames, killed).computed == 2
    assert frames_in(killed) == frames_in(tmp_path / "whole")


def test_the_checkpoint_s_frame_deleted_makes_every_frame_again(
    tmp_path, tiny_stylizer, panning_frames
):
    run(tiny_stylizer, panning_frames, tmp_path / "whole")
    folder = tmp_path / "edited"
    run(tiny_stylizer, panning_frames, folder)
    frame_path(folder, FRAMES - 1).unlink()  # frame 4's state went with the checkpoint at 5
    assert run(tiny_stylizer, panning_frames, folder).computed == FRAMES
    assert frames_in(folder) == frames_in(tmp_path / "whole")


def test_checkpoints_are_spaced_by_what_writing_them_costs(tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(pipeline.carried_state, "STATE_WRITE_SHARE", 0.02)
    state = CarriedState(clock=lambda: clock[0])
    state.begin(tmp_path)
    curvature = Curvature(1.0, (4, 4), [torch.zeros(48)], [torch.zeros(48)])
    marked = []
    for index in range(200):
        clock[0] += 10.0  # a 10-s frame
        state.keep_curvature(index, curvature)
        state.commit(index, lambda: None)
        if state.kept_until == index:
            marked.append(index)
        state.write_seconds = 1.0  # as if each checkpoint took 1 s to write
    # the first at once, then one each 50 s (1 s of writing per 2 % of the time)
    assert marked[:4] == [0, 5, 10, 15] and len(marked) == 40
    state.end()
    assert read_checkpoint(tmp_path).frame == 199
    assert [p.name for p in tmp_path.glob("curvature-*")] == ["curvature-000199.pt"]


def test_a_kill_between_a_frame_and_its_checkpoint_resumes_from_the_one_before(
    tmp_path, monkeypatch, tiny_stylizer, panning_frames
):
    run(tiny_stylizer, panning_frames, tmp_path / "whole")
    real = pipeline.carried_state.write_checkpoint

    def killed_at_frame_3(folder, checkpoint):
        if checkpoint.frame == 3:
            raise Killed
        real(folder, checkpoint)

    monkeypatch.setattr(pipeline.carried_state, "write_checkpoint", killed_at_frame_3)
    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        run(tiny_stylizer, panning_frames, killed)
    assert frame_path(killed, 3).is_file() and read_checkpoint(killed).frame == 2
    monkeypatch.setattr(pipeline.carried_state, "write_checkpoint", real)
    assert run(tiny_stylizer, panning_frames, killed).computed == FRAMES - 3
    assert frames_in(killed) == frames_in(tmp_path / "whole")


def test_a_damaged_state_file_makes_every_frame_again(tmp_path, tiny_stylizer, panning_frames):
    run(tiny_stylizer, panning_frames, tmp_path / "whole")
    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        run(tiny_stylizer, panning_frames, killed, kill_after=3)
    (killed / read_checkpoint(killed).state[0]).write_bytes(b"")  # as a power cut may leave it
    assert run(tiny_stylizer, panning_frames, killed).computed == FRAMES
    assert frames_in(killed) == frames_in(tmp_path / "whole")


def test_a_dry_run_counts_as_done_the_frames_a_rerun_keeps(tmp_path):
    """Those up to the checkpoint, and none where a file the checkpoint vouches for is missing (the
    rerun then makes every frame again)."""
    from pipeline.work_folder import write_checkpoint, write_frame

    for index in range(6):
        write_frame(frame_path(tmp_path, index), np.zeros((4, 4, 3), np.uint8))
    assert resumed_frames(tmp_path, 10) == 6  # a folder from before checkpoints: all kept
    write_checkpoint(tmp_path, Checkpoint(3))
    assert resumed_frames(tmp_path, 10) == 4
    assert resumed_frames(tmp_path / "none", 10) == 0
    write_checkpoint(tmp_path, Checkpoint(3, ("curvature-000003.pt",)))
    assert resumed_frames(tmp_path, 10) == 0  # its state file is gone
    write_checkpoint(tmp_path, Checkpoint(3))
    frame_path(tmp_path, 1).unlink()
    assert resumed_frames(tmp_path, 10) == 0
    (tmp_path / "checkpoint.json").unlink()
    frame_path(tmp_path, 0).unlink()
    assert resumed_frames(tmp_path, 10) == 0  # a new run's folder: its start writes a checkpoint
