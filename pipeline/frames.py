"""Frames in order: each warm-started from the previous one's result (or cold, at the first frame
of a shot), stylized into a work folder, one atomic PNG each, so that a killed run resumes after its
last checkpoint (`carried_state`) and reproduces the frames an uninterrupted run would have made.

`FrameStylizer` makes the per-frame decision (cold or warm, which terms, which budget) and builds
the engine's `Plan`; the warm start's steps live in `warm_start`, the shot's past in
`shot_memory`. Chunks (`chunks`) and refinement passes (`passes`) call it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from pipeline.carried_state import CarriedState
from pipeline.engine import Hold, Plan, Result, Stylizer
from pipeline.flows_ahead import FlowsAhead, spare_cores
from pipeline.hole_paint import paint_holes
from pipeline.image_io import to_array, to_tensor
from pipeline.losses import TemporalLoss, Term
from pipeline.settings import VideoSettings
from pipeline.shot_memory import HoldReference, PastFrame, ShotMemory
from pipeline.temporal import (
    Carried,
    FlowEstimator,
    FlowPair,
    Frame,
    from_float,
    is_cut,
    long_term,
    to_float,
)
from pipeline.tuning import DAMAGE_SHARE
from pipeline.warm_start import (
    WarmContext,
    WarmStart,
    later_frame_steps,
    past_frame_steps,
    run_steps,
)
from pipeline.work_folder import FrameLog, frame_path, write_frame
from pipeline.write_behind import WriteBehind


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
    held: float | None = None  # share of the pixels kept from their hold reference (--hold-still)


FrameCallback = Callable[[FrameReport], None]


@dataclass
class FramesDone:
    count: int
    computed: int
    cuts: list[int]


class FrameStylizer:
    """Frame t from the frames before it: the per-frame policy (a cold start, or a warm start along
    the flow with the temporal loss over t-1 and the long-term frames and the L-BFGS curvature
    frame t-1 ended with). `work_dir`: where the shot's memory is mirrored, so that a resumed run
    computes what an uninterrupted one would."""

    def __init__(self, stylizer: Stylizer, video: VideoSettings, work_dir: Path | None = None):
        self.stylizer, self.video = stylizer, video
        self.flows = FlowEstimator()
        self.memory = ShotMemory(video, work_dir)
        self.state = CarriedState(work_dir)  # frame t-1's curvature and hold reference
        self.steps, self.past_steps = later_frame_steps(video), past_frame_steps(video)
        self.cold_plan = Plan()  # a shot's first frame: the settings' budget
        self.on_device: bool | None = None  # later frames in device_lbfgs (None: on a GPU)
        self.ahead_workers: int | None = None  # threads computing flows ahead (None: spare cores)
        self.write_behind: bool | None = None  # frames written by a thread (None: beside a GPU)
        # where results are carried along the flow: the GPU the engine runs on, else OpenCV's
        # remap on the host (None)
        gpu = stylizer.device.type == "cuda"
        self.warp_on: torch.device | None = stylizer.device if gpu else None

    def is_cold(self, warm: bool) -> bool:
        """A frame that could start warm starts cold all the same with --video-init content."""
        return not warm or self.video.warm_start == "content"

    def __call__(
        self, frame: Frame, previous: tuple[Frame, np.ndarray] | None, index: int = 0
    ) -> tuple[np.ndarray, dict]:
        """`previous`: (input frame, stylized frame) of t-1, or None for a cold start. The
        long-term frames come from `memory` (none where this frame is stylized on its own)."""
        content = to_float(frame.rgb)
        if self.is_cold(previous is not None):
            self.state.forget_curvature()
            result = self.stylizer.stylize(to_tensor(content), self.cold_plan)
            return self.finish(index, frame, result, None, None)
        start = time.perf_counter()
        before = PastFrame(index - 1, *previous)
        hold = self.video.hold_still > 0
        reference = self.state.reference_before(index, before) if hold else None
        warm, terms = self.warm_start(frame, index, before, content=content, reference=reference)
        flow_seconds = time.perf_counter() - start
        # what its few evaluations cannot paint, painted first (--paint-holes)
        paint = self.video.paint_holes if self.video.warm_start == "flow" else 0
        init = paint_holes(
            self.stylizer,
            content,
            warm.first_image,
            warm.carried.mask,
            terms,
            paint,
            self.on_device,
        )
        curvature = self.state.curvature_before(index) if self.video.carry_curvature else None
        plan = self.later_plan(
            init,
            terms,
            curvature=curvature,
            hold=warm.hold,
            budgets=frame_budgets(warm, self.video),
        )
        result = self.stylizer.stylize(to_tensor(content), plan)
        return self.finish(index, frame, result, reference, warm, flow_seconds=flow_seconds)

    def warm_start(
        self,
        frame: Frame,
        index: int,
        previous: PastFrame,
        *,
        content: np.ndarray | None = None,
        flows: FlowPair | None = None,
        past: Sequence[PastFrame] | None = None,
        reference: HoldReference | None = None,
    ) -> tuple[WarmStart, list[Term]]:
        """Frame t-1's result through the steps, and the temporal term. `content`: the frame as
        floats, where the caller has it; `flows`: to `previous` where it is not the frame before (a
        chunk's head); `past`: the long-term frames and the shot's first (default: the memory's)."""
        if self.video.warm_start == "prev":
            return WarmStart.of(previous.result), []
        content = to_float(frame.rgb) if content is None else content
        past = self.memory.past_frames(index) if past is None else past
        context = WarmContext(
            frame,
            content,
            previous.frame,
            flows if flows is not None else self.flows.pair(frame, previous.frame, neighbours=True),
            self.video,
            shot_start=next((item for item in past if item.shot_start), None),
            reference=reference,
            warp_on=self.warp_on,
        )
        warm = run_steps(self.steps, WarmStart.of(previous.result), context)
        if self.video.temporal_weight <= 0:
            return warm, []
        carried = [self.carry_past(frame, item, content) for item in past if not item.shot_start]
        target = long_term([warm.carried, *carried])
        return warm, [Term("temporal", temporal_loss(target), self.video.temporal_weight)]

    def carry_past(self, frame: Frame, past: PastFrame, content: np.ndarray) -> Carried:
        """A long-term frame's result carried onto this one, for the temporal loss."""
        flows = self.flows.pair(frame, past.frame).in_half_precision()
        context = WarmContext(frame, content, past.frame, flows, self.video, warp_on=self.warp_on)
        return run_steps(self.past_steps, WarmStart.of(past.result), context).carried

    def later_plan(
        self,
        init: np.ndarray,
        terms: Sequence[Term],
        *,
        curvature=None,
        hold: Hold | None = None,
        budgets: float = 1.0,
    ) -> Plan:
        """A later frame's budget: a few evaluations from the warm start (`budgets` times that)."""
        video = self.video
        return Plan(
            init=to_tensor(init),
            iterations=round(video.iterations_next * budgets),
            patience=video.patience_next,
            evaluations=round(video.evaluations_next * budgets),
            extra_terms=tuple(terms),
            curvature=curvature,
            hold=hold,
            on_device=self.on_device,
        )

    def finish(
        self,
        index: int,
        frame: Frame,
        result: Result,
        reference: HoldReference | None,
        warm: WarmStart | None,
        **stats,
    ) -> tuple[np.ndarray, dict]:
        """The frame at its input's depth and its stats; the curvature and, with --hold-still, the
        hold reference for the next frame kept first."""
        if self.video.carry_curvature and result.curvature is not None:
            self.state.keep_curvature(index, result.curvature)
        image, stats = frame_and_stats(result, frame.rgb.dtype, **stats)
        if self.video.hold_still > 0:
            held = warm.held if warm is not None else None
            if reference is None:
                reference = HoldReference.settled(image, frame.rgb)
            else:
                reference = reference.after(image, frame.rgb, warm.change, held)
            self.state.keep_reference(index, reference)
            if held is not None:
                stats["held"] = round(float(held.mean()), 4)
        return image, stats


def frame_budgets(warm: WarmStart, video: VideoSettings) -> float:
    """How many later frames' budgets this one takes (--catch-up): more where the warm start
    vouches for fewer pixels, whose start is the raw input or a guess."""
    if video.catch_up <= 1 or video.warm_start != "flow":
        return 1.0
    return damage_budgets(1.0 - float(warm.carried.mask.mean()), video.catch_up)


def damage_budgets(unvouched: float, cap: float) -> float:
    """One budget, and one more per DAMAGE_SHARE of the pixels unvouched for, at most `cap`."""
    return min(cap, 1.0 + unvouched / DAMAGE_SHARE)


def frame_and_stats(result: Result, dtype: np.dtype = np.uint8, **more) -> tuple[np.ndarray, dict]:
    """A stylized frame at its input's depth (uint8, or uint16 from deeper input) and what
    frames.jsonl records of it."""
    return from_float(to_array(result.image), dtype), {
        "iterations": result.iterations,
        "evaluations": result.evaluations,
        "seconds": result.seconds,
        "losses": result.losses,
        **more,
    }


def temporal_loss(target: Carried) -> TemporalLoss:
    return TemporalLoss(to_tensor(target.image), torch.from_numpy(target.mask)[None, None])


def stylize_frames(
    frames: Iterable[np.ndarray],
    frame_stylizer: FrameStylizer,
    work_dir: Path,
    video: VideoSettings,
    total: int,
    on_frame: FrameCallback | None = None,
) -> FramesDone:
    """Stylize frames in order into `work_dir`, one atomic PNG each; frames an earlier run made up
    to its last checkpoint are kept, those after it made again.

    Frame t starts from frame t-1's result, which is exactly its lossless PNG: kept in memory, and
    read back only when an earlier run made it, so a resumed run computes what an uninterrupted one
    would (the carried state is read back from the last checkpoint for the same reason). A scene
    cut starts the next frame cold.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    memory, state = frame_stylizer.memory, frame_stylizer.state
    memory.mirror_to(work_dir)
    state.begin(work_dir)
    memory.start_shot()
    done = FramesDone(0, 0, [])
    with (
        FrameLog(work_dir) as frame_log,
        flows_ahead(frame_stylizer) as ahead,
        written_behind(frame_stylizer),
    ):
        reason = frame_stylizer.stylizer.precision.reason
        frame_log.write({"run": time.strftime("%Y-%m-%dT%H:%M:%S"), "precision": reason})
        previous: Frame | None = None
        for index, (frame, upcoming) in enumerate(with_next(Frame(rgb) for rgb in frames)):
            ask_ahead(ahead, upcoming, index + 1, (frame, previous), frame_stylizer)
            done.count = index + 1
            cut = previous is not None and is_cut(previous, frame, video.scene_threshold)
            if cut:
                done.cuts.append(index)
                memory.start_shot()
            warm = previous is not None and not cut
            report = _one_frame(frame, index, warm, cut, frame_stylizer, frame_log, total)
            done.computed += not report.skipped
            if on_frame:
                on_frame(report)
            previous = frame
    state.end()  # after the frames written behind
    return done


def with_next(items: Iterable) -> Iterator[tuple]:
    """Each item with the one after it (None after the last): the next frame is read first, so
    that its flows can start while this one is stylized."""
    iterator = iter(items)
    current = next(iterator, None)
    while current is not None:
        upcoming = next(iterator, None)
        yield current, upcoming
        current = upcoming


@contextlib.contextmanager
def flows_ahead(frame_stylizer: FrameStylizer) -> Iterator[FlowsAhead | None]:
    """Worker threads computing the next frame's flows, where cores are spare (None: none)."""
    workers = frame_stylizer.ahead_workers
    if workers is None:
        workers = min(3, spare_cores(frame_stylizer.stylizer.device))  # three pairs a frame
    if workers < 1:
        yield None
        return
    ahead = FlowsAhead(frame_stylizer.flows, workers)
    own, frame_stylizer.flows = frame_stylizer.flows, ahead
    try:
        yield ahead
    finally:
        frame_stylizer.flows = own
        ahead.close()


@contextlib.contextmanager
def written_behind(frame_stylizer: FrameStylizer) -> Iterator[None]:
    """Frames written by a thread while the next is stylized, where cores are spare; all written
    when the block ends."""
    behind = frame_stylizer.write_behind
    if behind is None:
        behind = spare_cores(frame_stylizer.stylizer.device) > 0
    if not behind:
        yield
        return
    writer = frame_stylizer.state.writer = WriteBehind()
    try:
        yield
    except BaseException:
        writer.abandon()  # a full disk must not hide the error that ended the run
        raise
    finally:
        frame_stylizer.state.writer = None
    writer.close()


def ask_ahead(
    ahead: FlowsAhead | None,
    upcoming: Frame | None,
    index: int,
    before: tuple[Frame, Frame | None],
    frame_stylizer: FrameStylizer,
) -> None:
    """Frame `index`'s pairs started: to the frame before it and to its long-term frames, unless
    an earlier run made the frame or it takes no flows. `before`: (this frame, the one before it,
    whose pairs nobody took are dropped)."""
    if ahead is None:
        return
    frame, previous = before
    if previous is not None:
        ahead.forget(previous)
    memory, video = frame_stylizer.memory, frame_stylizer.video
    if upcoming is None or video.warm_start != "flow" or frame_stylizer.state.keeps(index):
        return
    older = memory.long_term_indices(index) if video.temporal_weight > 0 else []
    long_term = [(past, False) for past in memory.frames_at(older)]
    ahead.ask(upcoming, [(frame, True), *long_term])


def _one_frame(
    frame: Frame,
    index: int,
    warm: bool,
    cut: bool,
    frame_stylizer: FrameStylizer,
    frame_log: FrameLog,
    total: int,
) -> FrameReport:
    """Frame `index` stylized and written (or kept from an earlier run), and added to the shot's
    memory."""
    memory, work_dir = frame_stylizer.memory, frame_stylizer.memory.work_dir
    if frame_stylizer.state.keeps(index):
        memory.add(index, frame, None)
        return FrameReport(index, total, frame_stylizer.is_cold(warm), cut, skipped=True)
    previous = memory.previous() if warm else None
    result, stats = frame_stylizer(
        frame, (previous.frame, previous.result) if previous else None, index
    )
    report = FrameReport(index, total, frame_stylizer.is_cold(warm), cut, False, **stats)
    # logged before the frame lands, so that every frame on disk has its line (a kill between the
    # two leaves a line for a frame the rerun makes again; readers take a frame's last line)
    frame_log.write({"frame": index, "cold": report.cold, "cut": cut, **stats})
    frame_stylizer.state.commit(index, partial(write_frame, frame_path(work_dir, index), result))
    memory.add(index, frame, result)
    return report
