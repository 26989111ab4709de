"""--hold-still (issue 19): pixels of a still background keep the result they were made with, instead
of being re-optimized every frame (where small changes add up over a long shot)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pipeline.frames
from pipeline.engine import Hold, Plan, Stylizer
from pipeline.frames import HOLD_SETTLE, Key, hold_weight, unchanged_pixels
from pipeline.image_io import load_rgb, to_tensor
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.temporal import Frame, to_float
from pipeline.work_folder import frame_path, read_frame
from tests.test_long_term import resumed_after_kill

H, W = 48, 64
SQUARE = 16  # side of the moving square


@pytest.fixture
def stylizer(embedded_weights, starry_night) -> Stylizer:
    return Stylizer(StyleSettings(size=W, iterations=4, precision="fp32", device="cpu"), [load_rgb(starry_night)], embedded_weights)


def still_background_with_a_square(frames: int = 7) -> list[np.ndarray]:
    """A still random background; a square of random blocks crosses it, 3 px a frame."""
    rng = np.random.default_rng(5)
    background = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    square = np.kron(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), np.ones((4, 4, 1), np.uint8))  # blocks of 4 px
    clip = []
    for t in range(frames):
        frame = background.copy()
        frame[16:16 + SQUARE, 4 + 3 * t:4 + 3 * t + SQUARE] = square
        clip.append(frame)
    return clip


def test_held_pixels_keep_their_value_and_the_rest_is_optimized(stylizer):
    rng = np.random.default_rng(2)
    content = to_tensor(rng.random((H, W, 3)).astype(np.float32))
    key = to_tensor(rng.random((H, W, 3)).astype(np.float32))
    weight = torch.zeros(1, 1, H, W)
    weight[..., : W // 2] = 1.0  # the left half held
    result = stylizer.stylize(content, Plan(init=content, iterations=4, hold=Hold(key, weight)))
    assert torch.equal(result.image[..., : W // 2], key[..., : W // 2])
    assert (result.image[..., W // 2:] - content[..., W // 2:]).abs().mean() > 0.01  # the right half was optimized
    assert result.evaluations > 1


def test_unchanged_pixels_are_held_once_settled():
    clip = still_background_with_a_square(2)
    key = Key.settled(clip[0], clip[0])
    unchanged = unchanged_pixels(Frame(clip[1]), key, 0.03)
    weight = hold_weight(unchanged, key)
    assert weight[40:, :] == pytest.approx(1.0, abs=1e-3)  # the background below the square: unchanged
    assert weight[16:16 + SQUARE, 7:7 + SQUARE].mean() < 0.2  # where the square moved
    lighter = Frame(np.clip(clip[1].astype(int) + 40, 0, 255).astype(np.uint8))  # the light changed: all re-optimized
    assert unchanged_pixels(lighter, key, 0.03).mean() < 0.05

    after = key.after(clip[1], clip[1], unchanged, weight)
    changed = ~unchanged
    assert changed[16:16 + SQUARE, 7:7 + SQUARE].mean() > 0.8
    assert np.array_equal(after.result[40:], clip[0][40:])  # held pixels keep their key
    fresh = weight < 0.5
    assert np.array_equal(after.source[fresh], clip[1][fresh])  # pixels mostly free take this frame's
    assert (after.age[changed] == 0).all()  # and wait HOLD_SETTLE unchanged frames before they are held
    y, x = 24, 14
    assert changed[y - 3:y + 4, x - 3:x + 4].all()
    everywhere = np.ones((H, W), bool)
    for _ in range(HOLD_SETTLE - 1):
        after = after.after(clip[1], clip[1], everywhere, hold_weight(everywhere, after))
        assert hold_weight(everywhere, after)[y, x] < 0.05
    after = after.after(clip[1], clip[1], everywhere, hold_weight(everywhere, after))
    assert hold_weight(everywhere, after)[y, x] == pytest.approx(1.0)


def test_a_still_background_stays_put_and_a_resumed_run_gives_the_same_frames(tmp_path, stylizer):
    clip = still_background_with_a_square()
    video = VideoSettings(iterations_next=4, evaluations_next=4, scene_threshold=1.0, hold_still=0.03)

    killed, computed = resumed_after_kill(tmp_path, clip, stylizer, video, kill_at=3, left="key-*.npz")
    assert computed == 3
    frames = [to_float(read_frame(frame_path(killed, i))) for i in range(len(clip))]
    below = slice(40, H)  # rows the square never reaches (its blur neither)
    assert all(np.array_equal(frames[i][below], frames[0][below]) for i in range(1, len(clip)))
    square_rows = slice(16, 16 + SQUARE)
    assert np.abs(frames[-1][square_rows] - frames[0][square_rows]).mean() > 0.02  # the square's strokes moved on


def test_a_key_never_crosses_a_scene_cut_and_a_chunk_head_keeps_the_shots_still_pixels(tmp_path, stylizer):
    clip = still_background_with_a_square(3)
    other = [np.ascontiguousarray(frame[::-1] // 3) for frame in clip]  # a darker, flipped shot: a cut before frame 3
    video = VideoSettings(iterations_next=4, evaluations_next=4, scene_threshold=0.1, hold_still=0.03)
    frame_stylizer = pipeline.frames.FrameStylizer(stylizer, video, tmp_path)
    done = pipeline.frames.stylize_frames([*clip, *other], frame_stylizer, tmp_path, video, 6)
    assert done.cuts == [3]
    frames = [read_frame(frame_path(tmp_path, i)) for i in range(6)]
    top = slice(0, 8)  # rows the flipped square never reaches
    assert np.array_equal(frames[5][top], frames[3][top])  # held to the new shot's first result
    assert not np.array_equal(frames[3][top], frames[2][top])

    head, _ = pipeline.frames.FrameStylizer(stylizer, video).shot_head(Frame(clip[2]), (Frame(clip[0]), frames[0]))
    below = slice(40, H)
    assert np.array_equal(head[below], frames[0][below])  # a chunk inside the shot starts with its still pixels as they were
