"""Frames written behind by a thread (beside a GPU; forced on here): the same frames and checkpoints
as written in line, in order, a bounded queue, and a failed write is the run's error."""

import threading
import time

import pytest

import pipeline.frames
from pipeline.errors import OutputError
from pipeline.frames import FrameStylizer, stylize_frames
from pipeline.settings import VideoSettings
from pipeline.work_folder import frame_path, read_checkpoint
from pipeline.write_behind import MOST_PENDING, WriteBehind
from tests.conftest import PANNED_FRAMES, Killed, killed_after

VIDEO = VideoSettings(iterations_next=2, evaluations_next=2)


def run(stylizer, frames, folder, behind: bool, kill_after: int | None = None):
    frame_stylizer = FrameStylizer(stylizer, VIDEO)
    frame_stylizer.write_behind = behind
    stylize_frames(frames, frame_stylizer, folder, VIDEO, len(frames), killed_after(kill_after))
    return [frame_path(folder, index).read_bytes() for index in range(len(frames))]


def test_frames_written_behind_are_those_written_in_line_and_resume_alike(
    tmp_path, monkeypatch, tiny_stylizer, panning_frames
):
    in_line = run(tiny_stylizer, panning_frames, tmp_path / "in-line", behind=False)
    writers, real = [], pipeline.frames.write_frame
    monkeypatch.setattr(
        pipeline.frames,
        "write_frame",
        lambda path, frame: writers.append(threading.current_thread().name) or real(path, frame),
    )
    assert run(tiny_stylizer, panning_frames, tmp_path / "behind", behind=True) == in_line
    assert len(writers) == PANNED_FRAMES and all(w.startswith("write-behind") for w in writers)
    assert read_checkpoint(tmp_path / "behind").frame == PANNED_FRAMES - 1
    assert not [t for t in threading.enumerate() if t.name.startswith("write-behind")]
    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        run(tiny_stylizer, panning_frames, killed, behind=True, kill_after=3)
    # writes not begun were dropped; the checkpoint names a frame that is there, as are those
    # before it
    named = read_checkpoint(killed).frame
    assert all(frame_path(killed, index).is_file() for index in range(named + 1))
    assert run(tiny_stylizer, panning_frames, killed, behind=True) == in_line


def test_a_write_that_fails_behind_ends_the_run_with_its_error(
    tmp_path, monkeypatch, tiny_stylizer, panning_frames
):
    real = pipeline.frames.write_frame

    def disk_full_at_frame_2(path, frame):
        if path.name == "000002.png":
            raise OutputError(f"{path}: cannot write frame (No space left on device)")
        real(path, frame)

    monkeypatch.setattr(pipeline.frames, "write_frame", disk_full_at_frame_2)
    with pytest.raises(OutputError, match="No space left"):
        run(tiny_stylizer, panning_frames, tmp_path, behind=True)
    assert read_checkpoint(tmp_path).frame == 1  # no checkpoint past the frame that failed


def test_a_run_ended_by_another_error_keeps_that_error(
    tmp_path, monkeypatch, tiny_stylizer, panning_frames
):
    def disk_full(path, frame):
        raise OutputError(f"{path}: cannot write frame (No space left on device)")

    monkeypatch.setattr(pipeline.frames, "write_frame", disk_full)
    with pytest.raises(Killed):  # the error that ended the run, not the write's behind it
        run(tiny_stylizer, panning_frames, tmp_path, behind=True, kill_after=0)


def test_no_write_runs_after_one_that_failed():
    writer, done = WriteBehind(), []

    def fail():
        time.sleep(0.1)  # the next writes are queued meanwhile
        raise OSError("disk full")

    writer.submit(lambda: done.append(0))
    writer.submit(fail)
    writer.submit(lambda: done.append(2))
    with pytest.raises(OSError, match="disk full"):
        writer.close()
    assert done == [0]


def test_writes_run_in_order_and_no_more_than_a_few_wait():
    writer, order, gate = WriteBehind(), [], threading.Event()

    def write(index):
        gate.wait()
        order.append(index)

    waited = []
    for index in range(MOST_PENDING + 2):
        start = time.monotonic()
        if index == MOST_PENDING:
            threading.Timer(0.3, gate.set).start()
        writer.submit(lambda index=index: write(index))
        waited.append(time.monotonic() - start)
    writer.close()
    assert order == list(range(MOST_PENDING + 2))
    assert max(waited[:MOST_PENDING]) < 0.1 and waited[MOST_PENDING] > 0.2
