"""Long-term temporal consistency: masks, resume, carried curvature and scene cuts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import pipeline.frames
from pipeline.engine import Plan, Stylizer
from pipeline.image_io import load_rgb
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.temporal import Carried, FlowPair, carry, consistency_mask, long_term
from pipeline.work_folder import frame_path
from tests.conftest import Killed, killed_after

H, W = 40, 60
LONG = dict(temporal_frames=(1, 2, 4), carry_curvature=True, evaluations_next=4)


def constant(value: float, mask: np.ndarray) -> Carried:
    return Carried(np.full((H, W, 3), value, np.float32), mask.astype(np.float32))


def test_the_closest_frame_wins_where_masks_overlap():
    right = np.zeros((H, W), np.float32)
    right[:, W // 2 :] = 1  # t-1 vouches only for the right half
    everywhere = np.ones((H, W), np.float32)
    target = long_term([constant(0.2, right), constant(0.5, everywhere), constant(0.8, everywhere)])
    assert target.image[:, W // 2 + 5 :] == pytest.approx(0.2, abs=1e-4)  # t-1 where it holds
    # then t-2, never the farther t-4
    assert target.image[:, : W // 2 - 5] == pytest.approx(0.5, abs=1e-4)
    assert target.mask[:, 5:-5] == pytest.approx(1.0, abs=1e-4)  # every pixel counted once
    nothing = long_term([constant(0.2, np.zeros((H, W))), constant(0.5, np.zeros((H, W)))])
    assert nothing.mask.max() == 0.0


def moving_square(shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Flows of a 12-px square that moved `shift` px right from frame s to frame t over a still
    background: backward (t -> s) and forward (s -> t)."""
    backward, forward = np.zeros((H, W, 2), np.float32), np.zeros((H, W, 2), np.float32)
    backward[14:26, 24 + shift : 36 + shift, 0] = -shift
    forward[14:26, 24:36, 0] = shift
    return backward, forward


def test_occluded_and_motion_boundary_pixels_are_left_out():
    backward, forward = moving_square(6)
    mask = consistency_mask(backward, forward)
    # still background; the square's inside
    assert mask[2:10, 2:10].min() == 1 and mask[17:23, 33:39].min() == 1
    assert mask[17:23, 24:30].max() == 0  # uncovered behind the square: the flows disagree
    assert mask[20, 29:31].max() == 0 and mask[20, 41:43].max() == 0  # its edges: motion boundaries
    earlier = carry(np.full((H, W, 3), 0.7, np.float32), FlowPair(backward, forward, False))
    target = long_term([earlier, constant(0.3, np.ones((H, W)))])
    # a farther frame fills what t-1 cannot vouch for (blur: a little of t-1)
    assert target.image[20, 26] == pytest.approx(0.3, abs=0.01)
    assert target.image[5, 5] == pytest.approx(0.7, abs=1e-3)


@pytest.fixture
def clip() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return [np.roll(base, shift, axis=1) for shift in range(7)]


def resumed_after_kill(
    tmp_path,
    clip: list[np.ndarray],
    stylizer: Stylizer,
    video: VideoSettings,
    kill_at: int,
    left: str = "",
) -> tuple[Path, int]:
    """Stylize `clip` whole into tmp_path/whole, and into tmp_path/killed killed after frame
    `kill_at` (leaving files matching the glob `left` there) and rerun; assert the two give the same
    frames byte for byte. The killed folder and the frames the rerun computed."""

    def run(folder, on_frame=None):
        return pipeline.frames.stylize_frames(
            clip,
            pipeline.frames.FrameStylizer(stylizer, video, folder),
            folder,
            video,
            len(clip),
            on_frame,
        )

    run(tmp_path / "whole")

    with pytest.raises(Killed):
        run(tmp_path / "killed", killed_after(kill_at))
    assert not frame_path(tmp_path / "killed", kill_at + 1).exists()
    assert not left or list((tmp_path / "killed").glob(left)), f"the killed run left no {left}"
    computed = run(tmp_path / "killed").computed
    for index in range(len(clip)):
        same = (
            frame_path(tmp_path / "whole", index).read_bytes()
            == frame_path(tmp_path / "killed", index).read_bytes()
        )
        assert same, f"frame {index} differs after the resume"
    return tmp_path / "killed", computed


def test_resume_with_long_term_terms_gives_the_frames_of_an_uninterrupted_run(
    tmp_path, clip, embedded_weights, starry_night
):
    video = VideoSettings(iterations_next=4, scene_threshold=1.0, **LONG)
    stylizer = Stylizer(
        StyleSettings(size=64, iterations=4, precision="fp32", device="cpu"),
        [load_rgb(starry_night)],
        embedded_weights,
    )
    _, computed = resumed_after_kill(tmp_path, clip, stylizer, video, kill_at=4)
    assert computed == 2


def test_carried_curvature_never_crosses_a_scene_cut(
    tmp_path, clip, embedded_weights, starry_night, monkeypatch
):
    other = clip[0] // 4  # much darker: a new shot
    frames = [*clip[:3], *[np.roll(other, s, axis=1) for s in range(3)]]  # a cut before frame 3
    calls = []
    real = Stylizer.stylize

    def spy(self, content, plan=Plan(), callback=None):
        result = real(self, content, plan, callback)
        calls.append((plan, result))
        return result

    monkeypatch.setattr(Stylizer, "stylize", spy)
    video = VideoSettings(iterations_next=4, scene_threshold=0.1, **LONG)
    stylizer = Stylizer(
        StyleSettings(size=64, iterations=4, precision="fp32", device="cpu"),
        [load_rgb(starry_night)],
        embedded_weights,
    )
    done = pipeline.frames.stylize_frames(
        frames, pipeline.frames.FrameStylizer(stylizer, video, tmp_path), tmp_path, video, 6
    )
    assert done.cuts == [3] and len(calls) == 6
    carried = [plan.curvature for plan, _ in calls]
    assert carried[0] is None and carried[3] is None  # each shot's first frame starts cold
    for index in (1, 2, 4, 5):  # the others from frame t-1 of their own shot
        assert (
            carried[index] is not None
            and carried[index].scale == calls[index - 1][1].curvature.scale
        )


def test_a_later_pass_holds_no_pixel_its_neighbour_did_not_see():
    """A camera panning 16 px a frame: the neighbour's result carried onto the frame repeats its
    border over the 16 columns it did not see. The sequential pass keeps that border vouched for
    (nothing better there); a later pass, where the frame has its own result, vouches for none
    of it."""
    from pipeline.passes import neighbour_carried
    from pipeline.temporal import FlowEstimator, Frame

    rng = np.random.default_rng(5)
    panorama = cv2.GaussianBlur(rng.integers(0, 256, (72, 160, 3), dtype=np.uint8), (0, 0), 1.5)
    neighbour, frame = (Frame(np.ascontiguousarray(panorama[:, x : x + 128])) for x in (0, 16))
    flows = FlowEstimator().pair(frame, neighbour, neighbours=True)
    result = cv2.GaussianBlur(rng.integers(0, 256, neighbour.rgb.shape, dtype=np.uint8), (0, 0), 1)
    unseen, seen = (slice(None), slice(-14, None)), (slice(8, -8), slice(8, -24))
    assert carry(result / 255.0, flows).mask[unseen].mean() > 0.9  # the sequential pass's
    carried = neighbour_carried(flows, result)
    assert carried.mask[unseen].max() == 0.0
    assert carried.mask[seen].mean() > 0.95
    assert np.abs(carried.image[seen] - result[8:-8, 24:-8] / 255.0).mean() < 0.01


@pytest.mark.slow
def test_passes_refine_every_frame_from_its_neighbours_and_resume(tmp_path, starry_night):
    """--passes 3: a backward then a forward pass, each frame re-optimized toward its new neighbour:
    the result flickers less than the sequential pass alone; a pass killed half-way resumes to the
    same frames; frames are read back in their original order."""
    from pipeline.passes import pass_folder
    from pipeline.temporal import WarpingError
    from pipeline.video_job import stylize_video
    from pipeline.work_folder import read_frame
    from tests.test_video_io import lavfi_clip

    source = lavfi_clip(tmp_path / "clip.mp4", frames=8, size="96x64")
    style = StyleSettings(size=96, iterations=20, tolerance=0.0, precision="fp32", device="cpu")
    video = VideoSettings(iterations_next=6, keep_frames=True, passes=3)
    result = stylize_video(
        source, [starry_night], tmp_path / "out.mp4", style_settings=style, video=video
    )
    assert result.frames == 8 and result.computed == 8 * 3

    def flicker(folder):
        error = WarpingError()
        for index in range(8):
            error.add(inputs[index], read_frame(frame_path(folder, index)))
        return error.value

    from pipeline.video_io import Reader, probe

    with Reader(probe(source), (96, 64)) as reader:
        inputs = list(reader.frames())
    first, last = flicker(pass_folder(result.work_dir, 1)), flicker(pass_folder(result.work_dir, 3))
    assert last < 0.9 * first, (first, last)

    finished = {i: frame_path(pass_folder(result.work_dir, 3), i).read_bytes() for i in range(8)}
    for index in (5, 6, 7):  # the forward pass 3 was killed after frame 4
        frame_path(pass_folder(result.work_dir, 3), index).unlink()
    rerun = stylize_video(
        source,
        [starry_night],
        tmp_path / "out.mp4",
        style_settings=style,
        video=video,
        overwrite=True,
    )
    assert rerun.computed == 3
    assert all(
        frame_path(pass_folder(result.work_dir, 3), i).read_bytes() == finished[i] for i in range(8)
    )


def test_the_flow_stays_put_where_the_frames_match_in_place_and_follows_real_motion():
    """On a still background with sensor noise DIS reports motion of its own; the still-aware flow
    is zero there (nothing to warp, nothing to count as flicker), and keeps the motion of what
    moves."""
    from pipeline.temporal import FlowEstimator, Frame

    rng = np.random.default_rng(11)
    background = cv2.GaussianBlur(rng.integers(0, 256, (96, 128), dtype=np.uint8), (0, 0), 2.0)
    background = np.repeat(
        cv2.normalize(background, None, 0, 255, cv2.NORM_MINMAX)[..., None], 3, axis=2
    )
    square = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)

    def frame(x: int) -> Frame:
        noisy = np.clip(
            background.astype(np.int16) + rng.integers(-3, 4, background.shape), 0, 255
        ).astype(np.uint8)
        noisy[36:60, x : x + 24] = square
        return Frame(noisy)

    now, before = frame(54), frame(50)  # the square moved 4 px to the right
    dis = FlowEstimator(still=False).pair(now, before).backward
    still = FlowEstimator().pair(now, before).backward
    background_rows = slice(0, 28)
    assert np.abs(dis[background_rows]).max() > 0.05  # DIS's own noise on the still part
    assert not still[background_rows].any()
    inside = still[42:54, 60:72]
    # back to where it was
    assert np.abs(inside[..., 0] + 4).mean() < 1.0 and np.abs(inside[..., 1]).mean() < 1.0
    # a moving camera: the picture, its flat areas too, moves with it
    panned = Frame(np.ascontiguousarray(np.roll(now.rgb, 2, axis=1)))
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(FlowEstimator().pair(panned, now).backward[inner] + (2, 0)).max() < 0.05


def flat_ground_with_a_large_block(x: int | None, rng: np.random.Generator) -> np.ndarray:
    """A still camera over a car park from above (slightly noisy asphalt) that a red car crosses."""
    # asphalt
    texture = cv2.GaussianBlur(
        np.random.default_rng(9).normal(0, 20, (96, 160)).astype(np.float32), (0, 0), 1.0
    )
    ground = np.round(90 + texture[..., None] + rng.normal(0, 1, (96, 160, 3))).astype(np.int16)
    # a red car
    block = np.array([200, 60, 60]) + np.random.default_rng(5).integers(-40, 41, (60, 70, 3))
    if x is not None:  # None: out of view
        ground[18:78, x : x + 70] = block
    return np.clip(ground, 0, 255).astype(np.uint8)


def test_a_still_camera_is_told_from_a_pan_while_cars_cross_it():
    """car-detection at 256 px, frames 207-208: two cars cross a still car park and DIS spreads
    their motion over the flat asphalt (a median of 0.79 px), which the median alone took for a pan;
    shifting the whole frame by it explains nothing. The same frame moved 2 px is a pan."""
    from pipeline.temporal import FlowEstimator, Frame, camera_still
    from pipeline.video_io import Reader, even_size, probe, seek_time
    from tests.conftest import data_file

    info = probe(data_file("videos/car-detection.mp4"))
    with Reader(
        info, even_size(info.width, info.height, 256), start=seek_time(info, 0.0, 207)
    ) as reader:
        before, now = (Frame(rgb) for rgb in reader.frames(2))
    dis = FlowEstimator(still=False).pair(now, before).backward
    assert np.hypot(*np.median(dis.reshape(-1, 2), axis=0)) > 0.25
    assert camera_still(dis, now.grey, before.grey)
    panned = Frame(np.ascontiguousarray(np.roll(now.rgb, 2, axis=1)))
    panned_flow = FlowEstimator(still=False).pair(panned, now).backward
    assert not camera_still(panned_flow, panned.grey, now.grey)


def test_a_pixel_the_flow_drags_an_object_over_is_not_vouched_for():
    """Consistent flows can still be wrong: a flow that moves the ground behind a block with it
    brings the block's pixels onto the ground; the inputs warped along it say so."""
    from pipeline.temporal import Frame, photo_check

    rng = np.random.default_rng(4)
    now, before = (
        Frame(flat_ground_with_a_large_block(46, rng)),
        Frame(flat_ground_with_a_large_block(40, rng)),
    )
    flow = np.zeros((96, 160, 2), np.float32)
    # the block, back to where it was; the ground it left stays put, and brings the block back
    flow[18:78, 46:116, 0] = -6
    alike = photo_check(now, before, flow)
    assert (
        alike[20:76, 48:114].min() > 0.99
        and alike[:, 125:].min() > 0.99
        and alike[:12].min() > 0.99
    )
    assert alike[22:74, 42:44].max() < 0.01  # the block's pixels onto the ground it left: not alike


def test_pixels_something_left_start_from_the_shots_first_result_in_todays_light():
    """Where the flow cannot vouch for a pixel and the input looks as in the shot's first frame, the
    warm start and the temporal target take the first result there, lit as the input is now;
    elsewhere they keep the carried result."""
    from pipeline.settings import VideoSettings
    from pipeline.shot_memory import PastFrame
    from pipeline.temporal import Frame
    from pipeline.warm_start import WarmContext, WarmStart, restore_still_camera

    rng = np.random.default_rng(6)
    first_input = flat_ground_with_a_large_block(None, rng)  # the ground only
    first_result = rng.integers(0, 256, first_input.shape, dtype=np.uint8)
    # the block is in; the exposure rose
    now = flat_ground_with_a_large_block(20, rng).astype(np.int16) + 10
    now = Frame(np.clip(now, 0, 255).astype(np.uint8))
    mud = np.full(first_input.shape, 0.5, np.float32)
    vouched = np.ones(first_input.shape[:2], np.float32)
    vouched[:, 100:130] = 0  # the block just left these pixels
    vouched[30:60, 30:60] = 0  # and these are under it
    still = FlowPair(np.zeros((96, 160, 2), np.float32), np.zeros((96, 160, 2), np.float32), True)
    first = PastFrame(0, Frame(first_input), first_result, shot_start=True)
    context = WarmContext(now, None, Frame(first_input), still, VideoSettings(), shot_start=first)
    carried = restore_still_camera(WarmStart(Carried(mud, vouched)), context).carried
    expected = np.clip(first_result[22:74, 104:126] / 255 + 10 / 255, 0, 1)
    assert np.abs(carried.image[22:74, 104:126] - expected).mean() < 0.01
    assert carried.mask[22:74, 104:126].min() > 0.99
    # the block: not the ground's strokes
    assert np.allclose(carried.image[35:55, 35:55], 0.5) and carried.mask[35:55, 35:55].max() < 0.01
    assert np.allclose(carried.image[:, 140:], 0.5)  # vouched pixels keep the carried result


def test_a_large_car_crossing_a_darkening_still_frame_is_no_pan():
    """car-detection at 96 px, frames 69-70: a white car fills a tenth of a still car park while the
    exposure darkens. DIS's median (2 px) and the whole-frame shift's gain (a third of the
    difference) took it for a pan; between neighbouring frames the shift's making the ground behind
    the car match worse says otherwise. The same frame moved 2 px is still a pan."""
    from pipeline.temporal import FlowEstimator, Frame, camera_still
    from pipeline.video_io import Reader, even_size, probe, seek_time
    from tests.conftest import data_file

    info = probe(data_file("videos/car-detection.mp4"))
    with Reader(
        info, even_size(info.width, info.height, 96), start=seek_time(info, 0.0, 69)
    ) as reader:
        before, now = (Frame(rgb) for rgb in reader.frames(2))
    dis = FlowEstimator(still=False).pair(now, before).backward
    assert np.hypot(*np.median(dis.reshape(-1, 2), axis=0)) > 1.0
    assert not camera_still(dis, now.grey, before.grey)  # frames further apart get no vote
    assert camera_still(dis, now.grey, before.grey, neighbours=True)
    panned = Frame(np.ascontiguousarray(np.roll(now.rgb, 2, axis=1)))
    assert not camera_still(
        FlowEstimator(still=False).pair(panned, now).backward,
        panned.grey,
        now.grey,
        neighbours=True,
    )


def test_chained_flows_follow_a_pan_and_stay_zero_for_a_still_camera():
    """A chunk's head is carried from the shot's first frame along the path the frames in between
    took: a pan of 2 px a frame adds up to 6 px over three steps; a still camera's path is zero,
    also where a block moved across it."""
    from pipeline.temporal import FlowEstimator, Frame, chained_flows

    rng = np.random.default_rng(7)
    scene = cv2.GaussianBlur(
        np.kron(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), np.ones((4, 4, 1), np.uint8)),
        (0, 0),
        1.0,
    )
    pan = [Frame(np.ascontiguousarray(scene[8:72, 2 * t : 2 * t + 96])) for t in range(4)]
    last, flows = chained_flows(pan[0], pan[1:], FlowEstimator())
    backward, forward = flows.backward, flows.forward
    assert last is pan[-1]
    inner = (slice(12, 52), slice(12, 60))  # away from the borders, which the pan uncovers
    assert np.allclose(np.median(backward[inner].reshape(-1, 2), axis=0), (6, 0), atol=0.5)
    assert np.allclose(np.median(forward[inner].reshape(-1, 2), axis=0), (-6, 0), atol=0.5)

    still = []
    for t in range(4):
        frame = np.ascontiguousarray(scene[8:72, :96]).copy()
        frame[20:40, 10 + 8 * t : 30 + 8 * t] = 240  # a bright block crossing
        still.append(Frame(frame))
    _, flows = chained_flows(still[0], still[1:], FlowEstimator())
    assert flows.camera_still and not flows.backward.any() and not flows.forward.any()
