"""--hold-still: pixels of a still background keep the result they were made with, instead
of being re-optimized every frame (where small changes add up over a long shot)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pipeline.frames
from pipeline.engine import Hold, Plan, Stylizer
from pipeline.chunks import stylize_head
from pipeline.frames import FrameStylizer
from pipeline.shot_memory import ChangeSinceReference, HoldReference, PastFrame
from pipeline.tuning import HOLD_LIGHT_LIMIT, HOLD_SETTLE
from pipeline.warm_start import change_since, hold_of, hold_weight
from pipeline.image_io import load_rgb, to_tensor
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.temporal import Frame, chained_flows, to_float
from pipeline.work_folder import frame_path, read_frame
from tests.test_long_term import resumed_after_kill

H, W = 48, 64
SQUARE = 16  # side of the moving square


@pytest.fixture
def stylizer(embedded_weights, starry_night) -> Stylizer:
    return Stylizer(
        StyleSettings(size=W, iterations=4, precision="fp32", device="cpu"),
        [load_rgb(starry_night)],
        embedded_weights,
    )


def still_background_with_a_square(frames: int = 7) -> list[np.ndarray]:
    """A still random background; a square of random blocks crosses it, 3 px a frame."""
    rng = np.random.default_rng(5)
    background = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    # blocks of 4 px
    square = np.kron(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), np.ones((4, 4, 1), np.uint8))
    clip = []
    for t in range(frames):
        frame = background.copy()
        frame[16 : 16 + SQUARE, 4 + 3 * t : 4 + 3 * t + SQUARE] = square
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
    assert (
        result.image[..., W // 2 :] - content[..., W // 2 :]
    ).abs().mean() > 0.01  # the right half was optimized
    assert result.evaluations > 1


def test_unchanged_pixels_are_held_once_settled():
    clip = still_background_with_a_square(2)
    key = HoldReference.settled(clip[0], clip[0])
    still = change_since(Frame(clip[1]), key.source, 0.03)
    unchanged = still.unchanged
    weight = hold_weight(unchanged, key)
    # the background below the square: unchanged
    assert weight[40:, :] == pytest.approx(1.0, abs=1e-3)
    assert weight[16 : 16 + SQUARE, 7 : 7 + SQUARE].mean() < 0.2  # where the square moved
    # a lamp switched on: all re-optimized
    lighter = Frame(np.clip(clip[1].astype(int) + 40, 0, 255).astype(np.uint8))
    assert change_since(lighter, key.source, 0.03).unchanged.mean() < 0.05

    after = key.after(clip[1], clip[1], still, weight)
    changed = ~unchanged
    assert changed[16 : 16 + SQUARE, 7 : 7 + SQUARE].mean() > 0.8
    assert np.array_equal(after.result[40:], clip[0][40:])  # held pixels keep their key
    fresh = weight < 0.5
    # pixels mostly free take this frame's
    assert np.array_equal(after.source[fresh], clip[1][fresh])
    assert (
        after.age[changed] == 0
    ).all()  # and wait HOLD_SETTLE unchanged frames before they are held
    y, x = 24, 14
    assert changed[y - 3 : y + 4, x - 3 : x + 4].all()
    everywhere = np.ones((H, W), bool)
    nothing_changed = ChangeSinceReference(everywhere, np.zeros((H, W, 3), np.float32))
    for _ in range(HOLD_SETTLE - 1):
        after = after.after(clip[1], clip[1], nothing_changed, hold_weight(everywhere, after))
        assert hold_weight(everywhere, after)[y, x] < 0.05
    after = after.after(clip[1], clip[1], nothing_changed, hold_weight(everywhere, after))
    assert hold_weight(everywhere, after)[y, x] == pytest.approx(1.0)


def test_a_held_pixel_follows_a_change_of_light_without_being_let_go():
    """A shadow drifting over a still wall changes the light, not the content: the wall stays held,
    and what it shows darkens with the input, its strokes kept."""
    rng = np.random.default_rng(7)
    wall = rng.integers(60, 200, (H, W, 3)).astype(np.float32)
    shade = np.linspace(0.0, 0.9 * HOLD_LIGHT_LIMIT * 255, W, dtype=np.float32)[
        None, :, None
    ]  # darker to the right
    shadowed = np.clip(wall - shade, 0, 255).astype(np.uint8)
    key = HoldReference.settled(
        rng.integers(0, 256, (H, W, 3), dtype=np.uint8), wall.astype(np.uint8)
    )
    still = change_since(Frame(shadowed), key.source, 0.03)
    assert still.unchanged.all()
    hold = hold_of(key, hold_weight(still.unchanged, key), still)
    shown = hold.image[0].permute(1, 2, 0).numpy()
    # away from the borders, where the light's blur is one-sided
    inner = (slice(8, H - 8), slice(8, W - 8))
    change, input_change = (
        shown - to_float(key.result),
        to_float(shadowed) - to_float(wall.astype(np.uint8)),
    )
    kept = (to_float(key.result) > 0.15) & (to_float(key.result) < 0.85)  # not clipped
    assert (
        np.abs(change - input_change.mean(axis=2, keepdims=True))[inner][kept[inner]].mean() < 0.01
    )
    moved = shadowed.copy()
    # something new
    moved[16:32, 20:36] = np.kron(
        rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), np.ones((4, 4, 1), np.uint8)
    )
    assert not change_since(Frame(moved), key.source, 0.03).unchanged[20:28, 24:32].any()


def test_a_moving_camera_holds_nothing(stylizer):
    """Panning over a wall with a flat band: the band looks unchanged in place, but its strokes must
    move with the picture; every pixel waits HOLD_SETTLE frames again once the camera stops."""
    rng = np.random.default_rng(4)
    scene = np.kron(
        rng.integers(0, 256, (H // 4, W // 4 + 4, 3), dtype=np.uint8), np.ones((4, 4, 1), np.uint8)
    )
    scene[-H // 4 :] = 128  # the flat band
    clip = [np.ascontiguousarray(scene[:, 2 * t : 2 * t + W]) for t in range(3)]
    frame_stylizer = FrameStylizer(
        stylizer, VideoSettings(iterations_next=2, evaluations_next=2, hold_still=0.03)
    )
    first, _ = frame_stylizer(Frame(clip[0]), None, 0)
    still_camera = change_since(Frame(clip[1]), frame_stylizer.state.reference[1].source, 0.03)
    assert still_camera.unchanged[-H // 8 :].all()  # compared in place, the band would be held
    _, stats = frame_stylizer(Frame(clip[1]), (Frame(clip[0]), first), 1)
    assert "held" not in stats
    assert not frame_stylizer.state.reference[1].age.any()


def test_a_still_background_stays_put_and_a_resumed_run_gives_the_same_frames(tmp_path, stylizer):
    clip = still_background_with_a_square()
    video = VideoSettings(
        iterations_next=4, evaluations_next=4, scene_threshold=1.0, hold_still=0.03
    )

    killed, computed = resumed_after_kill(
        tmp_path, clip, stylizer, video, kill_at=3, left="hold-*.npz"
    )
    assert computed == 3
    frames = [to_float(read_frame(frame_path(killed, i))) for i in range(len(clip))]
    below = slice(40, H)  # rows the square never reaches (its blur neither)
    assert all(np.array_equal(frames[i][below], frames[0][below]) for i in range(1, len(clip)))
    square_rows = slice(16, 16 + SQUARE)
    # the square's strokes moved on
    assert np.abs(frames[-1][square_rows] - frames[0][square_rows]).mean() > 0.02


def test_a_key_never_crosses_a_scene_cut_and_a_chunk_head_keeps_the_shots_still_pixels(
    tmp_path, stylizer
):
    clip = still_background_with_a_square(3)
    other = [
        np.ascontiguousarray(frame[::-1] // 3) for frame in clip
    ]  # a darker, flipped shot: a cut before frame 3
    video = VideoSettings(
        iterations_next=4, evaluations_next=4, scene_threshold=0.1, hold_still=0.03
    )
    frame_stylizer = pipeline.frames.FrameStylizer(stylizer, video, tmp_path)
    done = pipeline.frames.stylize_frames([*clip, *other], frame_stylizer, tmp_path, video, 6)
    assert done.cuts == [3]
    frames = [read_frame(frame_path(tmp_path, i)) for i in range(6)]
    top = slice(0, 8)  # rows the flipped square never reaches
    assert np.array_equal(frames[5][top], frames[3][top])  # held to the new shot's first result
    assert not np.array_equal(frames[3][top], frames[2][top])

    head_stylizer = pipeline.frames.FrameStylizer(stylizer, video)
    last, flows = chained_flows(
        Frame(clip[0]), (Frame(rgb) for rgb in clip[1:3]), head_stylizer.flows
    )
    head, _ = stylize_head(head_stylizer, last, PastFrame(0, Frame(clip[0]), frames[0]), flows)
    below = slice(40, H)
    # a chunk inside the shot starts with its still pixels as they were
    assert np.array_equal(head[below], frames[0][below])
