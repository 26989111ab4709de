"""--fill patches (the default): what the flow cannot carry starts from the carried result's own
painted patches, taken where the input looks alike."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from pipeline.patch_fill import patch_fill
from tests.test_catch_up import panned


def photo_and_painting(tubingen, size=(256, 144)) -> tuple[np.ndarray, np.ndarray]:
    """tubingen.jpg and a stand-in for its stylized result that depends on each pixel's colour
    only (OpenCV's "ocean" colour map of its grey), so that a patch taken where the photo looks
    alike is the right paint."""
    bgr = cv2.resize(cv2.imread(str(tubingen)), size, interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    painting = cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_OCEAN), cv2.COLOR_BGR2RGB)
    photo = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return photo.astype(np.float32) / 255, painting.astype(np.float32) / 255


def test_an_unvouched_strip_takes_the_paint_of_what_looks_alike(tubingen):
    photo, painting = photo_and_painting(tubingen)
    mask = np.ones(photo.shape[:2], np.float32)
    mask[:, -36:] = 0  # a 36-px pan's entering strip
    carried = painting.copy()
    carried[:, -36:] = carried[:, -37:-36]  # the border the warp repeats there
    filled = patch_fill(carried, photo, mask)

    def error(image):
        return float(np.abs(image[:, -36:] - painting[:, -36:]).mean())

    np.testing.assert_array_equal(filled[:, :-40], carried[:, :-40])  # vouched: untouched
    assert error(filled) < 0.6 * min(error(carried), error(photo)), (
        error(filled),
        error(carried),
        error(photo),
    )
    streaks = np.abs(np.diff(filled[:, -36:], axis=1)).mean()
    assert streaks > 0.5 * np.abs(np.diff(painting[:, -36:], axis=1)).mean()


def test_what_an_object_uncovers_takes_paint_from_the_ground_around_it(tubingen):
    photo, painting = photo_and_painting(tubingen)
    mask = np.ones(photo.shape[:2], np.float32)
    hole = np.s_[50:90, 100:150]
    mask[hole] = 0
    carried = painting.copy()
    carried[hole] = (1.0, 0.0, 1.0)  # the object's strokes, left behind by the warp
    filled = patch_fill(carried, photo, mask)
    assert np.abs(filled[hole] - painting[hole]).mean() < 0.1
    assert (
        np.abs(filled[hole] - painting[hole]).mean()
        < 0.25 * np.abs(carried[hole] - painting[hole]).mean()
    )


def test_nothing_vouched_for_starts_from_the_photo_and_all_vouched_changes_nothing(tubingen):
    photo, painting = photo_and_painting(tubingen, (96, 64))
    none = patch_fill(painting, photo, np.zeros(photo.shape[:2], np.float32))
    np.testing.assert_allclose(none, photo, atol=1e-6)
    every = patch_fill(painting, photo, np.ones(photo.shape[:2], np.float32))
    np.testing.assert_array_equal(every, painting)


def test_with_catch_up_what_enters_a_pan_starts_painted(tubingen):
    """--catch-up leaves the strip that enters the picture unvouched, to be painted: the patches
    start it nearer its paint than the photo does."""
    from pipeline.settings import VideoSettings
    from pipeline.temporal import FlowEstimator, Frame
    from pipeline.warm_start import WarmContext, WarmStart, later_frame_steps, run_steps

    photo = cv2.resize(cv2.cvtColor(cv2.imread(str(tubingen)), cv2.COLOR_BGR2RGB), (160, 120))
    earlier, frame = (Frame(f) for f in panned(photo, 12))
    flows = FlowEstimator().pair(frame, earlier, neighbours=True)
    result = cv2.applyColorMap(earlier.grey, cv2.COLORMAP_OCEAN)[..., ::-1] / 255.0
    painted = cv2.applyColorMap(frame.grey, cv2.COLORMAP_OCEAN)[..., ::-1] / 255.0
    entering = np.s_[:, -10:]
    errors = {}
    for fill in ("patches", "content"):
        video = VideoSettings(fill=fill, catch_up=2.0)
        context = WarmContext(frame, frame.rgb / 255.0, earlier, flows, video)
        start = run_steps(later_frame_steps(video), WarmStart.of(result), context)
        assert start.carried.mask[entering].max() == 0.0
        errors[fill] = float(np.abs(start.first_image[entering] - painted[entering]).mean())
    assert errors["patches"] < 0.5 * errors["content"], errors


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_fill_on_a_gpu_is_the_cpus(tubingen):
    photo, painting = photo_and_painting(tubingen)
    mask = np.ones(photo.shape[:2], np.float32)
    mask[:, -36:], mask[50:90, 100:150] = 0, 0
    on_gpu = patch_fill(painting, photo, mask, torch.device("cuda"))
    np.testing.assert_allclose(on_gpu, patch_fill(painting, photo, mask), atol=1e-5)
