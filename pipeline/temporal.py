"""Temporal coherence for video (Ruder, Dosovitskiy, Brox 2016): optical flow, warping,
forward-backward consistency, scene cuts, and the warping-error metric.

Images are H x W x 3 float32 RGB numpy arrays in [0, 1] (or uint8); input frames that the flow
or the cut check looks at come as `Frame`, which makes their grey version once. OpenCV does the
flow (DIS) and the warping (remap).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from pipeline.errors import SettingsError
from pipeline.tuning import (
    CAMERA_FIT,
    CAMERA_FIT_PX,
    CAMERA_PRIOR_RESPONSE,
    CAMERA_PRIOR_SHIFT,
    LIGHT_BLUR,
    LIGHT_OUTLIER,
    MASK_BLUR,
    MIN_FIT_POINTS,
    MOTION_EDGE,
    PHOTO_BLUR,
    PHOTO_CHANGE,
    STILL_BLUR,
    STILL_CAMERA,
    STILL_MARGIN,
    STILL_SHIFT_GAIN,
    STILL_WORSE,
    TEXTURE_BLUR,
)


def grey(frame: np.ndarray) -> np.ndarray:
    """8-bit grey, what the flow and the cut check look at (also of 16-bit frames)."""
    frame = frame if frame.dtype == np.uint8 else from_float(to_float(frame), np.uint8)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


class Frame:
    """An input frame with its grey version made once: the cut check and both flow directions use
    it."""

    def __init__(self, rgb: np.ndarray):
        self.rgb = rgb

    @cached_property
    def grey(self) -> np.ndarray:
        return grey(self.rgb)


class FlowEstimator:
    """DIS optical flow; one instance per video (it keeps its buffers).

    `still` (camera-aware): where the camera's own motion (none for a still camera) matches the
    frames as well as DIS's flow, the flow is the camera's (`follow_camera`). On a flat area DIS
    reports a few tenths of a pixel of motion, now and then several pixels; the stylized strokes
    there have texture that the input lacks, so results warped by it blur and wander (a long
    shot's strokes fade, a pan's sky smears), and the warping error counts it as flicker."""

    def __init__(
        self,
        preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        still: bool = True,
        finest_scale: int | None = None,
    ):
        """`finest_scale`: DIS's finest pyramid level (None: the preset's; 0, full resolution,
        follows fast motion better at about 3x the time: make bench-motion)."""
        self.still, self.settings = still, (preset, still, finest_scale)
        # a DIS that was once given an initial flow keeps using it: the guided one is separate
        self.dis, self.guided = (cv2.DISOpticalFlow_create(preset) for _ in range(2))
        if finest_scale is not None:
            for dis in (self.dis, self.guided):
                dis.setFinestScale(finest_scale)

    def twin(self) -> FlowEstimator:
        """An estimator with the same settings and buffers of its own (for another thread)."""
        return FlowEstimator(*self.settings)

    def pair(self, frame: Frame, earlier: Frame, neighbours: bool = False) -> FlowPair:
        """The flows between `frame` and an earlier frame in both directions, and one verdict on
        whether the camera stood still between them (judged on the backward flow, see
        `camera_still`), which both directions and every later step share. `neighbours`: the two
        frames follow each other."""
        shift = camera_shift(frame.grey, earlier.grey)  # the other direction's is its negative
        backward = self.flow(frame.grey, earlier.grey, shift)
        forward = self.flow(earlier.grey, frame.grey, None if shift is None else -shift)
        still = camera_still(backward, frame.grey, earlier.grey, neighbours)
        if self.still:
            backward = follow_camera(backward, frame.grey, earlier.grey, still)
            forward = follow_camera(forward, earlier.grey, frame.grey, still)
        return FlowPair(backward, forward, still)

    def flow(self, source: np.ndarray, target: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
        """DIS's flow from grey `source` to `target`. Where the whole picture moved by a `shift`
        (`camera_shift`: a fast pan), DIS also starts from it, and the flow that matches better is
        taken: its pyramid alone loses a shift of 30 px at 256 px (1.5 px of error against 0.01 px
        from the shift; `make bench-motion`)."""
        plain = self.dis.calc(source, target, None)
        if shift is None:
            return plain
        guided = self.guided.calc(source, target, np.tile(shift, (*source.shape, 1)))
        return guided if misfit(guided, source, target) < misfit(plain, source, target) else plain


class FarnebackFlow:
    """OpenCV's Farneback flow over a deep pyramid: an estimator independent of DIS, to judge a
    result with another flow than the one that made it (Lai et al. 2018 judge with a flow other
    than the method's)."""

    def pair(self, frame: Frame, earlier: Frame, neighbours: bool = False) -> FlowPair:
        backward, forward = farneback(frame.grey, earlier.grey), farneback(earlier.grey, frame.grey)
        return FlowPair(
            backward, forward, camera_still(backward, frame.grey, earlier.grey, neighbours)
        )


def farneback(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """H x W x 2: for each pixel of the grey `source`, where it lies in `target` (a 21 px window
    and a 7 px polynomial: a third of the error of OpenCV's example settings on fine texture)."""
    return cv2.calcOpticalFlowFarneback(
        source,
        target,
        None,
        pyr_scale=0.5,
        levels=5,
        winsize=21,
        iterations=5,
        poly_n=7,
        poly_sigma=1.5,
        flags=0,
    )


class RaftFlow:
    """torchvision's RAFT-small (`raft_flow`): a learned estimator to judge a result with, where
    the user can have its weights."""

    def __init__(self, pretrained: bool = True):
        from pipeline.raft_flow import load_raft  # torchvision: only this judge needs it

        self.model = load_raft(pretrained)

    def pair(self, frame: Frame, earlier: Frame, neighbours: bool = False) -> FlowPair:
        from pipeline.raft_flow import raft_flow

        now, then = to_float(frame.rgb), to_float(earlier.rgb)
        backward, forward = raft_flow(self.model, now, then), raft_flow(self.model, then, now)
        return FlowPair(
            backward, forward, camera_still(backward, frame.grey, earlier.grey, neighbours)
        )


# the flows a result can be judged with: the tool's own, DIS without the camera's (follow_camera),
# and independent estimators (RAFT: learned, where its weights can be had)
FLOWS = {
    "dis": FlowEstimator,
    "dis-raw": lambda: FlowEstimator(still=False),
    "farneback": FarnebackFlow,
    "raft": RaftFlow,
}


def flow_estimator(name: str) -> FlowEstimator | FarnebackFlow:
    if name not in FLOWS:
        raise SettingsError(f"--flow {name}: use one of {', '.join(FLOWS)}")
    return FLOWS[name]()


@dataclass
class FlowPair:
    """The flows between frame t and an earlier frame s."""

    backward: np.ndarray  # H x W x 2: for each pixel of t, where it lies in s
    forward: np.ndarray  # H x W x 2: for each pixel of s, where it lies in t
    camera_still: bool  # the camera did not move between the two

    def in_half_precision(self) -> FlowPair:
        """Both flows rounded to float16, as the long-term terms take them (a flow needs no more;
        tests/test_same_outputs.py holds the frames to it)."""
        return FlowPair(
            self.backward.astype(np.float16).astype(np.float32),
            self.forward.astype(np.float16).astype(np.float32),
            self.camera_still,
        )


def camera_shift(source: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    """The shift (x, y) that carries the grey `source` onto `target` as a whole, by phase
    correlation, where it is at least CAMERA_PRIOR_SHIFT and the correlation's peak stands out
    (CAMERA_PRIOR_RESPONSE); else None. A large object crossing a still camera's frame can win the
    correlation (up to 7 px on car-detection), which the caller's comparison of fits settles."""
    window = cv2.createHanningWindow(source.shape[::-1], cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(
        source.astype(np.float32), target.astype(np.float32), window
    )
    if np.hypot(dx, dy) < CAMERA_PRIOR_SHIFT or response < CAMERA_PRIOR_RESPONSE:
        return None
    return np.array([dx, dy], np.float32)


def misfit(flow: np.ndarray, source: np.ndarray, target: np.ndarray) -> float:
    """How badly `target` carried along `flow` matches the grey `source`, changes of light aside."""
    return float(mismatch_along(flow, to_float(source), to_float(target)).mean())


def follow_camera(
    flow: np.ndarray, source: np.ndarray, target: np.ndarray, still: bool
) -> np.ndarray:
    """`flow` from grey `source` to `target` set to the camera's own motion where that explains the
    frames as well: zero for a still camera (`zero_where_unmoved`), else the shift, turn and zoom
    fitted to the flow (`camera_motion`). On a pan over tubingen.jpg, DIS's flow in the sky is
    0.3-0.6 px off and the output's warping error there 20x the input's (make bench-motion).
    Where the camera's motion matches worse or badly (an object moving on its own, what it
    uncovers), DIS's flow is kept: the camera's motion in both directions would agree with
    itself, and the forward-backward check could not find the occlusion. The two are compared by
    `mismatch_at_edges`, fair beside the object's edge. A large flat area that moves otherwise
    also matches the camera's motion, and its strokes go with the camera: an object moving on its
    own, or a near road or wall in a shot with parallax."""
    if still:
        return zero_where_unmoved(flow, source, target)
    camera = camera_motion(flow, source)
    source, target = to_float(source), to_float(target)
    along_camera = mismatch_at_edges(camera, source, target)
    fits = along_camera <= mismatch_at_edges(flow, source, target) + STILL_MARGIN
    fits &= along_camera <= CAMERA_FIT
    return np.where(fits[..., None], camera, flow).astype(np.float32)


def mismatch_at_edges(flow: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`mismatch_along`, made fair beside the edge of an object that moves otherwise: a pixel's
    difference counts up to LIGHT_OUTLIER, only pixels within LIGHT_OUTLIER of the frame's median
    change of light set the light, and each pixel takes the best match within MOTION_EDGE px.
    Blurred over the edge, the object's mismatch would make the camera's right motion lose to
    DIS's flow, which smears the object's motion up to 9 px into the ground around it."""
    difference = source - warp(target, flow)
    matched = (np.abs(difference - np.median(difference)) < LIGHT_OUTLIER).astype(np.float32)
    share = cv2.GaussianBlur(matched, (0, 0), LIGHT_BLUR)
    light = cv2.GaussianBlur(difference * matched, (0, 0), LIGHT_BLUR) / np.maximum(share, 1e-3)
    capped = np.minimum(np.abs(difference - light), LIGHT_OUTLIER)
    blurred = cv2.GaussianBlur(capped, (0, 0), STILL_BLUR)
    return cv2.erode(blurred, np.ones((2 * MOTION_EDGE + 1,) * 2, np.uint8))


def zero_where_unmoved(flow: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`flow` set to zero where `target` matches `source` in place (grey, blurred) within
    STILL_MARGIN of how well it matches along the flow, changes of light set aside: on a smooth wall
    a shadow or the exposure moving would otherwise be matched best by a shift of several pixels.
    Only for a still camera: where it moves, a flat area (a clear sky) matches in place as well as
    anywhere, and its strokes must move with the rest of the picture."""
    source, target = to_float(source), to_float(target)
    in_place, moved = mismatch(source - target), mismatch_along(flow, source, target)
    return np.where((in_place <= moved + STILL_MARGIN)[..., None], 0.0, flow).astype(np.float32)


def mismatch_along(flow: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`mismatch` of the grey float `source` and `target` carried along `flow` onto it."""
    return mismatch(source - warp(target, flow))


def mismatch(difference: np.ndarray) -> np.ndarray:
    """How badly two grey frames match at each pixel: their difference with the change of light
    set aside, blurred over STILL_BLUR."""
    return cv2.GaussianBlur(
        np.abs(difference - cv2.GaussianBlur(difference, (0, 0), LIGHT_BLUR)), (0, 0), STILL_BLUR
    )


def camera_still(
    flow: np.ndarray, source: np.ndarray, target: np.ndarray, neighbours: bool = False
) -> bool:
    """The camera did not move between two grey frames: the flow's median displacement is under
    STILL_CAMERA, or moving the whole frame as the camera would have (`camera_motion`) explains
    less than STILL_SHIFT_GAIN of how the frames differ. DIS spreads a large moving object's motion
    over the flat ground around it (a median of 0.3-0.8 px while cars cross car-detection's still
    frame), which the median alone would take for a pan; a pan's, zoom's or turn's motion explains
    most of the difference (0.1-0.7 of it left).

    `neighbours` (consecutive frames): also still where the camera's motion makes STILL_WORSE of
    the pixels it changes match worse. A large object's shift worsens the textured ground behind it
    (14-52 % of the pixels on car-detection), a pan's next to none (at most 5 % over tubingen.jpg).
    Only for neighbours: further apart, the flow is rougher and its fit worsens up to 36 %."""
    median = np.median(flow.reshape(-1, 2), axis=0)
    if np.hypot(*median) <= STILL_CAMERA:
        return True
    source, target = to_float(source), to_float(target)
    in_place, moved = (
        mismatch(source - target),
        mismatch_along(camera_motion(flow), source, target),
    )
    if moved.mean() >= (1 - STILL_SHIFT_GAIN) * in_place.mean():
        return True
    if not neighbours:
        return False
    better, worse = (
        np.count_nonzero(moved < in_place - STILL_MARGIN),
        np.count_nonzero(moved > in_place + STILL_MARGIN),
    )
    return worse > 0 and worse >= STILL_WORSE * (better + worse)


def camera_motion(flow: np.ndarray, grey: np.ndarray | None = None) -> np.ndarray:
    """The flow a moving camera alone would make: a shift, turn and zoom fitted robustly (RANSAC,
    1 px) to `flow` on a grid of every 8th pixel, so that objects moving on their own do not bend
    it. A shift alone (the flow's median) takes a zoom with a turn for a still camera.

    With `grey` (the frame the flow starts from), the fit is refined on the more textured half of
    the points it holds to, within CAMERA_FIT_PX: on flat areas DIS's flow is tenths of a pixel
    off, which tilted the fit by 0.15-0.3 px over a pan's sky. The still-camera verdict
    (`camera_still`) takes the first fit, which it was tuned on."""
    height, width = flow.shape[:2]
    ys, xs = (grid.ravel() for grid in np.mgrid[4:height:8, 4:width:8])
    points = np.stack([xs, ys], axis=1).astype(np.float32)
    moved = points + flow[ys, xs]
    affine, holds = cv2.estimateAffinePartial2D(
        points, moved, method=cv2.RANSAC, ransacReprojThreshold=1.0
    )
    if affine is None:  # too few points to fit: the median shift
        return np.broadcast_to(np.median(flow.reshape(-1, 2), axis=0), flow.shape).astype(
            np.float32
        )
    if grey is not None:
        affine = refined(affine, points, moved, holds.ravel() > 0, texture_of(grey)[ys, xs])
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    whole = [affine[row, 0] * grid_x + affine[row, 1] * grid_y + affine[row, 2] for row in (0, 1)]
    return np.dstack([whole[0] - grid_x, whole[1] - grid_y]).astype(np.float32)


def refined(
    affine: np.ndarray,
    points: np.ndarray,
    moved: np.ndarray,
    holds: np.ndarray,
    texture: np.ndarray,
) -> np.ndarray:
    """The camera's fit again on the more textured half of the points it `holds` to (refitting
    only those, a textured crossing object cannot take it over from a flat still ground)."""
    textured = holds & (texture >= np.median(texture[holds]))
    if np.count_nonzero(textured) < MIN_FIT_POINTS:
        return affine
    again, _ = cv2.estimateAffinePartial2D(
        points[textured], moved[textured], method=cv2.RANSAC, ransacReprojThreshold=CAMERA_FIT_PX
    )
    return affine if again is None else again


def texture_of(grey: np.ndarray) -> np.ndarray:
    """How much detail a grey frame has around each pixel: its gradient's size, blurred."""
    grey = grey.astype(np.float32)
    size = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    return cv2.GaussianBlur(size, (0, 0), TEXTURE_BLUR)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample `image` at x + flow(x): with flow from frame t to t-1, brings frame t-1 onto frame
    t."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(
        np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    )
    return cv2.remap(
        image,
        grid_x + flow[..., 0],
        grid_y + flow[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def in_view(backward: np.ndarray) -> np.ndarray:
    """1 where x + flow(x) lands inside the earlier frame, else 0: there the warp only repeats the
    earlier frame's border, and both flows agree on it, so the consistency check vouches for it."""
    height, width = backward.shape[:2]
    xs = np.arange(width, dtype=np.float32)[None, :] + backward[..., 0]
    ys = np.arange(height, dtype=np.float32)[:, None] + backward[..., 1]
    inside = (xs >= 0) & (xs <= width - 1) & (ys >= 0) & (ys <= height - 1)
    return inside.astype(np.float32)


def seen_only(carried: Carried, backward: np.ndarray) -> Carried:
    """`carried`, vouched for only where the earlier frame saw the pixel (`in_view`)."""
    return Carried(carried.image, carried.mask * in_view(backward))


def consistency_mask(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """1 where the flow t->t-1 and t-1->t agree (Ruder et al., eq. 6-7), 0 at disocclusions and
    motion edges.

    `backward`: flow from frame t to t-1; `forward`: flow from t-1 to t.
    """
    forward_at = warp(forward, backward)  # the forward flow, seen from frame t
    du, dv = np.gradient(backward[..., 0]), np.gradient(backward[..., 1])
    return flows_agree(backward, forward_at, du, dv).astype(np.float32)


def flows_agree(backward, forward_at, du, dv):
    """The check's test, for numpy arrays and torch tensors alike (device_warp's): no
    disocclusion (the two flows cancel out) and no motion edge (the flow's gradient is small).
    `forward_at`: the forward flow warped onto frame t; `du`, `dv`: the gradients (rows, columns)
    of the backward flow's two components."""
    sum_sq = ((backward + forward_at) ** 2).sum(axis=2)
    disoccluded = sum_sq > 0.01 * ((backward**2).sum(axis=2) + (forward_at**2).sum(axis=2)) + 0.5
    gradient_sq = du[0] ** 2 + du[1] ** 2 + dv[0] ** 2 + dv[1] ** 2
    motion_edge = gradient_sq > 0.01 * (backward**2).sum(axis=2) + 0.002
    return ~(disoccluded | motion_edge)


@dataclass
class Carried:
    """A result carried onto this frame, and where it can be trusted."""

    image: np.ndarray  # H x W x 3 float
    mask: np.ndarray  # H x W in [0, 1]: 1 where the flow (and any later check) vouches for a pixel


def carry(result: np.ndarray, flows: FlowPair) -> Carried:
    """An earlier result warped onto this frame, vouched for where the two flows agree."""
    return Carried(warp(result, flows.backward), consistency_mask(flows.backward, flows.forward))


def chained_flows(
    first: Frame, later: Iterable[Frame], flows: FlowEstimator
) -> tuple[Frame, FlowPair]:
    """The last of `later` and the flows between it and `first` along the path a result carried
    frame by frame takes: zero where the camera stood still between every pair of neighbours (the
    still-aware flows keep a still background in place, and what moved across it is restored from
    the shot's first result), else the flows between neighbours composed. The flow between two
    frames far apart follows a hovering camera's slow drift (0.9 px over 135 frames of
    car-detection), which the path from neighbour to neighbour does not."""
    previous, still = first, True
    backward, forward = (np.zeros((*first.grey.shape, 2), np.float32) for _ in range(2))
    for frame in later:
        step = flows.pair(frame, previous, neighbours=True)
        still = still and step.camera_still
        # backward(x) = step back(x) + backward(x + step back(x));
        # forward(x) = forward(x) + step on(x + forward(x))
        backward = step.backward + warp(backward, step.backward)
        forward = forward + warp(step.forward, forward)
        previous = frame
    if still:
        return previous, FlowPair(np.zeros_like(backward), np.zeros_like(forward), True)
    return previous, FlowPair(backward, forward, False)


def looks_alike(
    difference: np.ndarray, change: float, light: np.ndarray | float = 0.0
) -> np.ndarray:
    """H x W bool: where two (blurred) RGB images whose difference is `difference` look alike: they
    differ by less than `change` (mean RGB), the change of light `light` set aside. The one test
    behind the photo check, the hold reference and the restore of a still camera's pixels."""
    return np.abs(difference - light).mean(axis=2) < change


def photo_check(frame: Frame, earlier: Frame, backward: np.ndarray) -> np.ndarray:
    """H x W in [0, 1]: 1 where the earlier input frame, carried along `backward`, looks like this
    one (both blurred by PHOTO_BLUR first: a sharp edge resampled between pixels differs by
    itself). The flows can agree and still be wrong: DIS smooths a moving car's motion over the
    flat road behind it, and warping drags the car's strokes over the road (a trail that stays)."""

    def blurred(rgb: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(to_float(rgb), (0, 0), PHOTO_BLUR)

    alike = looks_alike(warp(blurred(earlier.rgb), backward) - blurred(frame.rgb), PHOTO_CHANGE)
    return cv2.GaussianBlur(alike.astype(np.float32), (0, 0), MASK_BLUR)


def long_term(carried: list[Carried]) -> Carried:
    """One target and mask for the temporal loss from earlier results warped onto this frame,
    closest first (Ruder et al. 2018): each frame counts where its own mask holds and no closer
    frame's does, c_long_j = max(c_j - sum of the closer c_i, 0). The masks are blurred slightly.
    Since sum_j c_j (x - w_j)^2 = C (x - sum_j c_j w_j / C)^2 + const, with C = sum_j c_j, one term
    with the weighted mean target and mask C has the same gradient as the sum of terms."""
    if len(carried) == 1:
        return carried[0]
    covered = np.zeros_like(carried[0].mask)
    weighted, total = np.zeros_like(carried[0].image), np.zeros_like(carried[0].mask)
    for item in carried:
        mask = np.clip(item.mask - covered, 0.0, 1.0)
        covered = covered + item.mask
        mask = cv2.GaussianBlur(mask, (0, 0), MASK_BLUR)
        weighted += mask[..., None] * item.image
        total += mask
    image = np.where(
        total[..., None] > 1e-6, weighted / np.maximum(total, 1e-6)[..., None], carried[0].image
    )
    return Carried(image.astype(np.float32), np.clip(total, 0.0, 1.0).astype(np.float32))


def scene_change(previous_frame: Frame, frame: Frame) -> float:
    """Mean absolute difference of small, blurred grey versions, in [0, 1]: near 0 within a shot."""
    small = [
        cv2.GaussianBlur(cv2.resize(f.grey, (64, 36), interpolation=cv2.INTER_AREA), (3, 3), 0)
        for f in (previous_frame, frame)
    ]
    return float(np.abs(small[0].astype(np.float32) - small[1].astype(np.float32)).mean() / 255.0)


def is_cut(previous_frame: Frame, frame: Frame, threshold: float) -> bool:
    """A new shot starts at `frame`: the one rule for the sequential run and the cluster's cut
    scan."""
    return scene_change(previous_frame, frame) > threshold


def warping_error(image: np.ndarray, earlier_image: np.ndarray, flows: FlowPair) -> float:
    """Flicker between two frames (values in [0, 1]): the mean squared difference between `image`
    and `earlier_image` carried onto it along the input's flows, where the flows agree."""
    carried = carry(earlier_image, flows)
    mask = carried.mask[..., None]
    squared = mask * (image - carried.image) ** 2
    return float(squared.sum() / max(3.0 * mask.sum(), 1.0))


class WarpingError:
    """Flicker, measured: `warping_error` of each output frame against the one before it, along the
    input frames' flows (`flow`: a name of FLOWS).

    Feed pairs in order with `add(input_frame, output_frame)`; `value` is the mean over frame pairs.
    """

    def __init__(self, flow: str = "dis") -> None:
        self.flows = flow_estimator(flow)
        self.errors: list[float] = []
        self._previous: tuple[Frame, np.ndarray] | None = None

    def add(self, frame_in: np.ndarray, frame_out: np.ndarray) -> None:
        frame_in, frame_out = Frame(frame_in), to_float(frame_out)
        if self._previous is not None:
            flows = self.flows.pair(frame_in, self._previous[0], neighbours=True)
            self.errors.append(warping_error(frame_out, self._previous[1], flows))
        self._previous = (frame_in, frame_out)

    @property
    def value(self) -> float:
        return float(np.mean(self.errors)) if self.errors else 0.0


def to_float(frame: np.ndarray) -> np.ndarray:
    """uint8 or uint16 values (or floats) as float32 in [0, 1]."""
    if frame.dtype in (np.uint8, np.uint16):
        return frame.astype(np.float32) / np.iinfo(frame.dtype).max
    return frame.astype(np.float32)


def from_float(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float values in [0, 1] as the nearest uint8 or uint16 ones: a frame kept at its source's
    depth."""
    top = np.iinfo(dtype).max
    return np.round(np.clip(image, 0.0, 1.0) * top).astype(dtype)
