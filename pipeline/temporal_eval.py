"""`stylize eval-temporal`: how much a stylized video flickers and drifts, beside its input.

Short term: the warping error between frames t and t-1 (flow and occlusions from the input).
Long term: the same against frame t-k (flow computed directly between t and t-k), and the
static background (pixels whose input barely changes over the clip): how far its mean colour
moves away from the first frames (drift), and how much it differs between frames t and t-k.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.temporal import Frame, flow_estimator, to_float, warping_error
from pipeline.sources import open_reader, probe

# a static pixel's blurred grey input stays within this range over the clip (57 % of
# bottle-detection's 300 first frames at 256 px; 8/255: 6 %)
STATIC_RANGE = 16 / 255
FIRST_FRAMES = 5  # drift is measured against the mean of these


@dataclass
class TemporalFigures:
    """Errors are masked mean squared differences of values in [0, 1]; (output, input) pairs."""

    frames: int
    # k -> errors against frame t-k
    warping: dict[int, tuple[float, float]] = field(default_factory=dict)
    static_share: float = 0.0  # of the pixels
    # k -> static pixels, t vs t-k
    static_difference: dict[int, tuple[float, float]] = field(default_factory=dict)
    # % of the range: the static background's largest mean-colour change
    drift: tuple[float, float] = (0.0, 0.0)

    def ratio(self, k: int) -> float:
        output, source = self.warping[k]
        return output / source if source > 0 else float("inf")


def static_mask(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Pixels whose blurred grey input stays within STATIC_RANGE over the clip (from running min
    and max)."""
    return (high - low) <= STATIC_RANGE


def _blurred_grey(frame: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(Frame(frame).grey, (5, 5), 0).astype(np.float32) / 255.0


class _Pairs:
    """Input and output frames in order; each k's errors against frame t-k."""

    def __init__(self, offsets: tuple[int, ...], static: np.ndarray, flow: str = "dis"):
        self.offsets, self.static = offsets, static
        self.recent: deque[tuple[Frame, np.ndarray, np.ndarray]] = deque(maxlen=max(offsets) + 1)
        self.flows = flow_estimator(flow)
        self.warping = {k: ([], []) for k in offsets}
        self.static_diff = {k: ([], []) for k in offsets}
        self.means: tuple[list, list] = ([], [])

    def add(self, frame_in: np.ndarray, frame_out: np.ndarray) -> None:
        frame, image_in, image_out = Frame(frame_in), to_float(frame_in), to_float(frame_out)
        self.recent.append((frame, image_in, image_out))
        for k in self.offsets:
            if len(self.recent) <= k:
                continue
            earlier, earlier_in, earlier_out = self.recent[-1 - k]
            flows = self.flows.pair(frame, earlier, neighbours=k == 1)
            self.warping[k][0].append(warping_error(image_out, earlier_out, flows))
            self.warping[k][1].append(warping_error(image_in, earlier_in, flows))
            for which, (now, then) in enumerate(((image_out, earlier_out), (image_in, earlier_in))):
                self.static_diff[k][which].append(
                    float(((now - then)[self.static] ** 2).mean()) if self.static.any() else 0.0
                )
        for which, image in enumerate((image_out, image_in)):
            self.means[which].append(
                image[self.static].mean(axis=0) if self.static.any() else np.zeros(3)
            )

    def figures(self) -> TemporalFigures:
        figures = TemporalFigures(len(self.means[0]), static_share=float(self.static.mean()))
        mean = lambda values: float(np.mean(values)) if values else 0.0  # noqa: E731
        for k in self.offsets:
            figures.warping[k] = (mean(self.warping[k][0]), mean(self.warping[k][1]))
            figures.static_difference[k] = (
                mean(self.static_diff[k][0]),
                mean(self.static_diff[k][1]),
            )
        figures.drift = tuple(_drift(np.array(means)) for means in self.means)
        return figures


def _drift(means: np.ndarray) -> float:
    """Largest change of the mean colour (any channel) from the first frames' mean, in % of the
    range."""
    if len(means) == 0:
        return 0.0
    reference = means[:FIRST_FRAMES].mean(axis=0)
    return float(np.abs(means - reference).max() * 100)


def static_background(
    source: Path, size: tuple[int, int], max_frames: int | None = None
) -> np.ndarray | None:
    """Pixels of `source` (decoded at `size`) whose blurred grey stays within STATIC_RANGE over the
    frames; None when no frame decodes."""
    low = high = None
    with open_reader(probe(Path(source)), size) as frames_in:
        for frame_in in frames_in.frames(max_frames):
            grey = _blurred_grey(frame_in)
            low = grey if low is None else np.minimum(low, grey)
            high = grey if high is None else np.maximum(high, grey)
    return None if low is None else static_mask(low, high)


def temporal_figures(
    source: Path,
    output: Path,
    max_frames: int | None = None,
    offsets: tuple[int, ...] = (1, 10, 30),
    flow: str = "dis",
) -> TemporalFigures:
    """Short- and long-term figures of `output` against `source` (decoded twice: the static mask
    needs the whole clip first), judged with `flow` (a name of `temporal.FLOWS`)."""
    flow_estimator(flow)  # a wrong name before the decoding
    source_info, output_info = probe(Path(source)), probe(Path(output))
    size = (output_info.width, output_info.height)
    static = static_background(source, size, max_frames)
    if static is None:
        return TemporalFigures(0)
    pairs = _Pairs(tuple(sorted(set(offsets))), static, flow)
    with open_reader(source_info, size) as frames_in, open_reader(output_info, size) as frames_out:
        for frame_in, frame_out in zip(frames_in.frames(max_frames), frames_out.frames(max_frames)):
            pairs.add(frame_in, frame_out)
    return pairs.figures()


def still_pixels(frames: Sequence[np.ndarray]) -> np.ndarray:
    """The static background of frames in memory (see static_background)."""
    greys = [_blurred_grey(frame) for frame in frames]
    return static_mask(np.min(greys, axis=0), np.max(greys, axis=0))


def figures_of_frames(
    inputs: list[np.ndarray],
    outputs: list[np.ndarray],
    offsets: tuple[int, ...] = (1, 10, 30),
    flow: str = "dis",
) -> TemporalFigures:
    """The same figures for frames in memory (input frames and their stylized versions, in order),
    judged with `flow` (a name of `temporal.FLOWS`)."""
    if not inputs:
        return TemporalFigures(0)
    pairs = _Pairs(tuple(sorted(set(offsets))), still_pixels(inputs), flow)
    for frame_in, frame_out in zip(inputs, outputs):
        pairs.add(frame_in, frame_out)
    return pairs.figures()


def temporal_errors(source: Path, output: Path, max_frames: int | None = None) -> dict[str, float]:
    """The short-term warping error of `output` and of `source` itself."""
    figures = temporal_figures(source, output, max_frames, offsets=(1,))
    output_error, input_error = figures.warping[1]
    return {"output": output_error, "input": input_error, "frames": figures.frames}
