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

from pipeline.engine import Plan, Result, Stylizer
from pipeline.image_io import to_array, to_tensor
from pipeline.losses import TemporalLoss, Term
from pipeline.settings import VideoSettings
from pipeline.temporal import FlowEstimator, Frame, carry_over, fill_disocclusions, is_cut, to_float
from pipeline.work_folder import FrameLog, frame_path, read_frame, write_frame


@dataclass
class FrameReport:
    index: int
    total: int
    cold: bool  # first frame of a shot (or --video-init content)
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

    def is_cold(self, previous: tuple[Frame, np.ndarray] | None) -> bool:
        return previous is None or self.video.warm_start == "content"

    def __call__(self, frame: Frame, previous: tuple[Frame, np.ndarray] | None) -> tuple[np.ndarray, dict]:
        """`previous`: (input frame, stylized uint8 frame) of t-1, or None for a cold start."""
        content = to_float(frame.rgb)
        flow_seconds = 0.0
        if self.is_cold(previous):
            result = self.cold_start(content)
        else:
            prev_in, prev_out = previous[0], to_float(previous[1])
            extra: list[Term] = []
            if self.video.warm_start == "prev":
                init = prev_out
            else:
                start = time.perf_counter()
                carried = carry_over(prev_out, prev_in, frame, self.flows)
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
        settings, image = self.stylizer.settings, to_tensor(content)
        ladder = Plan(scales=self.video.first_frame_scales)
        scales, photo_scales = len(self.stylizer.ladder(image, ladder)), len(self.stylizer.ladder(image))
        if settings.coarse_to_fine is False or scales <= photo_scales or settings.iterations < scales:
            return self.stylizer.stylize(image)
        return self.stylizer.stylize(image, Plan(scales=scales, iterations=settings.iterations // scales))


def stylize_frames(frames: Iterable[np.ndarray], frame_stylizer: FrameStylizer, work_dir: Path, video: VideoSettings,
                   total: int, on_frame: FrameCallback | None = None) -> FramesDone:
    """Stylize frames in order into `work_dir`, one atomic PNG each; frames already there are kept.

    Frame t starts from frame t-1's result, which is exactly its lossless PNG: kept in memory, and
    read back only when an earlier run made it, so a resumed run computes what an uninterrupted one
    would. A scene cut starts the next frame cold.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    done = FramesDone(0, 0, [])
    with FrameLog(work_dir) as frame_log:
        frame_log.write({"run": time.strftime("%Y-%m-%dT%H:%M:%S"), "precision": frame_stylizer.stylizer.precision.reason})
        previous: Frame | None = None
        previous_out: np.ndarray | None = None  # t-1's result when this run made it
        for index, rgb in enumerate(frames):
            frame = Frame(rgb)
            done.count = index + 1
            cut = previous is not None and is_cut(previous, frame, video.scene_threshold)
            if cut:
                done.cuts.append(index)
            warm_from = None if previous is None or cut else previous
            path = frame_path(work_dir, index)
            if path.is_file():
                report = FrameReport(index, total, frame_stylizer.is_cold(warm_from), cut, skipped=True)
                previous_out = None
            else:
                if warm_from is not None and previous_out is None:
                    previous_out = read_frame(frame_path(work_dir, index - 1))
                previous_out, stats = frame_stylizer(frame, None if warm_from is None else (warm_from, previous_out))
                write_frame(path, previous_out)
                done.computed += 1
                report = FrameReport(index, total, frame_stylizer.is_cold(warm_from), cut, False, **stats)
                frame_log.write({"frame": index, "cold": report.cold, "cut": cut, **stats})
            if on_frame:
                on_frame(report)
            previous = frame
    return done
