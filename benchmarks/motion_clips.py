"""Clips whose true motion is known: a real photo seen by a camera that pans, zooms and turns fast
(10-40 px a frame at 256 px), a textured object crossing the other way (occlusions), sensor noise
and motion blur; and a window moving fast over a real video. Each frame pair comes with its true
backward flow (for each pixel of frame t, where it was in frame t-1) and where that flow is valid
(not occluded, not out of view)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SIZE = (256, 144)  # width, height of the clips
BLUR_STEPS = 4  # sub-frames averaged for motion blur


@dataclass(frozen=True)
class Camera:
    """A camera's motion per frame: pan (px of the frame), zoom (factor), turn (degrees)."""

    pan: tuple[float, float] = (0.0, 0.0)
    zoom: float = 1.0
    turn: float = 0.0
    crossing: float = 0.0  # px a frame of the object crossing the other way (0: none)


@dataclass
class MotionClip:
    name: str
    frames: list[np.ndarray]  # uint8 RGB
    flows: list[np.ndarray]  # flows[t]: true backward flow of frame t (t >= 1)
    valid: list[np.ndarray]  # valid[t]: H x W bool, the true flow is defined there


def view(t: float, camera: Camera, photo_size: tuple[int, int]) -> np.ndarray:
    """2 x 3 affine map from photo coordinates to frame coordinates at time t (frames)."""
    width, height = SIZE
    scale = width / (photo_size[0] / 2)  # the view spans half the photo's width at first
    centre = (
        photo_size[0] / 2 + camera.pan[0] * t / scale,
        photo_size[1] / 2 + camera.pan[1] * t / scale,
    )
    scale *= camera.zoom**t
    rotation = cv2.getRotationMatrix2D(centre, camera.turn * t, scale)
    rotation[:, 2] += (width / 2 - centre[0], height / 2 - centre[1])
    return rotation


def inverse(affine: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(affine)


def apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ affine[:, :2].T + affine[:, 2]


def grid() -> np.ndarray:
    width, height = SIZE
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.stack([xs, ys], axis=-1)


def object_box(t: float, camera: Camera) -> tuple[float, float, int]:
    """The crossing object's top-left corner and side at time t (it enters from the right)."""
    width, height = SIZE
    side = height // 3
    return width - side - 8 - camera.crossing * t, height / 2 - side / 2, side


def render(t: float, camera: Camera, photo: np.ndarray, thing: np.ndarray) -> np.ndarray:
    """Frame t, averaged over BLUR_STEPS sub-frames of the frame's exposure."""
    width, height = SIZE
    steps = []
    for sub in np.linspace(-0.5, 0.0, BLUR_STEPS):
        affine = view(t + sub, camera, (photo.shape[1], photo.shape[0]))
        image = cv2.warpAffine(
            photo, affine, SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        if camera.crossing:
            x, y, side = object_box(t + sub, camera)
            shift = np.float32([[1, 0, x], [0, 1, y]])
            mask = cv2.warpAffine(np.ones((side, side), np.float32), shift, SIZE)[..., None]
            moved = cv2.warpAffine(cv2.resize(thing, (side, side)), shift, SIZE).astype(np.float32)
            image = mask * moved + (1 - mask) * image
        steps.append(image.astype(np.float32))
    return np.mean(steps, axis=0)


def true_flow(t: int, camera: Camera, photo_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Backward flow of frame t and where it is valid (in view at t-1, not behind the object)."""
    width, height = SIZE
    points = grid()
    before = apply(
        view(t - 1, camera, photo_size), apply(inverse(view(t, camera, photo_size)), points)
    )
    valid = (before[..., 0] >= 0) & (before[..., 0] <= width - 1)
    valid &= (before[..., 1] >= 0) & (before[..., 1] <= height - 1)
    if camera.crossing:
        x, y, side = object_box(t, camera)
        inside = _in_box(points, x, y, side)
        before[inside] = points[inside] + (camera.crossing, 0.0)
        x0, y0, _ = object_box(t - 1, camera)
        valid &= inside | ~_in_box(before, x0, y0, side)  # background hidden at t-1
    return (before - points).astype(np.float32), valid


def _in_box(points: np.ndarray, x: float, y: float, side: int) -> np.ndarray:
    inside_x = (points[..., 0] >= x) & (points[..., 0] < x + side)
    return inside_x & (points[..., 1] >= y) & (points[..., 1] < y + side)


def synthetic_clip(
    name: str, camera: Camera, photo: np.ndarray, thing: np.ndarray, count: int = 10
) -> MotionClip:
    rng = np.random.default_rng(0)
    frames, flows, valid = [], [None], [None]
    for t in range(count):
        noisy = render(t, camera, photo, thing) + rng.normal(0, 2.0, (SIZE[1], SIZE[0], 3))
        frames.append(np.clip(np.round(noisy), 0, 255).astype(np.uint8))
        if t:
            flow, ok = true_flow(t, camera, (photo.shape[1], photo.shape[0]))
            flows.append(flow)
            valid.append(ok)
    return MotionClip(name, frames, flows, valid)


def window_clip(name: str, frames: list[np.ndarray], step: tuple[int, int]) -> MotionClip:
    """A SIZE window moving `step` px a frame over a real video's frames (at least SIZE + step x
    count). The video's own motion adds to the window's, so the true flow is known where the video
    stood still: the window's step is the flow there."""
    width, height = SIZE
    crops, flows, valid = [], [None], [None]
    for t, frame in enumerate(frames):
        x, y = 8 + step[0] * t, 8 + step[1] * t
        crops.append(np.ascontiguousarray(frame[y : y + height, x : x + width]))
        if t:
            now = frame[y : y + height, x : x + width].astype(int)
            still = np.abs(now - frames[t - 1][y : y + height, x : x + width]).mean(axis=2) < 6
            flow = np.broadcast_to(np.float32(step), (height, width, 2)).copy()
            points = grid() + flow  # where each pixel was in the window at t-1
            in_view = (points[..., 0] <= width - 1) & (points[..., 1] <= height - 1)
            flows.append(flow)
            valid.append(still & in_view)
    return MotionClip(name, crops, flows, valid)
