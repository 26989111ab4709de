"""--paint-holes (the default): a wide region the warm start cannot vouch for (a fast pan's
entering strip) is painted first on a crop around it; thin ones (a slow pan's strip, an outline)
are left to the frame's own pass."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from pipeline.engine import Plan, Stylizer
from pipeline.frames import FrameStylizer, stylize_frames
from pipeline.hole_paint import Box, cropped, hole_width, large_holes, paint_holes
from pipeline.image_io import to_tensor
from pipeline.losses import TemporalLoss, Term
from pipeline.settings import VideoSettings
from pipeline.temporal import FlowEstimator, Frame
from pipeline.tuning import HOLE_MARGIN, LARGEST_HOLE
from pipeline.warm_start import WarmContext, WarmStart, carry_along_flow
from tests.conftest import small_stylizer
from tests.test_long_term import resumed_after_kill


def strip(width: int, shape=(144, 256)) -> np.ndarray:
    unvouched = np.zeros(shape, bool)
    unvouched[:, shape[1] - width :] = True
    return unvouched


def test_a_wide_strip_is_a_hole_with_a_margin_and_a_thin_one_is_not():
    assert hole_width(144, 256) == 23
    margin = round(HOLE_MARGIN * 144)
    assert large_holes(strip(36)) == [Box(0, 144, 256 - 36 - margin, 256)]
    assert large_holes(strip(20)) == []
    band = strip(36)
    band[:4] = True  # a 4-px band across the top (a pan's slight tilt) joins it: dropped
    band[60:64, :100] = True  # and an outline
    assert large_holes(band) == large_holes(strip(36))


def test_a_hole_over_most_of_the_frame_is_left_to_the_frame_itself():
    most = strip(round(256 * (LARGEST_HOLE + 0.1)))
    assert large_holes(most) == []
    two = strip(36)
    two[20:60, 40:80] = True  # an uncovered patch besides the strip: a box of its own
    boxes = sorted(large_holes(two), key=lambda box: box.left)
    assert len(boxes) == 2 and boxes[0].left == 40 - round(HOLE_MARGIN * 144)


def test_a_box_grows_to_what_vgg_can_see_inside_the_frame():
    assert Box(10, 14, 0, 60).grown_to(16, 144, 256) == Box(4, 20, 0, 60)
    assert Box(140, 144, 250, 256).grown_to(16, 144, 256) == Box(128, 144, 240, 256)
    assert Box(0, 144, 0, 256).grown_to(16, 144, 256) == Box(0, 144, 0, 256)


def test_a_cropped_temporal_term_weighs_the_same_pixels():
    rng = np.random.default_rng(3)
    target, mask = (
        torch.from_numpy(rng.random(shape, np.float32))
        for shape in ((1, 3, 40, 60), (1, 1, 40, 60))
    )
    term, box = Term("temporal", TemporalLoss(target, mask), 1e4), Box(5, 25, 30, 52)
    image = target.clone()
    image[..., 5:25, 30:52] += torch.from_numpy(rng.random((1, 3, 20, 22), np.float32))
    whole = float(term(image, {})) * 40 * 60
    part = float(cropped(term, box)(image[..., 5:25, 30:52], {})) * box.area
    assert part == pytest.approx(whole, rel=1e-5) and whole > 0


@pytest.fixture
def stylizer(embedded_weights) -> Stylizer:
    return small_stylizer(128, embedded_weights)


def style_of(stylizer: Stylizer, image: np.ndarray, content: np.ndarray) -> float:
    return stylizer.evaluate(to_tensor(image), to_tensor(content))["style"]


def test_the_hole_is_painted_towards_the_style_and_vouched_pixels_keep_their_start(
    stylizer, tubingen
):
    photo = cv2.resize(cv2.imread(str(tubingen))[..., ::-1], (128, 72), cv2.INTER_AREA)
    content = (photo / 255.0).astype(np.float32)
    start = stylizer.stylize(to_tensor(content), Plan(iterations=30)).image
    start = start[0].permute(1, 2, 0).numpy().astype(np.float32)
    mask = np.ones((72, 128), np.float32)
    mask[:, -24:] = 0  # a strip entered: it starts as the photo
    init = start.copy()
    init[:, -24:] = content[:, -24:]
    target = TemporalLoss(to_tensor(start), to_tensor(mask[..., None]))
    painted = paint_holes(stylizer, content, init, mask, [Term("temporal", target, 1e4)], 12)
    np.testing.assert_array_equal(painted[:, :-24], init[:, :-24])
    hole = np.s_[:, -24:]
    assert np.abs(painted[hole] - init[hole]).mean() > 0.02
    photo_part = np.ascontiguousarray(content[hole])
    before = style_of(stylizer, np.ascontiguousarray(init[hole]), photo_part)
    after = style_of(stylizer, np.ascontiguousarray(painted[hole]), photo_part)
    assert after < 0.7 * before, (after, before)


def test_a_wide_entering_strip_is_vouched_for_nowhere_and_a_thin_one_keeps_the_border(tubingen):
    photo = cv2.resize(cv2.cvtColor(cv2.imread(str(tubingen)), cv2.COLOR_BGR2RGB), (300, 144))
    result = np.random.default_rng(0).random((144, 256, 3)).astype(np.float32)
    entering = {}
    for step in (12, 36):
        earlier, frame = (Frame(f) for f in _window(photo, step))
        flows = FlowEstimator().pair(frame, earlier, neighbours=True)
        for paint in (0, 16):
            video = VideoSettings(paint_holes=paint, fill="content")
            context = WarmContext(frame, frame.rgb / 255.0, earlier, flows, video)
            mask = carry_along_flow(WarmStart.of(result), context).carried.mask
            entering[step, paint] = mask[:, -step + 2 :].mean()
    assert entering[36, 16] == 0.0  # painted first: not held to the repeated border
    assert entering[36, 0] > 0.5  # without, the border the warp repeats, mostly vouched for
    assert min(entering[12, 0], entering[12, 16]) > 0.9  # a thin strip keeps it


def _window(photo: np.ndarray, step: int) -> list[np.ndarray]:
    return [np.ascontiguousarray(photo[:, step * t : step * t + 256]) for t in range(2)]


def painted_crops(tmp_path, stylizer, frames, monkeypatch, **video) -> list[tuple[int, int]]:
    """The sizes of the crops a run painted before its frames' own passes."""
    crops: list[tuple[int, int]] = []
    real = Stylizer.stylize

    def spy(self, content, plan, callback=None):
        if content.shape[-2:] != frames[0].shape[:2]:
            crops.append(tuple(content.shape[-2:]))
            assert plan.style_side == max(frames[0].shape[:2])  # the frame's strokes
        return real(self, content, plan, callback)

    monkeypatch.setattr(Stylizer, "stylize", spy)
    settings = VideoSettings(**FAST, **video)
    stylize_frames(frames, FrameStylizer(stylizer, settings, tmp_path), tmp_path, settings, 3)
    return crops


FAST = {"iterations_next": 4, "evaluations_next": 4, "scene_threshold": 1.0}


def test_a_fast_pan_paints_its_strip_and_a_slow_one_or_a_still_shot_does_not(
    tmp_path, tiny_stylizer, tubingen, monkeypatch
):
    photo = cv2.resize(cv2.cvtColor(cv2.imread(str(tubingen)), cv2.COLOR_BGR2RGB), (180, 48))
    fast, slow = ([photo[:, step * t : step * t + 96] for t in range(3)] for step in (16, 3))
    crops = painted_crops(tmp_path / "fast", tiny_stylizer, fast, monkeypatch, paint_holes=4)
    assert len(crops) == 2 and all(height == 48 and width < 48 for height, width in crops)
    assert painted_crops(tmp_path / "slow", tiny_stylizer, slow, monkeypatch, paint_holes=4) == []
    still = [photo[:, :96]] * 3
    assert painted_crops(tmp_path / "still", tiny_stylizer, still, monkeypatch) == []
    assert painted_crops(tmp_path / "off", tiny_stylizer, fast, monkeypatch, paint_holes=0) == []


def test_resume_with_painted_holes_gives_the_frames_of_an_uninterrupted_run(
    tmp_path, tiny_stylizer, tubingen
):
    photo = cv2.resize(cv2.cvtColor(cv2.imread(str(tubingen)), cv2.COLOR_BGR2RGB), (180, 48))
    fast = [np.ascontiguousarray(photo[:, 16 * t : 16 * t + 96]) for t in range(4)]
    video = VideoSettings(**FAST, paint_holes=4)
    _, computed = resumed_after_kill(tmp_path, fast, tiny_stylizer, video, kill_at=1)
    assert computed == 2
