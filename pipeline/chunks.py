"""A video in chunks, for several workers: shots split at the scene cuts, a long shot into chunks
that overlap by a few frames; each chunk stylized in order from a seek to its first frame into its
own folder, and the chunks assembled with a linear ramp across each overlap, so seams do not pop.

A chunk inside a shot does not start cold: two cold stylizations of nearly the same frame differ
in every stroke, which a short ramp cannot hide. The shot's first frame is stylized first (one item
per shot), and every later chunk of the shot starts from that result warped onto its own first
frame, held there by the temporal loss, so that neighbouring chunks begin from the same picture.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from pipeline.engine import Plan, Stylizer
from pipeline.errors import OutputError, SettingsError
from pipeline.executor import make_executor
from pipeline.frames import FramesDone, FrameStylizer, stylize_frames
from pipeline.image_io import load_styles, to_tensor
from pipeline.settings import ClusterSettings, StyleSettings, VideoSettings
from pipeline.shot_memory import HoldReference, PastFrame
from pipeline.temporal import FlowPair, Frame, chained_flows, is_cut, to_float
from pipeline.sources import open_reader, probe
from pipeline.video_io import VideoInfo
from pipeline.work_folder import frame_path, read_frame, write_frame


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
    shot_start: int = 0  # the first frame of its shot

    @property
    def opens_shot(self) -> bool:
        return self.start == self.shot_start


@dataclass
class ChunkResult:
    chunk: Chunk
    computed: int


def scan_cuts(info: VideoInfo, job: VideoJob) -> FramesDone:
    """One decoding pass over the range: the frame count and the scene cuts, as the sequential
    run finds them."""
    done = FramesDone(0, 0, [])
    previous = None
    with open_reader(info, job.size, job.video.start, job.video.duration) as reader:
        for index, rgb in enumerate(reader.frames(job.video.max_frames)):
            frame = Frame(rgb)
            if previous is not None and is_cut(previous, frame, job.video.scene_threshold):
                done.cuts.append(index)
            previous, done.count = frame, index + 1
    return done


def plan_chunks(count: int, cuts: list[int], chunk_frames: int, overlap: int) -> list[Chunk]:
    """Shots split at the cuts; a shot longer than `chunk_frames` into chunks overlapping by
    `overlap`."""
    if chunk_frames <= 2 * overlap:  # else a frame could lie in three chunks
        raise SettingsError(
            f"--chunk-frames {chunk_frames} must exceed twice --overlap-frames {overlap}"
        )
    bounds = [0, *cuts, count]
    chunks: list[Chunk] = []
    for shot_start, shot_stop in zip(bounds, bounds[1:]):
        start = shot_start
        while True:
            stop = min(start + chunk_frames, shot_stop)
            if shot_stop - stop <= overlap:  # a tail no longer than the overlap joins this chunk
                stop = shot_stop
            chunks.append(Chunk(len(chunks), start, stop, shot_start))
            if stop == shot_stop:
                break
            start = stop - overlap
    return chunks


# on_chunk(chunks done, chunks, workers, frames written, frames in all the chunks)
ChunkCallback = Callable[[int, int, int, int, int], None]


@dataclass
class ChunkCounter:
    """How far a chunked video is, for `on_chunk`: the chunks done, the workers, and the frames
    written (a finished chunk's all; the others' counted in their folders, where the workers
    write them; overlapping frames count once in each chunk)."""

    job: VideoJob
    chunks: list[Chunk]
    on_chunk: ChunkCallback | None
    workers: int = 1
    finished: list[ChunkResult] = field(default_factory=list)

    def started(self, workers: int) -> None:
        self.workers = workers
        self.report()

    def record(self, result: ChunkResult) -> None:
        self.finished.append(result)
        self.report()

    def report(self) -> None:
        if self.on_chunk is None:
            return
        done = {result.chunk for result in self.finished}
        written = sum(
            chunk.stop - chunk.start if chunk in done else frames_in(chunk_folder(self.job, chunk))
            for chunk in self.chunks
        )
        frames = sum(chunk.stop - chunk.start for chunk in self.chunks)
        self.on_chunk(len(self.finished), len(self.chunks), self.workers, written, frames)


def frames_in(folder: Path) -> int:
    """The frame PNGs in a chunk's folder (0 before it exists)."""
    with contextlib.suppress(FileNotFoundError):
        with os.scandir(folder) as entries:
            return sum(e.name[:1].isdigit() and e.name.endswith(".png") for e in entries)
    return 0


def chunk_folder(job: VideoJob, chunk: Chunk) -> Path:
    return job.work_dir / f"chunk-{chunk.start:06d}-{chunk.stop:06d}"


def job_stylizer(job: VideoJob, weights=None) -> Stylizer:
    """VGG and the job's style targets; a worker builds it once and keeps it for all its chunks."""
    return Stylizer(job.style_settings, load_styles(job.style_images), weights)


def reader_from(job: VideoJob, info: VideoInfo, index: int):
    """A decoder of the range from frame `index` on (a seek)."""
    return open_reader(info, job.size, job.video.start, None, index)


def input_frame(job: VideoJob, info: VideoInfo, index: int) -> Frame:
    with reader_from(job, info, index) as reader:
        for rgb in reader.frames(1):
            return Frame(rgb)
    raise OutputError(f"{job.source}: frame {index} did not decode")


def shot_path(job: VideoJob, shot_start: int) -> Path:
    return job.work_dir / f"shot-{shot_start:06d}.png"


def stylize_shot_start(job: VideoJob, stylizer: Stylizer, chunk: Chunk) -> ChunkResult:
    """A worker's item before the chunks: the first frame of a shot that spans several chunks,
    cold."""
    path = shot_path(job, chunk.shot_start)
    if path.is_file():
        return ChunkResult(chunk, 0)
    result, _ = FrameStylizer(stylizer, job.video)(
        input_frame(job, probe(job.source, job.video.fps), chunk.shot_start), None
    )
    write_frame(path, result)
    return ChunkResult(chunk, 1)


def head_from_shot(
    job: VideoJob,
    info: VideoInfo,
    chunk: Chunk,
    frame_stylizer: FrameStylizer,
    shot_result: np.ndarray,
) -> tuple[np.ndarray, dict]:
    """A chunk's first frame from its shot's first result, carried along the flows between the
    frames in between (decoded once more: milliseconds a frame against seconds of stylizing)."""
    count, decoded = chunk.start - chunk.shot_start + 1, 0

    def frames(reader) -> Iterator[Frame]:
        nonlocal decoded
        for rgb in reader.frames(count):
            decoded += 1
            yield Frame(rgb)

    with reader_from(job, info, chunk.shot_start) as reader:
        decoding = frames(reader)
        first = next(decoding, None)
        if first is not None:
            last, flows = chained_flows(first, decoding, frame_stylizer.flows)
    if decoded != count or first is None:
        raise OutputError(
            f"{job.source}: frames {chunk.shot_start}-{chunk.start} decoded {decoded}"
        )
    return stylize_head(frame_stylizer, last, PastFrame(0, first, shot_result), flows)


def stylize_head(
    frame_stylizer: FrameStylizer, frame: Frame, shot_first: PastFrame, flows: FlowPair
) -> tuple[np.ndarray, dict]:
    """The first frame of a chunk inside a shot: the shot's first result carried onto it along
    `flows` (`temporal.chained_flows`: the path the previous chunk's frames took), then a cold
    frame's budget of iterations with the temporal loss holding it where the flows agree. Where they
    cannot vouch for a pixel, it is restored from the shot's first result where the input looks as
    then (a still camera, --restore-still), as in the previous chunk."""
    video = frame_stylizer.video
    reference = None
    if video.hold_still > 0:
        reference = HoldReference.settled(shot_first.result, shot_first.frame.rgb)
    first, content = replace(shot_first, shot_start=True), to_float(frame.rgb)
    warm, terms = frame_stylizer.warm_start(
        frame, 0, shot_first, content=content, flows=flows, past=(first,), reference=reference
    )
    plan = Plan(init=to_tensor(warm.first_image), extra_terms=tuple(terms), hold=warm.hold)
    result = frame_stylizer.stylizer.stylize(to_tensor(content), plan)
    return frame_stylizer.finish(0, frame, result, reference, warm)


def stylize_chunk(job: VideoJob, stylizer: Stylizer, chunk: Chunk) -> ChunkResult:
    """A worker's item: the chunk's frames, decoded from a seek to its first frame, stylized in
    order. Where the shot's first result was made first, the chunk's first frame is that result (the
    chunk opens the shot) or starts from it (the chunk lies inside the shot)."""
    info = probe(job.source, job.video.fps)
    folder = chunk_folder(job, chunk)
    folder.mkdir(parents=True, exist_ok=True)
    frame_stylizer = FrameStylizer(stylizer, job.video, folder)
    head, shot_first = frame_path(folder, 0), shot_path(job, chunk.shot_start)
    made_head = False
    if shot_first.is_file() and not head.is_file():
        result = read_frame(shot_first)
        if not chunk.opens_shot:
            result, _ = head_from_shot(job, info, chunk, frame_stylizer, result)
            made_head = True
        frame_stylizer.state.commit(0, partial(write_frame, head, result), due=True)
    with reader_from(job, info, chunk.start) as reader:
        done = stylize_frames(
            reader.frames(chunk.stop - chunk.start),
            frame_stylizer,
            folder,
            job.video,
            chunk.stop - chunk.start,
        )
    if done.count != chunk.stop - chunk.start:
        raise OutputError(
            f"{job.source}: chunk {chunk.start}-{chunk.stop} decoded {done.count} frames"
        )
    return ChunkResult(chunk, done.computed + made_head)


def assemble(job: VideoJob, chunks: list[Chunk], overlap: int) -> Iterator[np.ndarray]:
    """The final frames: each from its chunk, and across an overlap a linear ramp from one chunk's
    result to the next's, so that the seam does not pop."""
    for previous, chunk in zip([None, *chunks], chunks):
        shared = (
            previous.stop - chunk.start
            if previous is not None and previous.stop > chunk.start
            else 0
        )
        following = chunks[chunk.index + 1] if chunk.index + 1 < len(chunks) else None
        for index in range(chunk.start, chunk.stop):
            if following is not None and index >= following.start:
                continue  # emitted, blended, by the following chunk
            frame = read_frame(frame_path(chunk_folder(job, chunk), index - chunk.start))
            if shared and index < previous.stop:
                weight = (index - chunk.start + 1) / (shared + 1)
                before = read_frame(frame_path(chunk_folder(job, previous), index - previous.start))
                frame = np.round((1 - weight) * before.astype(np.float32) + weight * frame).astype(
                    frame.dtype
                )
            yield frame


def chunk_layout(cluster: ClusterSettings) -> dict:
    """What keys a chunked run's work folder besides the job: the settings that change its frames
    (near the seams). Where it runs (address, worker count, CPUs) changes none, so a job moved to
    another cluster keeps its finished chunks."""
    return {
        "chunk_frames": cluster.chunk_frames,
        "overlap_frames": cluster.overlap_frames,
        "heads": "from the shot's first frame" if cluster.shot_heads else "cold",
    }


def stylize_chunks(
    job: VideoJob,
    info: VideoInfo,
    cluster: ClusterSettings,
    weights: str | None = None,
    on_chunk: ChunkCallback | None = None,
) -> tuple[FramesDone, list[Chunk]]:
    """Plan the chunks (one decoding pass for the count and the cuts), then stylize each on a worker
    of the executor `cluster` chooses; `on_chunk` hears how far the chunks are (`ChunkCounter`)."""
    scanned = scan_cuts(info, job)
    chunks = plan_chunks(scanned.count, scanned.cuts, cluster.chunk_frames, cluster.overlap_frames)
    counter = ChunkCounter(job, chunks, on_chunk)
    # shots over several chunks: their first frame first, so that each chunk inside starts from it
    split_shots = {chunk.shot_start for chunk in chunks if not chunk.opens_shot}
    openers = [chunk for chunk in chunks if chunk.opens_shot and chunk.shot_start in split_shots]
    heads: list[ChunkResult] = []
    if openers and cluster.shot_heads:
        heads = make_executor(cluster, counter.started, counter.report).run(
            partial(job_stylizer, job, weights), partial(stylize_shot_start, job), openers
        )
    make_executor(cluster, counter.started, counter.report).run(
        partial(job_stylizer, job, weights), partial(stylize_chunk, job), chunks, counter.record
    )
    computed = sum(result.computed for result in [*heads, *counter.finished])
    return FramesDone(scanned.count, computed, scanned.cuts), chunks
