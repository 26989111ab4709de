"""A video in, a stylized video out: decode -> stylize frame by frame (warm-started along the
flow) -> encode. Each frame is written atomically into a work folder, so a killed run resumes
at the first missing frame and reproduces the frames an uninterrupted run would have made.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import json
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.engine import Result, Stylizer, check_size, halving_ladder, scale_ladder, smallest_side
from pipeline.errors import OutputError, SettingsError
from pipeline.image_io import atomic_path, check_output_file, load_rgb, to_array, to_tensor
from pipeline.losses import TemporalLoss
from pipeline.settings import ClusterSettings, StyleSettings, VideoSettings
from pipeline.temporal import FlowEstimator, WarpingError, carry_over, fill_disocclusions, is_cut, to_float
from pipeline.video_io import (VIDEO_SUFFIXES, EncodeSettings, Reader, VideoInfo, check_complete, check_encoder, encode,
                                even_size, is_crop, probe)


@dataclass
class FrameReport:
    index: int
    total: int
    cold: bool  # first frame of a shot (or --init content)
    cut: bool  # a scene cut was detected before this frame
    skipped: bool  # already done by an earlier run
    iterations: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    flow_seconds: float = 0.0
    losses: dict[str, float] | None = None


FrameCallback = Callable[[FrameReport], None]


@dataclass
class VideoResult:
    output: Path
    frames: int
    computed: int  # frames stylized by this run (the rest were resumed)
    cuts: list[int]
    work_dir: Path
    log: list[str]  # things the user should know (odd size cropped, audio re-encoded, ...)


def check_video_output(source: Path, output: Path, styles: list[Path], overwrite: bool) -> None:
    if output.suffix.lower() not in VIDEO_SUFFIXES:
        raise OutputError(f"{output}: unknown video container {output.suffix!r}; use one of {', '.join(VIDEO_SUFFIXES)}")
    check_output_file(output, [source, *styles], overwrite)


def check_range(info: VideoInfo, video: VideoSettings) -> None:
    if video.start >= info.duration:
        raise SettingsError(f"--start {video.start:g}: past the end of {info.path} ({info.duration:.2f} s long)")


def file_digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def work_folder(output: Path, source: Path, styles: list[Path], style: StyleSettings, video: VideoSettings,
                layout: dict | None = None) -> Path:
    """Keyed by the input's and styles' content and every setting that changes the frames."""
    frames_only = {k: v for k, v in asdict(video).items() if k not in ("codec", "crf", "keep_frames")}
    if style.coarse_to_fine is False:
        frames_only["first_frame_scales"] = 1  # no effect then: changing it must not discard finished frames
    key = json.dumps([file_digest(source), [file_digest(p) for p in styles], asdict(style), frames_only, layout],
                     sort_keys=True, default=str)
    return output.parent / f".{output.name}.frames-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def frame_path(work_dir: Path, index: int) -> Path:
    return work_dir / f"{index:06d}.png"


def read_frame(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def write_frame(path: Path, frame: np.ndarray) -> None:
    """Atomically; a full disk or a lost folder names the frame and the cause (cv2.imwrite only says False)."""
    encoded, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if not encoded:
        raise OutputError(f"{path}: cannot encode frame")
    with atomic_path(path) as tmp:
        try:
            tmp.write_bytes(data.tobytes())
        except OSError as err:
            raise OutputError(f"{path}: cannot write frame ({err.strerror or err}); the frames before it are kept, a rerun resumes") from None


class FrameStylizer:
    """Frame t from frame t-1: the per-frame policy (cold start, warm start, temporal loss)."""

    def __init__(self, stylizer: Stylizer, video: VideoSettings):
        self.stylizer, self.video = stylizer, video
        self.flows = FlowEstimator()

    def __call__(self, frame: np.ndarray, previous: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, dict]:
        """`previous`: (input frame, stylized uint8 frame) of t-1, or None for a cold start."""
        content = to_float(frame)
        flow_seconds = 0.0
        if previous is None or self.video.init == "content":
            result = self.cold_start(content)
        else:
            prev_in, prev_out = to_float(previous[0]), to_float(previous[1])
            extra = []
            if self.video.init == "prev":
                init = prev_out
            else:
                start = time.perf_counter()
                carried = carry_over(prev_out, prev_in, content, self.flows)
                init = fill_disocclusions(carried, content, self.video.fill)
                flow_seconds = time.perf_counter() - start
                if self.video.temporal_weight > 0:
                    loss = TemporalLoss(to_tensor(carried.image), torch.from_numpy(carried.mask)[None, None])
                    extra.append(("temporal", self.video.temporal_weight, loss))
            result = self.stylizer.stylize(to_tensor(content), init=to_tensor(init), extra_losses=extra,
                                           iterations=self.video.iterations_next, patience=self.video.patience_next)
        out = np.round(to_array(result.image) * 255).astype(np.uint8)
        return out, {"iterations": result.iterations, "evaluations": result.evaluations,
                     "seconds": result.seconds, "flow_seconds": flow_seconds, "losses": result.losses}

    def cold_start(self, content: np.ndarray) -> Result:
        """A frame with no warm start: the first of a shot (every frame with --video-init content).

        Coarse-to-fine over at least `first_frame_scales` sizes: where the photo ladder
        (--coarse-to-fine) is shorter, that many sizes, each half the next, share the iteration
        budget evenly. On car-detection.mp4 at 384 px, 192 then 384 px at 150 iterations each took
        2/3 of the time of 300 at 384 px for about the same total loss (less style, more content).
        --coarse-to-fine off keeps one scale.
        """
        settings = self.stylizer.settings
        height, width = content.shape[:2]
        scales = len(halving_ladder(height, width, self.video.first_frame_scales, smallest_side(settings)))
        photo_scales = len(scale_ladder(height, width, settings))
        if settings.coarse_to_fine is False or scales <= photo_scales or settings.iterations < scales:
            return self.stylizer.stylize(to_tensor(content))
        return self.stylizer.stylize(to_tensor(content), scales=scales, iterations=settings.iterations // scales)


@dataclass(frozen=True)
class VideoJob:
    """What every worker needs to stylize part of a video; plain values, so it pickles for Ray."""

    source: Path
    styles: tuple[Path, ...]
    style: StyleSettings
    video: VideoSettings
    size: tuple[int, int]
    work_dir: Path


@dataclass(frozen=True)
class Chunk:
    """Frames [start, stop) of the range, inside one shot; neighbours overlap by a few frames."""

    index: int
    start: int
    stop: int


class FrameLog:
    """frames.jsonl in the work folder: one JSON line per run and per frame (iterations, losses, warnings)."""

    def __init__(self, folder: Path):
        self.path = folder / "frames.jsonl"

    def __enter__(self) -> FrameLog:
        try:
            self.file = open(self.path, "a")
        except OSError as err:
            raise OutputError(f"{self.path}: cannot write ({err.strerror or err})") from None
        return self

    def write(self, record: dict) -> None:
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as err:
            raise OutputError(f"{self.path}: cannot write ({err.strerror or err}); a rerun resumes") from None

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(OSError):  # a full disk must not hide the error that ended the run
            self.file.close()


@dataclass
class FramesDone:
    count: int
    computed: int
    cuts: list[int]


def stylize_frames(frames: Iterable[np.ndarray], frame_stylizer: FrameStylizer, folder: Path, video: VideoSettings,
                   total: int, on_frame: FrameCallback | None = None) -> FramesDone:
    """Stylize frames in order into `folder`, one atomic PNG each; frames already there are kept.

    Frame t starts from frame t-1's result as read back from disk, so a resumed run computes
    exactly what an uninterrupted one would. A scene cut starts the next frame cold.
    """
    folder.mkdir(parents=True, exist_ok=True)
    done = FramesDone(0, 0, [])
    with FrameLog(folder) as frame_log:
        frame_log.write({"run": time.strftime("%Y-%m-%dT%H:%M:%S"), "precision": frame_stylizer.stylizer.precision.reason})
        previous_in: np.ndarray | None = None
        for index, frame in enumerate(frames):
            done.count = index + 1
            cut = previous_in is not None and is_cut(previous_in, frame, video.scene_threshold)
            if cut:
                done.cuts.append(index)
            path = frame_path(folder, index)
            if path.is_file():
                report = FrameReport(index, total, previous_in is None or cut, cut, skipped=True)
            else:
                previous = None if previous_in is None or cut else (previous_in, read_frame(frame_path(folder, index - 1)))
                stylized, stats = frame_stylizer(frame, previous)
                write_frame(path, stylized)
                done.computed += 1
                report = FrameReport(index, total, previous is None or video.init == "content", cut, False, **stats)
                frame_log.write({"frame": index, "cold": report.cold, "cut": cut, **stats})
            if on_frame:
                on_frame(report)
            previous_in = frame
    return done


def stylize_video(
    source: Path,
    styles: list[Path],
    output: Path,
    style: StyleSettings,
    video: VideoSettings = VideoSettings(),
    weights: str | None = None,
    overwrite: bool = False,
    on_frame: FrameCallback | None = None,
    cluster: ClusterSettings | None = None,
    on_chunk: Callable[[int, int, int], None] | None = None,
) -> VideoResult:
    """Decode, stylize frame by frame, encode. `cluster`: run chunks of frames on Ray workers."""
    source, output, styles = Path(source), Path(output), [Path(p) for p in styles]
    check_video_output(source, output, styles, overwrite)
    check_encoder(video.codec)
    info = probe(source)
    check_range(info, video)
    check_complete(info)
    style_images = [load_rgb(p) for p in styles]
    size = even_size(info.width, info.height, style.size)
    check_size(size[1], size[0], style, source)
    log = _size_notes(info, size)
    layout = asdict(cluster) if cluster else None  # chunked frames differ from sequential ones near seams
    work_dir = work_folder(output, source, [Path(p) for p in styles], style, video, layout)
    job = VideoJob(source, tuple(Path(p) for p in styles), style, video, size, work_dir)
    if cluster is None:
        frame_stylizer = FrameStylizer(Stylizer(style, style_images, weights), video)
        with Reader(info, size, video.start, video.duration) as reader:
            done = stylize_frames(reader.frames(video.max_frames), frame_stylizer, work_dir, video, _frames_in_range(info, video), on_frame)
        frames = lambda: (read_frame(frame_path(work_dir, i)) for i in range(done.count))  # noqa: E731
    else:
        done, chunks = _run_chunks_on_cluster(job, info, cluster, weights, on_chunk)
        frames = lambda: assemble(job, chunks, cluster.overlap_frames)  # noqa: E731
        log.append(f"{len(chunks)} chunks of up to {cluster.chunk_frames} frames, overlapping by {cluster.overlap_frames}")
    if done.count == 0:
        raise OutputError(f"{source}: no frames decoded in the chosen range")
    expected = _frames_in_range(info, video)
    if done.count < expected - 1:  # check_complete passed: damage inside the file, found while decoding
        warning = f"warning: {source}: only {done.count} of the {expected} frames announced could be decoded; the output is that much shorter"
        log.append(warning)
        with FrameLog(work_dir) as frame_log:
            frame_log.write({"warning": warning})
    log += [f"scene cut before frame {i}" for i in done.cuts]
    encode(frames, output, size, info.fps, info, video.start, float(done.count / info.fps),
           EncodeSettings(codec=video.codec, crf=video.crf))
    if not video.keep_frames:
        shutil.rmtree(work_dir, ignore_errors=True)
    return VideoResult(output, done.count, done.computed, done.cuts, work_dir, log)


def scan_cuts(info: VideoInfo, job: VideoJob) -> FramesDone:
    """One decoding pass over the range: the frame count and the scene cuts, as the sequential run finds them."""
    done = FramesDone(0, 0, [])
    previous = None
    with Reader(info, job.size, job.video.start, job.video.duration) as reader:
        for index, frame in enumerate(reader.frames(job.video.max_frames)):
            if previous is not None and is_cut(previous, frame, job.video.scene_threshold):
                done.cuts.append(index)
            previous, done.count = frame, index + 1
    return done


def plan_chunks(count: int, cuts: list[int], chunk_frames: int, overlap: int) -> list[Chunk]:
    """Shots split at the cuts; a shot longer than `chunk_frames` into chunks overlapping by `overlap`."""
    if chunk_frames <= 2 * overlap:  # else a frame could lie in three chunks
        raise SettingsError(f"--chunk-frames {chunk_frames} must exceed twice --overlap-frames {overlap}")
    bounds = [0, *cuts, count]
    chunks: list[Chunk] = []
    for shot_start, shot_stop in zip(bounds, bounds[1:]):
        start = shot_start
        while True:
            stop = min(start + chunk_frames, shot_stop)
            if shot_stop - stop <= overlap:  # a tail no longer than the overlap joins this chunk
                stop = shot_stop
            chunks.append(Chunk(len(chunks), start, stop))
            if stop == shot_stop:
                break
            start = stop - overlap
    return chunks


def chunk_folder(job: VideoJob, chunk: Chunk) -> Path:
    return job.work_dir / f"chunk-{chunk.start:06d}-{chunk.stop:06d}"


@dataclass
class ChunkResult:
    chunk: Chunk
    computed: int


def job_stylizer(job: VideoJob, weights=None) -> Stylizer:
    """VGG and the job's style targets; a worker builds it once and keeps it for all its chunks."""
    return Stylizer(job.style, [load_rgb(p) for p in job.styles], weights)


def stylize_chunk(job: VideoJob, chunk: Chunk, stylizer: Stylizer) -> ChunkResult:
    """A worker's item: the chunk's frames, decoded from a seek to its first frame, stylized in order."""
    info = probe(job.source)
    # half a frame early: -ss keeps frames whose time is at or after it, and float times round
    start = job.video.start + max(0.0, (chunk.start - 0.5) / float(info.fps))
    with Reader(info, job.size, start) as reader:
        done = stylize_frames(reader.frames(chunk.stop - chunk.start), FrameStylizer(stylizer, job.video),
                              chunk_folder(job, chunk), job.video, chunk.stop - chunk.start)
    if done.count != chunk.stop - chunk.start:
        raise OutputError(f"{job.source}: chunk {chunk.start}-{chunk.stop} decoded {done.count} frames")
    return ChunkResult(chunk, done.computed)


def assemble(job: VideoJob, chunks: list[Chunk], overlap: int) -> Iterator[np.ndarray]:
    """The final frames: each from its chunk, and across an overlap a linear ramp from one chunk's
    result to the next's, so that the seam does not pop."""
    for previous, chunk in zip([None, *chunks], chunks):
        shared = previous.stop - chunk.start if previous is not None and previous.stop > chunk.start else 0
        following = chunks[chunk.index + 1] if chunk.index + 1 < len(chunks) else None
        for index in range(chunk.start, chunk.stop):
            if following is not None and index >= following.start:
                continue  # emitted, blended, by the following chunk
            frame = read_frame(frame_path(chunk_folder(job, chunk), index - chunk.start)).astype(np.float32)
            if shared and index < previous.stop:
                weight = (index - chunk.start + 1) / (shared + 1)
                before = read_frame(frame_path(chunk_folder(job, previous), index - previous.start)).astype(np.float32)
                frame = (1 - weight) * before + weight * frame
            yield np.round(frame).astype(np.uint8)


def _run_chunks_on_cluster(job: VideoJob, info: VideoInfo, cluster: ClusterSettings, weights, on_chunk):
    from pipeline import cluster as ray_cluster

    scanned = scan_cuts(info, job)
    chunks = plan_chunks(scanned.count, scanned.cuts, cluster.chunk_frames, cluster.overlap_frames)
    ray, workers = ray_cluster.start_workers(cluster, list(job.styles), job.style, weights)
    finished: list[ChunkResult] = []

    def record(result: ChunkResult) -> None:
        finished.append(result)
        if on_chunk:
            on_chunk(len(finished), len(chunks), len(workers))

    try:
        if on_chunk:
            on_chunk(0, len(chunks), len(workers))
        ray_cluster.run_on_pool(workers, "chunk", chunks, (job,), record)
    finally:
        ray_cluster.shutdown_workers(ray, workers)
    return FramesDone(scanned.count, sum(r.computed for r in finished), scanned.cuts), chunks


def _frames_in_range(info: VideoInfo, video: VideoSettings) -> int:
    """Expected frame count, for the progress bar (decoding decides the exact number)."""
    seconds = max(0.0, info.duration - video.start)
    if video.duration:
        seconds = min(seconds, video.duration)
    count = min(info.frames, math.ceil(seconds * info.fps - 1e-6))  # frames whose start time lies in the range
    return min(count, video.max_frames) if video.max_frames else count


def _size_notes(info: VideoInfo, size: tuple[int, int]) -> list[str]:
    notes = []
    if info.rotation:
        notes.append(f"input rotated by {info.rotation} degrees for display: frames are stylized upright and written upright")
    if is_crop(info, size) and size != (info.width, info.height):
        notes.append(f"odd frame size {info.width}x{info.height} cropped to {size[0]}x{size[1]} for yuv420p")
    return notes


def temporal_errors(source: Path, output: Path, max_frames: int | None = None) -> dict[str, float]:
    """Warping error of `output` (flow and occlusions from `source`) and of `source` itself."""
    source_info, output_info = probe(Path(source)), probe(Path(output))
    size = (output_info.width, output_info.height)
    of_output, of_input = WarpingError(), WarpingError()
    count = 0
    with Reader(source_info, size) as frames_in, Reader(output_info, size) as frames_out:
        for frame_in, frame_out in zip(frames_in.frames(max_frames), frames_out.frames(max_frames)):
            of_output.add(frame_in, frame_out)
            of_input.add(frame_in, frame_in)
            count += 1
    return {"output": of_output.value, "input": of_input.value, "frames": count}
