"""--catch-up: a later frame whose warm start the flow cannot vouch for in places (what a moving
object uncovers) takes more evaluations, at most --catch-up times its budget; resume stays exact."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import pipeline.frames
from pipeline.engine import Plan, Stylizer
from pipeline.frames import damage_budgets
from pipeline.settings import VideoSettings
from pipeline.tuning import DAMAGE_SHARE
from tests.conftest import small_stylizer
from tests.test_long_term import resumed_after_kill

BASE = dict(iterations_next=4, evaluations_next=4, scene_threshold=1.0, paint_holes=0)


def test_the_budget_grows_with_the_unvouched_share_up_to_the_cap():
    assert damage_budgets(0.0, 4.0) == 1.0
    assert damage_budgets(DAMAGE_SHARE, 4.0) == pytest.approx(2.0)
    assert damage_budgets(DAMAGE_SHARE / 2, 4.0) == pytest.approx(1.5)
    assert damage_budgets(0.5, 4.0) == 4.0 and damage_budgets(0.5, 2.5) == 2.5


def crossing(step: int, frames: int = 5) -> list[np.ndarray]:
    """A 24 px square of one texture crossing a still background of another, `step` px a frame:
    what it uncovers behind it the flow cannot vouch for."""
    rng = np.random.default_rng(7)
    background, thing = (
        cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), 1.0)
        for shape in ((48, 64, 3), (24, 24, 3))
    )
    clip = []
    for t in range(frames):
        frame = background.copy()
        frame[12:36, 4 + step * t : 28 + step * t] = thing
        clip.append(frame)
    return clip


@pytest.fixture
def stylizer(embedded_weights) -> Stylizer:
    return small_stylizer(64, embedded_weights)


def later_budgets(tmp_path, stylizer, frames, monkeypatch, **video) -> list[int]:
    """The evaluation budget each later frame's plan was given."""
    plans: list[Plan] = []
    real = Stylizer.stylize

    def spy(self, content, plan=Plan(), callback=None):
        plans.append(plan)
        return real(self, content, plan, callback)

    monkeypatch.setattr(Stylizer, "stylize", spy)
    settings = VideoSettings(**BASE, **video)
    pipeline.frames.stylize_frames(
        frames,
        pipeline.frames.FrameStylizer(stylizer, settings, tmp_path),
        tmp_path,
        settings,
        len(frames),
    )
    return [plan.evaluations for plan in plans[1:]]


def test_a_fast_object_gets_more_evaluations_capped_and_a_still_shot_does_not(
    tmp_path, stylizer, monkeypatch
):
    fast, still = crossing(8), [crossing(8)[0]] * 5
    budgets = later_budgets(tmp_path / "fast", stylizer, fast, monkeypatch, catch_up=3.0)
    assert all(4 < budget <= 12 for budget in budgets) and max(budgets) == 12
    assert later_budgets(tmp_path / "still", stylizer, still, monkeypatch, catch_up=3.0) == [4] * 4
    assert later_budgets(tmp_path / "off", stylizer, fast, monkeypatch) == [4] * 4


def test_resume_with_catch_up_gives_the_frames_of_an_uninterrupted_run(tmp_path, stylizer):
    video = VideoSettings(**BASE, catch_up=3.0)
    _, computed = resumed_after_kill(tmp_path, crossing(8), stylizer, video, kill_at=2)
    assert computed == 2


def panned(photo: np.ndarray, step: int, frames: int = 2) -> list[np.ndarray]:
    """A window sliding `step` px a frame to the right over `photo`: new content enters at the
    right edge."""
    return [photo[:, step * t : step * t + 96].copy() for t in range(frames)]


def test_with_catch_up_what_enters_the_picture_is_vouched_for_nowhere(tubingen):
    from pipeline.temporal import FlowEstimator, Frame
    from pipeline.warm_start import WarmContext, WarmStart, carry_along_flow

    photo = cv2.resize(cv2.cvtColor(cv2.imread(str(tubingen)), cv2.COLOR_BGR2RGB), (160, 120))
    earlier, frame = (Frame(f) for f in panned(photo, 12))
    flows = FlowEstimator().pair(frame, earlier, neighbours=True)
    result = np.random.default_rng(0).random((120, 96, 3)).astype(np.float32)
    masks = {}
    for catch_up in (1.0, 2.0):  # the fill that keeps the border: --catch-up alone decides
        video = VideoSettings(catch_up=catch_up, fill="content", paint_holes=0)
        context = WarmContext(frame, frame.rgb / 255.0, earlier, flows, video)
        masks[catch_up] = carry_along_flow(WarmStart.of(result), context).carried.mask
    entering = np.s_[:, -10:]  # 12 px entered; the flow's edge may round a column or two
    assert masks[1.0][entering].mean() > 0.9  # the repeated border, vouched for by both flows
    assert masks[2.0][entering].max() == 0.0
    inside = np.s_[10:-10, 10:-16]
    np.testing.assert_array_equal(masks[2.0][inside], masks[1.0][inside])
