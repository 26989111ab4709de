"""Frames in order: each warm-started from the previous one's result (or cold, at the first frame of
a shot), stylized into a work folder, one atomic PNG each, so that a killed run resumes at the first
missing frame and reproduces the frames an uninterrupted run would have made.
"""

from __future__ import annotations

import io
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.engine import Curvature, Hold, Plan, Result, Stylizer
from pipeline.image_io import to_array, to_tensor
from pipeline.losses import TemporalLoss, Term
from pipeline.settings import VideoSettings
from pipeline.temporal import (
    MASK_BLUR_SIGMA,
    FlowEstimator,
    Frame,
    WarpedPrevious,
    camera_still,
    carry_over,
    fill_disocclusions,
    from_float,
    is_cut,
    long_term,
    looks_alike,
    to_float,
    warp_along,
)
from pipeline.work_folder import (
    FrameLog,
    curvature_path,
    drop_flows,
    flow_path,
    frame_path,
    key_path,
    read_flows,
    read_frame,
    write_atomically,
    write_flows,
    write_frame,
)

# mean RGB (0-1): a pixel's input looks as in the shot's first frame (--restore-still)
RESTORE_CHANGE = 0.03
# mean RGB (0-1): the camera's exposure (the frame's median change of light; car-detection's moves
# by 0.12 as bright cars pass) is followed up to this
RESTORE_LIGHT_LIMIT = 0.3
PASS_BLEND = 0.5  # later passes: share of the neighbour's warped result in a frame's starting image
# L-BFGS history pairs a later frame takes from frame t-1 (older ones describe older frames)
CARRIED_PAIRS = 5
HOLD_BLUR = 1.5  # px: inputs are compared blurred (compression noise)
HOLD_SETTLE = 20  # frames a pixel stays free once its input is still again (after something passed)
# px: what changes slower across the image than this is light (a shadow, the exposure), not content
HOLD_LIGHT_BLUR = 6.0
# mean RGB (0-1): a larger change of light (a lamp switched on) lets the pixels go
HOLD_LIGHT_LIMIT = 0.1


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
    held: float | None = None  # share of the pixels kept from their key (--hold-still)


FrameCallback = Callable[[FrameReport], None]


@dataclass
class FramesDone:
    count: int
    computed: int
    cuts: list[int]


@dataclass
class Earlier:
    """A frame before this one in the shot, for the long-term temporal loss."""

    index: int
    frame: Frame
    result: np.ndarray  # its stylized frame, uint8
    # the shot's first frame, kept for --restore-still beyond the long-term offsets
    anchor: bool = False


@dataclass
class Key:
    """What each pixel's result was last made from (--hold-still): where the input still looks as it
    did then, the pixel keeps that result instead of being re-optimized every frame (with the
    still-aware flow a still background barely moves anyway; this freezes it exactly). A pixel the
    input changed at (something passed) is optimized for HOLD_SETTLE more frames once still again
    before it is held: a result frozen one frame after a disocclusion keeps a ghost. A held pixel
    follows the input's change of light (`compare_to_key`); a frame where the camera moves holds
    nothing, and every pixel settles again after it."""

    result: np.ndarray  # uint8 H x W x 3
    source: np.ndarray  # uint8 H x W x 3: the input frame's pixels it was made from
    age: np.ndarray  # uint16 H x W: frames the input has been still there

    @classmethod
    def settled(cls, result: np.ndarray, source: np.ndarray) -> Key:
        """A cold frame's: every pixel converged (a cold frame's full budget), held from the next
        frame on."""
        return cls(result, source, np.full(result.shape[:2], HOLD_SETTLE, np.uint16))

    def after(
        self,
        result: np.ndarray,
        source: np.ndarray,
        still: Stillness | None,
        held: np.ndarray | None,
    ) -> Key:
        """The key for the next frame: pixels held (mostly) this frame keep theirs, the rest take
        this frame's. `still` None: the camera moved, every pixel starts settling again."""
        if still is None or held is None:
            return Key(result, source, np.zeros(result.shape[:2], np.uint16))
        fresh = (held < 0.5)[..., None]
        age = np.where(
            still.unchanged, np.minimum(self.age.astype(np.int32) + 1, HOLD_SETTLE), 0
        ).astype(np.uint16)
        return Key(np.where(fresh, result, self.result), np.where(fresh, source, self.source), age)


class FrameStylizer:
    """Frame t from the frames before it: the per-frame policy (cold start, warm start along the
    flow, temporal loss over t-1 and the long-term frames, L-BFGS curvature carried from t-1).

    `work_dir`: where the long-term flows and the carried curvature are kept, so that a resumed run
    computes what an uninterrupted one would."""

    def __init__(self, stylizer: Stylizer, video: VideoSettings, work_dir: Path | None = None):
        self.stylizer, self.video, self.work_dir = stylizer, video, work_dir
        self.flows = FlowEstimator()
        # (frame index, what its L-BFGS ended with)
        self.curvature: tuple[int, Curvature] | None = None
        self.key: tuple[int, Key] | None = None  # (frame index, the key after it): --hold-still

    def is_cold(self, previous: tuple[Frame, np.ndarray] | None) -> bool:
        return previous is None or self.video.warm_start == "content"

    def __call__(
        self,
        frame: Frame,
        previous: tuple[Frame, np.ndarray] | None,
        index: int = 0,
        earlier: Sequence[Earlier] = (),
    ) -> tuple[np.ndarray, dict]:
        """`previous`: (input frame, stylized uint8 frame) of t-1, or None for a cold start;
        `earlier`: the long-term frames (t-2 and before) of the same shot, closest first."""
        content = to_float(frame.rgb)
        flow_seconds, still, held = 0.0, None, None
        if self.is_cold(previous):
            self.curvature = None  # a new shot: nothing learnt on the last one carries over
            key, result = None, self.cold_start(content)
        else:
            start = time.perf_counter()
            key = self.key_before(index, previous)
            init, extra, still = self.warm_start(frame, previous, content, index, earlier, key)
            held, hold = held_pixels(key, still)
            flow_seconds = time.perf_counter() - start
            plan = Plan(
                init=to_tensor(init),
                iterations=self.video.iterations_next,
                patience=self.video.patience_next,
                evaluations=self.video.evaluations_next,
                extra_terms=tuple(extra),
                curvature=self.carried(index),
                hold=hold,
            )
            result = self.stylizer.stylize(to_tensor(content), plan)
        self.keep_curvature(index, result)
        return self.finish(index, frame, result, key, still, held, flow_seconds=flow_seconds)

    def finish(
        self,
        index: int,
        frame: Frame,
        result: Result,
        key: Key | None,
        still: Stillness | None,
        held: np.ndarray | None,
        **stats,
    ) -> tuple[np.ndarray, dict]:
        """The frame as uint8 and its stats; with --hold-still, the key for the next frame kept
        first."""
        image, stats = frame_and_stats(result, frame.rgb.dtype, **stats)
        if self.video.hold_still > 0:
            self.keep_key(
                index,
                Key.settled(image, frame.rgb)
                if key is None
                else key.after(image, frame.rgb, still, held),
            )
            if held is not None:
                stats["held"] = round(float(held.mean()), 4)
        return image, stats

    def warm_start(
        self,
        frame: Frame,
        previous: tuple[Frame, np.ndarray],
        content: np.ndarray,
        index: int,
        earlier: Sequence[Earlier],
        key: Key | None = None,
        flows: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, list[Term], Stillness | None]:
        """The initial image, the temporal term and (with a key) how the input changed since the
        key. `flows`: (backward, forward) to `previous` where it is not the frame before (a chunk's
        head)."""
        prev_in, prev_out = previous[0], to_float(previous[1])
        if self.video.warm_start == "prev":
            return prev_out, [], None
        neighbours = flows is None
        backward, forward = flows or (
            self.flows.flow(frame, prev_in, True),
            self.flows.flow(prev_in, frame, True),
        )
        carried = self.warped(prev_out, frame, prev_in, backward, forward)
        # a moving camera holds nothing: a clear sky would look unchanged in place and keep its
        # strokes there
        camera_still_now = camera_still(backward, frame.grey, prev_in.grey, neighbours)
        first = next((item for item in earlier if item.anchor), None)
        if self.video.restore_still and first is not None and camera_still_now:
            carried = restored(carried, frame, first)
        init = fill_disocclusions(carried, content, self.video.fill)
        still = (
            compare_to_key(frame, key.source, self.video.hold_still)
            if key is not None and camera_still_now
            else None
        )
        if self.video.temporal_weight <= 0:
            return init, [], still
        target = long_term(
            [
                carried,
                *(self.carry_earlier(frame, index, item) for item in earlier if not item.anchor),
            ]
        )
        return init, [Term("temporal", temporal_loss(target), self.video.temporal_weight)], still

    def shot_head(
        self,
        frame: Frame,
        shot_first: tuple[Frame, np.ndarray],
        flows: tuple[np.ndarray, np.ndarray],
    ) -> tuple[np.ndarray, dict]:
        """The first frame of a chunk inside a shot (--ray): the shot's first result carried onto it
        along `flows` (`temporal.chained_flows` from the shot's first frame: the path the previous
        chunk's frames took), then a cold frame's budget of iterations with the temporal loss
        holding it where the flows agree. Where they cannot vouch for a pixel, it is restored from
        the shot's first result where the input looks as then (a still camera, --restore-still), as
        in the previous chunk."""
        content = to_float(frame.rgb)
        key = Key.settled(shot_first[1], shot_first[0].rgb) if self.video.hold_still > 0 else None
        first = Earlier(0, *shot_first, anchor=True)
        init, extra, still = self.warm_start(frame, shot_first, content, 0, (first,), key, flows)
        held, hold = held_pixels(key, still)
        result = self.stylizer.stylize(
            to_tensor(content), Plan(init=to_tensor(init), extra_terms=tuple(extra), hold=hold)
        )
        self.keep_curvature(0, result)
        return self.finish(0, frame, result, key, still, held)

    def refine(
        self, frame: Frame, own: np.ndarray, neighbour: tuple[Frame, np.ndarray]
    ) -> tuple[np.ndarray, dict]:
        """A later pass (--passes): this frame's result blended with its neighbour's new result
        warped onto it where the flow agrees, then re-optimized briefly with the temporal loss
        toward it."""
        carried = carry_over(to_float(neighbour[1]), neighbour[0], frame, self.flows)
        share = carried.mask[..., None] * PASS_BLEND
        init = share * carried.image + (1 - share) * to_float(own)
        plan = Plan(
            init=to_tensor(init),
            iterations=self.video.iterations_next,
            patience=self.video.patience_next,
            evaluations=self.video.evaluations_next,
            extra_terms=(Term("temporal", temporal_loss(carried), self.video.temporal_weight),),
        )
        return frame_and_stats(
            self.stylizer.stylize(to_tensor(to_float(frame.rgb)), plan), frame.rgb.dtype
        )

    def flows_to(self, frame: Frame, index: int, item: Earlier) -> tuple[np.ndarray, np.ndarray]:
        """(backward, forward) flows between this frame and a long-term one; from the work folder
        when there."""
        path = flow_path(self.work_dir, index, item.index) if self.work_dir else None
        flows = read_flows(path) if path else None
        if flows is None:
            backward, forward = (
                self.flows.flow(frame, item.frame),
                self.flows.flow(item.frame, frame),
            )
            if not path:
                return backward, forward
            write_flows(path, backward, forward)
            flows = read_flows(path)  # what the cache holds (float16), as a resumed run will see it
        return flows

    def carry_earlier(self, frame: Frame, index: int, item: Earlier) -> WarpedPrevious:
        """A long-term frame's result warped onto this one."""
        return self.warped(
            to_float(item.result), frame, item.frame, *self.flows_to(frame, index, item)
        )

    def warped(
        self,
        result: np.ndarray,
        frame: Frame,
        earlier: Frame,
        backward: np.ndarray,
        forward: np.ndarray,
    ) -> WarpedPrevious:
        """An earlier result carried onto `frame`, vouched for where the flows agree (and, with
        --photo-check, where the earlier input carried along them looks like this one)."""
        carried = warp_along(result, backward, forward)
        if not self.video.photo_check:
            return carried
        return WarpedPrevious(carried.image, carried.mask * looks_alike(frame, earlier, backward))

    def carried(self, index: int) -> Curvature | None:
        """Frame t-1's curvature when carrying is on: in memory, or saved in the work folder by
        the run that made t-1."""
        if not self.video.carry_curvature:
            return None
        if self.curvature is not None and self.curvature[0] == index - 1:
            return self.curvature[1]
        path = curvature_path(self.work_dir, index - 1) if self.work_dir else None
        return torch.load(path, weights_only=False) if path and path.is_file() else None

    def keep_curvature(self, index: int, result: Result) -> None:
        """Keep this frame's curvature for frame t+1 (saved before the frame itself, so that a
        resume finds it)."""
        if not self.video.carry_curvature or result.curvature is None:
            return
        curvature = result.curvature
        curvature = Curvature(
            curvature.scale,
            curvature.size,
            [x.detach().cpu() for x in curvature.steps[-CARRIED_PAIRS:]],
            [x.detach().cpu() for x in curvature.changes[-CARRIED_PAIRS:]],
        )
        self.curvature = (index, curvature)
        if self.work_dir:
            write_curvature(curvature_path(self.work_dir, index), curvature)
            # t-1's stays until t's frame is written
            curvature_path(self.work_dir, index - 2).unlink(missing_ok=True)

    def key_before(self, index: int, previous: tuple[Frame, np.ndarray]) -> Key | None:
        """Frame t-1's key (--hold-still): in memory, or saved in the work folder by the run that
        made t-1; where neither has it (t-1 opened the shot from elsewhere), t-1's own result and
        input."""
        if self.video.hold_still <= 0:
            return None
        if self.key is not None and self.key[0] == index - 1:
            return self.key[1]
        path = key_path(self.work_dir, index - 1) if self.work_dir else None
        if path and path.is_file():
            with np.load(path) as data:
                return Key(data["result"], data["source"], data["age"])
        return Key.settled(previous[1], previous[0].rgb)

    def keep_key(self, index: int, key: Key) -> None:
        """Saved before the frame itself, as the curvature is, so that a resume finds it."""
        self.key = (index, key)
        if self.work_dir:
            buffer = io.BytesIO()
            np.savez(buffer, result=key.result, source=key.source, age=key.age)
            write_atomically(key_path(self.work_dir, index), buffer.getvalue())
            key_path(self.work_dir, index - 2).unlink(missing_ok=True)

    def cold_start(self, content: np.ndarray) -> Result:
        """A frame with no warm start, the first of a shot (every frame with --video-init
        content): as a photo."""
        return self.stylizer.stylize(to_tensor(content))


class Shot:
    """The frames of the current shot that a later frame looks back at: the last
    max(temporal_frames) and, with --restore-still, the first. Results this run did not make are
    read back from the work folder."""

    def __init__(self, video: VideoSettings, work_dir: Path):
        self.offsets, self.anchor, self.work_dir = (
            sorted(video.temporal_frames),
            video.restore_still,
            work_dir,
        )
        self.recent: deque[list] = deque(maxlen=max(self.offsets))
        self.first: list | None = None

    def cut(self) -> None:
        self.recent.clear()
        self.first = None

    def add(self, index: int, frame: Frame, result: np.ndarray | None) -> None:
        entry = [index, frame, result]
        self.recent.append(entry)
        self.first = self.first or entry

    def earlier(self, index: int) -> list[Earlier]:
        """The long-term frames of frame `index` (t-2 and before), closest first."""
        by_index = {entry[0]: entry for entry in self.recent}
        wanted = [index - k for k in self.offsets if k > 1 and index - k in by_index]
        entries = [by_index[i] for i in wanted]
        if (
            self.anchor
            and self.first is not None
            and self.first[0] < index - 1
            and self.first[0] not in wanted
        ):
            entries.append(self.first)
        for entry in entries:
            if entry[2] is None:
                entry[2] = read_frame(frame_path(self.work_dir, entry[0]))
        return [Earlier(i, frame, result, anchor=i not in wanted) for i, frame, result in entries]


@dataclass
class Stillness:
    """How the input at each pixel changed since its key's source (--hold-still)."""

    # H x W bool: the content looks as it did (the light may have changed a little)
    unchanged: np.ndarray
    light: np.ndarray  # H x W x 3 float: the change of light there, which a held pixel follows


def compare_to_key(
    frame: Frame, source: np.ndarray, change: float, light_limit: float = HOLD_LIGHT_LIMIT
) -> Stillness:
    """Content and light apart: a slow shadow or the camera's exposure is a change of light, carried
    onto held pixels as it is, so that they follow it without being repainted (counted as content, a
    shadow crossing a wall would let a fifth of the still pixels go, to wander); what the blurred
    input changed beyond that is content. The light is taken from unchanged content
    only, so that something passing does not light up the still pixels around it. A pixel is
    unchanged while its content differs by less than `change` (mean RGB) and its light by less than
    `light_limit`. `source`: the input frame the result was made from (a key's, the shot's
    first)."""
    difference = to_float(frame.rgb) - to_float(source)
    blurred = cv2.GaussianBlur(difference, (0, 0), HOLD_BLUR)

    def same_content(light: np.ndarray) -> np.ndarray:
        return np.abs(blurred - light).mean(axis=2) < change

    # light guessed from every pixel
    rough = same_content(cv2.GaussianBlur(difference, (0, 0), HOLD_LIGHT_BLUR)).astype(np.float32)
    share = cv2.GaussianBlur(rough, (0, 0), HOLD_LIGHT_BLUR)[..., None]
    light = np.where(
        share > 0.05,
        cv2.GaussianBlur(difference * rough[..., None], (0, 0), HOLD_LIGHT_BLUR)
        / np.maximum(share, 0.05),
        0.0,
    )
    unchanged = same_content(light) & (np.abs(light).mean(axis=2) < light_limit)
    return Stillness(unchanged, light.astype(np.float32))


def hold_weight(unchanged: np.ndarray, key: Key) -> np.ndarray:
    """H x W in [0, 1]: 1 on unchanged pixels that have settled, the mask's edges softened."""
    return cv2.GaussianBlur(
        (unchanged & (key.age >= HOLD_SETTLE)).astype(np.float32), (0, 0), MASK_BLUR_SIGMA
    )


def hold_of(key: Key, held: np.ndarray, still: Stillness) -> Hold | None:
    """What held pixels show: their key's result in this frame's light."""
    if not held.any():
        return None
    image = np.clip(to_float(key.result) + still.light, 0.0, 1.0)
    return Hold(to_tensor(image), torch.from_numpy(held)[None, None])


def restored(carried: WarpedPrevious, frame: Frame, first: Earlier) -> WarpedPrevious:
    """Frame t-1's result carried onto this frame (a still camera), with the shot's first result, in
    the camera's current exposure, where the flow cannot vouch for a pixel and the input looks as it
    did then; the temporal loss then holds it there. Otherwise the pixels something passing leaves
    start from the content with a later frame's few evaluations, and the temporal loss keeps that
    half-painted look for hundreds of frames (a trail). Only pixels the flow cannot vouch for are
    restored: restoring every such-looking pixel flickers (warping error at k=1 about 9x the
    input's)."""
    # every pixel vouched for: nothing to restore, and no comparison to make
    if carried.mask.min() >= 1.0:
        return carried
    still = compare_to_key(frame, first.frame.rgb, RESTORE_CHANGE, light_limit=np.inf)
    # the camera's exposure is followed; a local change of light as large is content (a smooth red
    # car body on grey ground)
    exposure = np.median(still.light.reshape(-1, 3), axis=0)
    unchanged = (
        still.unchanged
        & (np.abs(still.light - exposure).mean(axis=2) < HOLD_LIGHT_LIMIT)
        & (np.abs(exposure).mean() < RESTORE_LIGHT_LIMIT)
    )
    weight = (1 - carried.mask) * cv2.GaussianBlur(
        unchanged.astype(np.float32), (0, 0), MASK_BLUR_SIGMA
    )
    image = (
        weight[..., None] * np.clip(to_float(first.result) + still.light, 0.0, 1.0)
        + (1 - weight[..., None]) * carried.image
    )
    return WarpedPrevious(image.astype(np.float32), np.maximum(carried.mask, weight))


def held_pixels(key: Key | None, still: Stillness | None) -> tuple[np.ndarray | None, Hold | None]:
    """The hold weight of a later frame and what the engine keeps (None, None: nothing to hold)."""
    if key is None or still is None:
        return None, None
    held = hold_weight(still.unchanged, key)
    return held, hold_of(key, held, still)


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


def write_curvature(path: Path, curvature: Curvature) -> None:
    """Serialized in memory first: torch.save into a file on a full disk says only "unexpected
    pos"."""
    buffer = io.BytesIO()
    torch.save(curvature, buffer)
    write_atomically(path, buffer.getvalue())


def temporal_loss(target: WarpedPrevious) -> TemporalLoss:
    return TemporalLoss(to_tensor(target.image), torch.from_numpy(target.mask)[None, None])


def stylize_frames(
    frames: Iterable[np.ndarray],
    frame_stylizer: FrameStylizer,
    work_dir: Path,
    video: VideoSettings,
    total: int,
    on_frame: FrameCallback | None = None,
) -> FramesDone:
    """Stylize frames in order into `work_dir`, one atomic PNG each; frames already there are kept.

    Frame t starts from frame t-1's result, which is exactly its lossless PNG: kept in memory, and
    read back only when an earlier run made it, so a resumed run computes what an uninterrupted one
    would (the long-term flows and the carried curvature are kept in the work folder for the same
    reason). A scene cut starts the next frame cold.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    done, shot = FramesDone(0, 0, []), Shot(video, work_dir)
    with FrameLog(work_dir) as frame_log:
        frame_log.write(
            {
                "run": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "precision": frame_stylizer.stylizer.precision.reason,
            }
        )
        previous: Frame | None = None
        previous_out: np.ndarray | None = None  # t-1's result when this run made it
        for index, rgb in enumerate(frames):
            frame = Frame(rgb)
            done.count = index + 1
            cut = previous is not None and is_cut(previous, frame, video.scene_threshold)
            if cut:
                done.cuts.append(index)
                shot.cut()
            warm_from = None if previous is None or cut else previous
            path = frame_path(work_dir, index)
            if path.is_file():
                report = FrameReport(
                    index, total, frame_stylizer.is_cold(warm_from), cut, skipped=True
                )
                previous_out = None
            else:
                if warm_from is not None and previous_out is None:
                    previous_out = read_frame(frame_path(work_dir, index - 1))
                previous_out, stats = frame_stylizer(
                    frame,
                    None if warm_from is None else (warm_from, previous_out),
                    index,
                    shot.earlier(index),
                )
                report = FrameReport(
                    index, total, frame_stylizer.is_cold(warm_from), cut, False, **stats
                )
                # logged before the frame lands, so that every frame on disk has its line (a kill
                # between the two
                # leaves a line for a frame the rerun makes again; readers take a frame's last line)
                frame_log.write({"frame": index, "cold": report.cold, "cut": cut, **stats})
                write_frame(path, previous_out)
                drop_flows(work_dir, index - 1)
                done.computed += 1
            shot.add(index, frame, previous_out)
            if on_frame:
                on_frame(report)
            previous = frame
    return done
