"""Chunks of a shot (the work items of `--ray`), run here without Ray: each chunk inside a shot
starts from the shot's first result, so neighbouring chunks begin from the same picture."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np

from pipeline.chunks import (
    VideoJob,
    chunk_folder,
    plan_chunks,
    input_frame,
    shot_path,
    stylize_chunk,
    stylize_shot_start,
)
from pipeline.engine import Stylizer
from pipeline.frames import FrameStylizer
from pipeline.image_io import load_rgb
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.temporal import to_float
from pipeline.video_io import EncodeSettings, encode, probe
from pipeline.work_folder import frame_path, read_frame
from tests.conftest import data_file

SIZE = (64, 48)


def still_clip(path, frames: int = 12):
    """A still photo with a little sensor noise: what a fixed camera gives."""
    photo = cv2.resize(
        cv2.imread(str(data_file("contents/tubingen.jpg")))[..., ::-1],
        SIZE,
        interpolation=cv2.INTER_AREA,
    ).astype(np.int16)
    noise = np.random.default_rng(0)
    images = [
        np.clip(photo + noise.integers(-3, 4, photo.shape), 0, 255).astype(np.uint8)
        for _ in range(frames)
    ]
    encode(
        lambda: iter(images),
        path,
        SIZE,
        Fraction(10),
        settings=EncodeSettings(pix_fmt="yuv444p", crf=0),
    )
    return path


def test_chunks_inside_a_shot_start_from_its_first_result(tmp_path, starry_night):
    job = VideoJob(
        still_clip(tmp_path / "still.mkv"),
        (starry_night,),
        StyleSettings(size=64, iterations=40, tolerance=0.0, device="cpu"),
        VideoSettings(iterations_next=2),
        SIZE,
        tmp_path / "work",
    )
    stylizer = Stylizer(job.style_settings, [load_rgb(starry_night)])
    opener, inside = plan_chunks(12, [], 8, 2)
    assert (inside.start, inside.shot_start, inside.opens_shot) == (6, 0, False)

    assert stylize_shot_start(job, stylizer, opener).computed == 1
    first = read_frame(shot_path(job, 0))
    # its first frame is the shot's, not made again
    assert stylize_chunk(job, stylizer, opener).computed == 7
    assert np.array_equal(read_frame(frame_path(chunk_folder(job, opener), 0)), first)
    assert stylize_chunk(job, stylizer, inside).computed == 6

    head = to_float(read_frame(frame_path(chunk_folder(job, inside), 0)))
    cold, _ = FrameStylizer(stylizer, job.video)(input_frame(job, probe(job.source), 6), None)
    from_first, from_cold = (
        np.abs(head - to_float(first)).mean(),
        np.abs(to_float(cold) - to_float(first)).mean(),
    )
    # a cold start there would not match the chunk before
    assert from_first < 0.5 * from_cold, (from_first, from_cold)

    # a rerun finds every frame, its first too
    assert stylize_chunk(job, stylizer, inside).computed == 0
