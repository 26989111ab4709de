"""Frames in order: each warm-started from the previous one's result (or cold, at the first frame of
a shot), stylized into a work folder, one atomic PNG each, so that a killed run resumes at the first
missing frame and reproduces the frames an uninterrupted run would have made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.engine import Plan, Result, Stylizer, halving_ladder, scale_ladder, smallest_side
from pipeline.image_io import to_array, to_tensor
from pipeline.losses import TemporalLoss, Term
from pipeline.settings import VideoSettings
from pipeline.temporal import FlowEstimator, carry_over, fill_disocclusions, is_cut, to_float
from pipeline.work_folder import FrameLog, frame_path, read_frame, write_frame


@dataclass
class FrameReport:
    index: int
    total: int
    cold: bool  # first frame of a shot (or --init content)
    cut: bool  # a scene cut was detected before this frame
    skipped: bool  # already done by an earlier run
    iterations: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    flow_seconds: float = 0.0
    losses: dict[str, float] | None = None


FrameCallback = Callable[[FrameReport], None]


@dataclass
class FramesDone:
    count: int
    computed: int
    cuts: list[int]


class FrameStylizer:
    """Frame t from frame t-1: the per-frame policy (cold start, warm start, temporal loss)."""

    def __init__(self, stylizer: Stylizer, video: VideoSettings):
        self.stylizer, self.video = stylizer, video
        self.flows = FlowEstimator()

    def __call__(self, frame: np.ndarray, previous: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, dict]:
        """`previous`: (input frame, stylized uint8 frame) of t-1, or None for a cold start."""
        content = to_float(frame)
        flow_seconds = 0.0
        if previous is None or self.video.init == "content":
            result = self.cold_start(content)
        else:
            prev_in, prev_out = to_float(previous[0]), to_float(previous[1])
            extra: list[Term] = []
            if self.video.init == "prev":
                init = prev_out
            else:
                start = time.perf_counter()
                carried = carry_over(prev_out, prev_in, content, self.flows)
                init = fill_disocclusions(carried, content, self.video.fill)
                flow_seconds = time.perf_counter() - start
                if self.video.temporal_weight > 0:
                    loss = TemporalLoss(to_tensor(carried.image), torch.from_numpy(carried.mask)[None, None])
                    extra.append(Term("temporal", loss, self.video.temporal_weight))
            plan = Plan(init=to_tensor(init), iterations=self.video.iterations_next, patience=self.video.patience_next,
                        extra_terms=tuple(extra))
            result = self.stylizer.stylize(to_tensor(content), plan)
        out = np.round(to_array(result.image) * 255).astype(np.uint8)
        return out, {"iterations": result.iterations, "evaluations": result.evaluations,
                     "seconds": result.seconds, "flow_seconds": flow_seconds, "losses": result.losses}

    def cold_start(self, content: np.ndarray) -> Result:
        """A frame with no warm start: the first of a shot (every frame with --video-init content).

        Coarse-to-fine over at least `first_frame_scales` sizes: where the photo ladder
        (--coarse-to-fine) is shorter, that many sizes, each half the next, share the iteration
        budget evenly. On car-detection.mp4 at 384 px, 192 then 384 px at 150 iterations each took
        2/3 of the time of 300 at 384 px for about the same total loss (less style, more content).
        --coarse-to-fine off keeps one scale.
        """
        settings = self.stylizer.settings
        height, width = content.shape[:2]
        scales = len(halving_ladder(height, width, self.video.first_frame_scales, smallest_side(settings)))
        photo_scales = len(scale_ladder(height, width, settings))
        if settings.coarse_to_fine is False or scales <= photo_scales or settings.iterations < scales:
            return self.stylizer.stylize(to_tensor(content))
        return self.stylizer.stylize(to_tensor(content), Plan(scales=scales, iterations=settings.iterations // scales))


def stylize_frames(frames: Iterable[np.ndarray], frame_stylizer: FrameStylizer, folder: Path, video: VideoSettings,
                   total: int, on_frame: FrameCallback | None = None) -> FramesDone:
    """Stylize frames in order into `folder`, one atomic PNG each; frames already there are kept.

    Frame t starts from frame t-1's result as read back from disk, so a resumed run computes
    exactly what an uninterrupted one would. A scene cut starts the next frame cold.
    """
    folder.mkdir(parents=True, exist_ok=True)
    done = FramesDone(0, 0, [])
    with FrameLog(folder) as frame_log:
        frame_log.write({"run": time.strftime("%Y-%m-%dT%H:%M:%S"), "precision": frame_stylizer.stylizer.precision.reason})
        previous_in: np.ndarray | None = None
        for index, frame in enumerate(frames):
            done.count = index + 1
            cut = previous_in is not None and is_cut(previous_in, frame, video.scene_threshold)
            if cut:
                done.cuts.append(index)
            path = frame_path(folder, index)
            if path.is_file():
                report = FrameReport(index, total, previous_in is None or cut, cut, skipped=True)
            else:
                previous = None if previous_in is None or cut else (previous_in, read_frame(frame_path(folder, index - 1)))
                stylized, stats = frame_stylizer(frame, previous)
                write_frame(path, stylized)
                done.computed += 1
                report = FrameReport(index, total, previous is None or video.init == "content", cut, False, **stats)
                frame_log.write({"frame": index, "cold": report.cold, "cut": cut, **stats})
            if on_frame:
                on_frame(report)
            previous_in = frame
    return done
