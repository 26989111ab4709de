"""A video in chunks, for several workers: shots split at the scene cuts, a long shot into chunks
that overlap by a few frames; each chunk stylized in order from a seek to its first frame into its
own folder, and the chunks assembled with a linear ramp across each overlap, so seams do not pop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from pipeline.engine import Stylizer
from pipeline.errors import OutputError, SettingsError
from pipeline.executor import make_executor
from pipeline.frames import FramesDone, FrameStylizer, stylize_frames
from pipeline.image_io import load_styles
from pipeline.settings import ClusterSettings, StyleSettings, VideoSettings
from pipeline.temporal import Frame, is_cut
from pipeline.video_io import Reader, VideoInfo, probe
from pipeline.work_folder import frame_path, read_frame


@dataclass(frozen=True)
class VideoJob:
    """What every worker needs to stylize part of a video; plain values, so it pickles for Ray."""

    source: Path
    style_images: tuple[Path, ...]
    style_settings: StyleSettings
    video: VideoSettings
    size: tuple[int, int]
    work_dir: Path


@dataclass(frozen=True)
class Chunk:
    """Frames [start, stop) of the range, inside one shot; neighbours overlap by a few frames."""

    index: int
    start: int
    stop: int


@dataclass
class ChunkResult:
    chunk: Chunk
    computed: int


def scan_cuts(info: VideoInfo, job: VideoJob) -> FramesDone:
    """One decoding pass over the range: the frame count and the scene cuts, as the sequential run finds them."""
    done = FramesDone(0, 0, [])
    previous = None
    with Reader(info, job.size, job.video.start, job.video.duration) as reader:
        for index, rgb in enumerate(reader.frames(job.video.max_frames)):
            frame = Frame(rgb)
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


def job_stylizer(job: VideoJob, weights=None) -> Stylizer:
    """VGG and the job's style targets; a worker builds it once and keeps it for all its chunks."""
    return Stylizer(job.style_settings, load_styles(job.style_images), weights)


def stylize_chunk(job: VideoJob, stylizer: Stylizer, chunk: Chunk) -> ChunkResult:
    """A worker's item: the chunk's frames, decoded from a seek to its first frame, stylized in order."""
    info = probe(job.source)
    # half a frame early: -ss keeps frames whose time is at or after it, and float times round
    start = job.video.start + max(0.0, (chunk.start - 0.5) / float(info.fps))
    folder = chunk_folder(job, chunk)
    with Reader(info, job.size, start) as reader:
        done = stylize_frames(reader.frames(chunk.stop - chunk.start), FrameStylizer(stylizer, job.video, folder),
                              folder, job.video, chunk.stop - chunk.start)
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


def chunk_layout(cluster: ClusterSettings) -> dict:
    """What keys a chunked run's work folder besides the job: the settings that change its frames
    (near the seams). Where it runs (address, worker count, CPUs) changes none, so a job moved to
    another cluster keeps its finished chunks."""
    return {"chunk_frames": cluster.chunk_frames, "overlap_frames": cluster.overlap_frames}



def stylize_chunks(job: VideoJob, info: VideoInfo, cluster: ClusterSettings, weights: str | None = None,
                   on_chunk: Callable[[int, int, int], None] | None = None) -> tuple[FramesDone, list[Chunk]]:
    """Plan the chunks (one decoding pass for the count and the cuts), then stylize each on a worker
    of the executor `cluster` chooses; `on_chunk(done, total, workers)` after each."""
    scanned = scan_cuts(info, job)
    chunks = plan_chunks(scanned.count, scanned.cuts, cluster.chunk_frames, cluster.overlap_frames)
    workers: list[int] = []
    finished: list[ChunkResult] = []

    def started(count: int) -> None:
        workers.append(count)
        if on_chunk:
            on_chunk(0, len(chunks), count)

    def record(result: ChunkResult) -> None:
        finished.append(result)
        if on_chunk:
            on_chunk(len(finished), len(chunks), workers[-1] if workers else 1)

    make_executor(cluster, started).run(partial(job_stylizer, job, weights), partial(stylize_chunk, job), chunks, record)
    return FramesDone(scanned.count, sum(r.computed for r in finished), scanned.cuts), chunks
