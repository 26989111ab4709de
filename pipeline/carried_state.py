"""What frame t+1 takes from frame t besides its result: the L-BFGS curvature frame t ended with
and, with --hold-still, its hold reference. Kept in memory, and written to the work folder at
checkpoints only: the curvature is ten images of floats (250 MB a frame at 1920x1080, 18 MB at
512x288), and writing it with every frame cost 2-7 % of a CPU's frame and more than a GPU's whole
frame. A checkpoint is written when the time since the last one is at least 1/STATE_WRITE_SHARE
times what the last one took to write, so writing costs at most that share of the run.

A resumed run keeps the frames up to the last checkpoint and makes those after it again: the same
bits as an uninterrupted run, as every input to them (the results before, the flows, this state)
is what that run used. `checkpoint.json` names the checkpoint's frame; a work folder without it
(made before checkpoints were written this way) keeps every frame it holds.
"""

from __future__ import annotations

import io
import pickle
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pipeline.engine import Curvature
from pipeline.shot_memory import HoldReference, PastFrame
from pipeline.tuning import CARRIED_PAIRS, STATE_WRITE_SHARE
from pipeline.work_folder import (
    Checkpoint,
    curvature_path,
    frame_path,
    hold_path,
    resume_checkpoint,
    vouched_for,
    write_atomically,
    write_checkpoint,
)
from pipeline.write_behind import WriteBehind

# what reading a damaged state file raises (torch.load: a truncated zip or pickle)
UNREADABLE = (OSError, RuntimeError, EOFError, ValueError, KeyError, pickle.UnpicklingError)


class CarriedState:
    """Frame t's curvature and hold reference for frame t+1, and the checkpoints that let a
    resumed run compute what an uninterrupted one would. `work_dir` None: in memory only."""

    def __init__(self, work_dir: Path | None = None, clock: Callable[[], float] = time.monotonic):
        self.work_dir, self.clock = work_dir, clock
        self.curvature: tuple[int, Curvature] | None = None  # (frame, what its L-BFGS ended with)
        self.reference: tuple[int, HoldReference] | None = None  # (frame, the reference after it)
        self.kept_until: int | None = None  # a resumed run makes the frames after it again
        self.unsaved: int | None = None  # the newest frame whose state is in memory only
        self.since = clock()  # the last checkpoint's end
        self.writer: WriteBehind | None = None  # where frames are written behind (a GPU's run)
        self.write_seconds = 0.0  # what writing it took

    def begin(self, work_dir: Path) -> None:
        """A run over `work_dir` starts: the frames it keeps and the state the next frame takes
        are read from the last checkpoint; a new folder gets one before any frame, so that a run
        killed before its first real checkpoint makes every frame again."""
        self.work_dir = work_dir
        shutil.rmtree(self.work_dir / "flows", ignore_errors=True)  # older versions' flow cache
        checkpoint = resume_checkpoint(self.work_dir)
        if checkpoint is not None and checkpoint.frame < 0:  # a new folder's, or a damaged one
            write_checkpoint(self.work_dir, checkpoint)
        self.kept_until = None if checkpoint is None else self._restored(checkpoint)
        if checkpoint is not None:  # what a killed run saved and never named goes
            self._remove_state(lambda path: path.name not in checkpoint.state)
        self.since = self.clock()

    def _restored(self, checkpoint: Checkpoint) -> int:
        """The checkpoint's frame, its state read back; -1 (every frame made again) where a frame
        up to it or its state is missing or unreadable, as a deleted file or a power cut leaves."""
        index, folder = checkpoint.frame, self.work_dir
        if not vouched_for(folder, checkpoint):
            return -1
        try:
            for name in checkpoint.state:
                if name == curvature_path(folder, index).name:
                    self.curvature = (index, read_curvature(folder / name))
                elif name == hold_path(folder, index).name:
                    self.reference = (index, read_reference(folder / name))
        except UNREADABLE:
            self.curvature = self.reference = None
            return -1
        return index

    def keeps(self, index: int) -> bool:
        """Frame `index` is on disk and an earlier run's checkpoint vouches for what follows it."""
        if self.work_dir is None or not frame_path(self.work_dir, index).is_file():
            return False
        return self.kept_until is None or index <= self.kept_until

    def commit(self, index: int, write_frame: Callable[[], None], due: bool | None = None) -> None:
        """Frame `index` written by `write_frame()`, with a checkpoint where one is due: its state
        first, the frame, then the checkpoint's name (a kill in between leaves the last one)."""
        if due is None:
            due = self.clock() - self.since >= self.write_seconds / STATE_WRITE_SHARE
        due = due and self.work_dir is not None
        checkpoint = Checkpoint(index, self._save(index)) if due else None

        def write() -> None:
            write_frame()
            if checkpoint is not None:
                self._name(checkpoint)

        if self.writer is None:
            write()
        else:
            self.writer.submit(write)
        if due:
            self.kept_until, self.unsaved, self.since = index, None, self.clock()
        else:
            self.unsaved = index

    def end(self) -> None:
        """The run's frames are all written: a checkpoint at the last one, so that a rerun keeps
        them all."""
        if self.unsaved is not None and self.work_dir is not None:
            self._name(Checkpoint(self.unsaved, self._save(self.unsaved)))
            self.kept_until, self.unsaved = self.unsaved, None
        self.curvature = None  # on a GPU: device memory

    def _save(self, index: int) -> tuple[str, ...]:
        """Frame `index`'s state into the work folder; the files' names."""
        start, names = self.clock(), []
        if self.curvature is not None and self.curvature[0] == index:
            names.append(write_curvature(curvature_path(self.work_dir, index), self.curvature[1]))
        if self.reference is not None and self.reference[0] == index:
            names.append(write_reference(hold_path(self.work_dir, index), self.reference[1]))
        self.write_seconds = self.clock() - start
        return tuple(names)

    def _name(self, checkpoint: Checkpoint) -> None:
        """The checkpoint named, once its frame is on disk; the state of earlier ones removed (a
        later one's, saved meanwhile while this frame was written behind, stays)."""
        write_checkpoint(self.work_dir, checkpoint)
        self._remove_state(lambda path: state_frame(path) < checkpoint.frame)

    def _remove_state(self, chosen: Callable[[Path], bool]) -> None:
        for path in [*self.work_dir.glob("curvature-*.pt"), *self.work_dir.glob("hold-*.npz")]:
            if chosen(path):
                path.unlink(missing_ok=True)

    def curvature_before(self, index: int) -> Curvature | None:
        """What frame t-1's L-BFGS ended with: in memory, or saved by the run that made t-1."""
        if self.curvature is not None and self.curvature[0] == index - 1:
            # handed over: the optimizer copies it, and on a GPU it would hold device memory
            curvature, self.curvature = self.curvature[1], None
            return curvature
        # a folder from before checkpoints wrote every frame's
        path = curvature_path(self.work_dir, index - 1) if self.work_dir else None
        return read_curvature(path) if path and path.is_file() else None

    def forget_curvature(self) -> None:
        """A new shot: nothing learnt on the last one carries over."""
        self.curvature = None

    def keep_curvature(self, index: int, curvature: Curvature) -> None:
        """This frame's newest history pairs, for frame t+1 (on its device, until a checkpoint)."""
        steps, changes = curvature.steps[-CARRIED_PAIRS:], curvature.changes[-CARRIED_PAIRS:]
        self.curvature = (
            index,
            Curvature(
                curvature.scale,
                curvature.size,
                [x.detach() for x in steps],
                [x.detach() for x in changes],
            ),
        )

    def reference_before(self, index: int, previous: PastFrame) -> HoldReference:
        """Frame t-1's hold reference: in memory, or saved by the run that made t-1; where neither
        has it (t-1 opened the shot from elsewhere), t-1's own result and input."""
        if self.reference is not None and self.reference[0] == index - 1:
            return self.reference[1]
        path = hold_path(self.work_dir, index - 1) if self.work_dir else None
        if path and path.is_file():
            return read_reference(path)
        return HoldReference.settled(previous.result, previous.frame.rgb)

    def keep_reference(self, index: int, reference: HoldReference) -> None:
        self.reference = (index, reference)


def write_curvature(path: Path, curvature: Curvature) -> str:
    """`curvature` into `path` from the host's memory; the file's name."""
    on_host = Curvature(
        curvature.scale,
        curvature.size,
        [x.cpu() for x in curvature.steps],
        [x.cpu() for x in curvature.changes],
    )
    # in memory first: torch.save on a full disk says only "unexpected pos"
    buffer = io.BytesIO()
    torch.save(on_host, buffer)
    write_atomically(path, buffer.getvalue())
    return path.name


def read_curvature(path: Path) -> Curvature:
    return torch.load(path, weights_only=False)


def write_reference(path: Path, reference: HoldReference) -> str:
    """`reference` into `path`; the file's name."""
    buffer = io.BytesIO()
    np.savez(buffer, result=reference.result, source=reference.source, age=reference.age)
    write_atomically(path, buffer.getvalue())
    return path.name


def read_reference(path: Path) -> HoldReference:
    with np.load(path) as data:
        return HoldReference(data["result"], data["source"], data["age"])


def state_frame(path: Path) -> int:
    """The frame a state file (curvature-000012.pt) is of; -1 for a name of another form."""
    number = path.stem.rpartition("-")[2]
    return int(number) if number.isdigit() else -1
