"""What a later frame needs from the frames before it in its shot, in one place: the recent results
(t-1 and the long-term frames) and the shot's first frame (frame t-1's curvature and hold
reference: `carried_state`). Kept in memory and read back from the work folder's PNGs where an
earlier run made them, so that a resumed run computes the frames an uninterrupted run would.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.settings import VideoSettings
from pipeline.temporal import Frame
from pipeline.tuning import HOLD_SETTLE
from pipeline.work_folder import frame_path, read_frame


@dataclass
class PastFrame:
    """A frame before this one in the shot, with its stylized result."""

    index: int
    frame: Frame
    result: np.ndarray  # its stylized frame, uint8 (or uint16 from a deeper input)
    # the shot's first frame, kept for --restore-still beyond the long-term offsets
    shot_start: bool = False


@dataclass
class ChangeSinceReference:
    """How the input at each pixel changed since the input its hold reference was made from."""

    unchanged: np.ndarray  # H x W bool: the content looks as it did (the light may have changed)
    light: np.ndarray  # H x W x 3 float: the change of light there, which a held pixel follows


@dataclass
class HoldReference:
    """What each pixel's result was last made from (--hold-still): where the input still looks as
    it did then, the pixel keeps that result instead of being re-optimized every frame. A pixel the
    input changed at (something passed) is optimized for HOLD_SETTLE more frames once still again
    before it is held: a result frozen one frame after a disocclusion keeps a ghost. A held pixel
    follows the input's change of light; a frame where the camera moves holds nothing, and every
    pixel settles again after it."""

    result: np.ndarray  # H x W x 3, uint8 (uint16 from a deeper input)
    source: np.ndarray  # H x W x 3: the input frame's pixels it was made from
    age: np.ndarray  # uint16 H x W: frames the input has been still there

    @classmethod
    def settled(cls, result: np.ndarray, source: np.ndarray) -> HoldReference:
        """A cold frame's: every pixel converged (a cold frame's full budget), held from the next
        frame on."""
        return cls(result, source, np.full(result.shape[:2], HOLD_SETTLE, np.uint16))

    def after(
        self,
        result: np.ndarray,
        source: np.ndarray,
        change: ChangeSinceReference | None,
        held: np.ndarray | None,
    ) -> HoldReference:
        """The reference for the next frame: pixels held (mostly) this frame keep theirs, the rest
        take this frame's. `change` None: the camera moved, every pixel starts settling again."""
        if change is None or held is None:
            return HoldReference(result, source, np.zeros(result.shape[:2], np.uint16))
        fresh = (held < 0.5)[..., None]
        older = np.minimum(self.age.astype(np.int32) + 1, HOLD_SETTLE)
        age = np.where(change.unchanged, older, 0).astype(np.uint16)
        return HoldReference(
            np.where(fresh, result, self.result), np.where(fresh, source, self.source), age
        )


class ShotMemory:
    """The shot's past, as later frames ask for it. `work_dir` None: in memory only."""

    def __init__(self, video: VideoSettings, work_dir: Path | None = None):
        self.offsets, self.keep_first = sorted(video.temporal_frames), video.restore_still
        self.work_dir = work_dir
        self.recent: deque[PastFrame] = deque(maxlen=max(self.offsets))
        self.first: PastFrame | None = None

    def mirror_to(self, work_dir: Path) -> None:
        """Keep and read back everything in `work_dir` from now on: the folder of the frames."""
        self.work_dir = work_dir

    def start_shot(self) -> None:
        """A scene cut (or a new run of frames): no earlier frame is looked back at."""
        self.recent.clear()
        self.first = None

    def add(self, index: int, frame: Frame, result: np.ndarray | None) -> None:
        """Frame `index` and its result (None: an earlier run made it; read back when needed)."""
        past = PastFrame(index, frame, result)
        self.recent.append(past)
        self.first = self.first or past

    def long_term_indices(self, index: int) -> list[int]:
        """The frames before t-1 that frame `index`'s temporal loss looks back at (t-2, t-4),
        closest first."""
        return [index - k for k in self.offsets if k > 1]

    def frames_at(self, indices: Iterable[int]) -> list[Frame]:
        """The input frames at `indices` among the recent ones (those before t-1 that a long-term
        offset reaches), without their results."""
        by_index = {past.index: past.frame for past in self.recent}
        return [by_index[index] for index in indices if index in by_index]

    def previous(self) -> PastFrame:
        """The frame added last, t-1, with its result (exactly its lossless PNG)."""
        return self._loaded(self.recent[-1])

    def past_frames(self, index: int) -> list[PastFrame]:
        """The long-term frames of frame `index` (t-2 and before, closest first) and, with
        --restore-still, the shot's first frame when it is none of them."""
        by_index = {past.index: past for past in self.recent}
        wanted = [earlier for earlier in self.long_term_indices(index) if earlier in by_index]
        chosen = [self._loaded(by_index[i]) for i in wanted]
        first = self.first
        if self.keep_first and first is not None and first.index < index - 1:
            if first.index not in wanted:
                loaded = self._loaded(first)
                chosen.append(PastFrame(loaded.index, loaded.frame, loaded.result, shot_start=True))
        return chosen

    def _loaded(self, past: PastFrame) -> PastFrame:
        if past.result is None:
            past.result = read_frame(frame_path(self.work_dir, past.index))
        return past
