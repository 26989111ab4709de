"""A video run's dry run: frames, the shots the cut test finds, the wall time estimated from a short
timed run on the video's own frames, and the disk its work folder will need. Nothing is written."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2

from pipeline.batch import pixel_evaluations, seconds_per_pixel_evaluation
from pipeline.chunks import VideoJob, plan_chunks, scan_cuts
from pipeline.engine import Plan, Stylizer, check_size
from pipeline.frames import FrameStylizer, frame_and_stats
from pipeline.image_io import load_styles, to_tensor
from pipeline.settings import ClusterSettings, StyleSettings, VideoSettings
from pipeline.sources import open_reader, probe
from pipeline.temporal import Frame, to_float
from pipeline.video_io import check_complete, even_size
from pipeline.weights import VGGWeights, load_weights
from pipeline.work_folder import frame_path, resume_checkpoint, vouched_for, work_folder

LATER_SAMPLES = 3  # later frames timed: the first carries the flow estimator's start-up


@dataclass
class VideoEstimate:
    frames: int
    cuts: list[int]
    resumed: int  # frames a run would take from the work folder
    size: tuple[int, int]  # width, height
    first_frame_seconds: float  # a shot's first frame, stylized as a photo
    later_frame_seconds: float  # a frame warm-started from the one before, per pass
    seconds: float  # the whole run, what is resumed left out
    work_bytes: int  # the work folder at the end (kept with --keep-frames)
    work_dir: Path

    @property
    def shots(self) -> int:
        return len(self.cuts) + 1


def estimate_video(
    source: Path,
    style_images: list[Path],
    output: Path,
    *,
    style_settings: StyleSettings,
    video: VideoSettings = VideoSettings(),
    weights: VGGWeights | str | None = None,
) -> VideoEstimate:
    """Estimate a sequential run of `stylize_video` with the same arguments on this machine."""
    source, output = Path(source), Path(output)
    info = probe(source, video.fps)
    if not info.files:
        check_complete(info)
    styles = load_styles(style_images)
    size = even_size(info.width, info.height, style_settings.size)
    check_size(size[1], size[0], style_settings, source)
    work_dir = work_folder(output, source, style_images, style_settings, video, None, info.files)
    scan = scan_cuts(
        info, VideoJob(source, tuple(style_images), style_settings, video, size, work_dir)
    )
    network = weights if isinstance(weights, VGGWeights) else load_weights(weights)
    stylizer = Stylizer(style_settings, styles, network)
    timing = Stylizer(replace(style_settings, coarse_to_fine=False, tolerance=0.0), styles, network)
    first = seconds_per_pixel_evaluation(timing, style_settings.size) * pixel_evaluations(
        size[1], size[0], style_settings, stylizer
    )
    later, png_bytes = _time_later_frames(info, size, video, stylizer, timing)
    resumed = resumed_frames(work_dir, scan.count)
    starts = [0, *scan.cuts]
    cold = sum(start >= resumed for start in starts)
    warm = max(0, scan.count - resumed - cold)
    seconds = cold * first + warm * later + (video.passes - 1) * scan.count * later
    return VideoEstimate(
        scan.count,
        scan.cuts,
        resumed,
        size,
        first,
        later,
        seconds,
        round(png_bytes * scan.count * video.passes),
        work_dir,
    )


def resumed_frames(work_dir: Path, count: int) -> int:
    """The frames a rerun keeps: those up to the last checkpoint, none where a file it vouches for
    is missing (all of them in a folder from before checkpoints, none without its frame 0). A
    state file on disk but damaged is found only when the rerun reads it."""
    if not work_dir.is_dir():
        return 0
    checkpoint = resume_checkpoint(work_dir)
    if checkpoint is None:
        return sum(frame_path(work_dir, i).is_file() for i in range(count))
    return min(count, checkpoint.frame + 1) if vouched_for(work_dir, checkpoint) else 0


def _time_later_frames(
    info, size: tuple[int, int], video: VideoSettings, stylizer: Stylizer, timing: Stylizer
) -> tuple[float, float]:
    """Seconds of a later frame (the median of the timed ones, flow included) and a frame's PNG
    bytes. The first of them starts from a short cold run: a later frame's budget is fixed, so its
    cost barely depends on how converged the frame before it was."""
    with open_reader(info, size, video.start, video.duration) as reader:
        frames = [Frame(rgb) for rgb in reader.frames(LATER_SAMPLES + 1)]
    cold = timing.stylize(to_tensor(to_float(frames[0].rgb)), Plan(iterations=10))
    previous, _ = frame_and_stats(cold, frames[0].rgb.dtype)
    frame_stylizer = FrameStylizer(stylizer, video)
    seconds, sizes = [], [len(cv2.imencode(".png", previous)[1])]
    for index, frame in enumerate(frames[1:], start=1):
        start = time.perf_counter()
        previous, _ = frame_stylizer(frame, (frames[index - 1], previous), index)
        seconds.append(time.perf_counter() - start)
        sizes.append(len(cv2.imencode(".png", previous)[1]))
    # a one-frame video has no later frame
    median = sorted(seconds)[len(seconds) // 2] if seconds else 0.0
    return median, sum(sizes) / len(sizes)


def spread_over(guess: VideoEstimate, workers: int, cluster: ClusterSettings) -> float:
    """The wall time of the same run in chunks over `workers` workers (--devices): each overlap
    made in both its chunks, each chunk inside a shot started from a first frame's budget, the
    chunks shared out evenly."""
    chunks = plan_chunks(guess.frames, guess.cuts, cluster.chunk_frames, cluster.overlap_frames)
    overlaps = sum(chunk.stop - chunk.start for chunk in chunks) - guess.frames
    heads = sum(not chunk.opens_shot for chunk in chunks)
    work = guess.seconds + overlaps * guess.later_frame_seconds
    work += heads * guess.first_frame_seconds
    return work / max(1, min(workers, len(chunks)))
