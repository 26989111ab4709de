"""A video in, a stylized video out: decode -> stylize frame by frame (warm-started along the
flow) -> encode. Each frame is written atomically into a work folder, so a killed run resumes
at the first missing frame and reproduces the frames an uninterrupted run would have made.
With `--ray`, chunks of frames run on Ray workers instead (`pipeline.chunks`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.chunks import ChunkCallback, VideoJob, assemble, chunk_layout, stylize_chunks
from pipeline.engine import Stylizer, check_size
from pipeline.errors import OutputError, SettingsError
from pipeline.executor import check_worker_device
from pipeline.frames import FrameCallback, FramesDone, FrameStylizer, stylize_frames
from pipeline.image_io import check_output_file, load_styles
from pipeline.passes import pass_folder, run_passes
from pipeline.sequence_io import (
    check_sequence_output,
    is_sequence_output,
    numbering_gaps,
    output_names,
    write_sequence,
)
from pipeline.settings import ClusterSettings, StyleSettings, VideoSettings
from pipeline.sources import open_reader, probe
from pipeline.temporal_eval import temporal_errors
from pipeline.video_io import (
    VIDEO_SUFFIXES,
    EncodeSettings,
    Streams,
    VideoInfo,
    check_complete,
    encode,
    encode_settings,
    even_size,
    is_crop,
    plan_streams,
)
from pipeline.work_folder import FrameLog, frame_path, other_work_folders, read_frame, work_folder

__all__ = [
    "VideoResult",
    "check_range",
    "check_video_output",
    "stylize_video",
    "temporal_errors",
]  # temporal_errors: for the CLI


# the stylized frames, in order, each time it is called: for the encoder or the frame files
FrameSource = Callable[[], Iterable[np.ndarray]]


@dataclass
class VideoResult:
    output: Path
    frames: int
    computed: int  # frames stylized by this run (the rest were resumed)
    cuts: list[int]
    work_dir: Path
    log: list[str]  # things the user should know (odd size cropped, audio re-encoded, ...)


def check_video_output(
    source: Path, output: Path, style_images: list[Path], overwrite: bool
) -> None:
    if output.suffix.lower() not in VIDEO_SUFFIXES:
        raise OutputError(
            f"{output}: unknown video container {output.suffix!r}; use one of "
            f"{', '.join(VIDEO_SUFFIXES)}, "
            f"or a folder or pattern (out/%04d.png) for frames"
        )
    check_output_file(output, [source, *style_images], overwrite)


def check_range(info: VideoInfo, video: VideoSettings) -> None:
    if video.start >= info.duration:
        raise SettingsError(
            f"--start {video.start:g}: past the end of {info.path} ({info.duration:.2f} s long)"
        )


@dataclass(frozen=True)
class _Output:
    """Where the result goes, settled before any work: a video file (its encoder and streams) or
    frames."""

    path: Path
    encode: EncodeSettings | None = None
    streams: Streams | None = None
    targets: tuple[Path, ...] = ()  # frame files, for an output of frames

    def write(
        self,
        frames: FrameSource,
        info: VideoInfo,
        size: tuple[int, int],
        video: VideoSettings,
        count: int,
        overwrite: bool,
    ) -> None:
        if self.encode is None:
            write_sequence(frames(), list(self.targets[:count]), overwrite)
        else:
            encode(
                frames,
                self.path,
                size,
                info.fps,
                source=info,
                start=video.start,
                count=count,
                settings=self.encode,
                streams=self.streams,
            )


def _plan_output(
    info: VideoInfo,
    output: Path,
    style_images: list[Path],
    video: VideoSettings,
    overwrite: bool,
    work_dir: Path,
) -> _Output:
    if is_sequence_output(output):
        targets = output_names(
            output, info, info.first_index(video.start), _frames_in_range(info, video)
        )
        check_sequence_output(
            targets, [*info.files, info.path, *style_images], overwrite, resuming=work_dir.is_dir()
        )
        return _Output(output, targets=tuple(targets))
    check_video_output(info.path, output, style_images, overwrite)
    settings = encode_settings(output, video.codec, video.crf)
    return _Output(output, settings, plan_streams(info, output, settings))


def stylize_video(
    source: Path,
    style_images: list[Path],
    output: Path,
    *,
    style_settings: StyleSettings,
    video: VideoSettings = VideoSettings(),
    weights: str | None = None,
    overwrite: bool = False,
    on_frame: FrameCallback | None = None,
    cluster: ClusterSettings | None = None,
    on_chunk: ChunkCallback | None = None,
) -> VideoResult:
    """Decode (a video or a sequence of frames), stylize frame by frame, encode (or write frames).
    `cluster`: run chunks of frames on several devices of this machine, or on Ray workers."""
    source, output, style_images = Path(source), Path(output), [Path(p) for p in style_images]
    info = _probe_range(source, video)
    styles = load_styles(style_images)  # also the check, before any work, that each style decodes
    size = even_size(info.width, info.height, style_settings.size)
    check_size(size[1], size[0], style_settings, source)
    _check_cluster(video, cluster)
    check_worker_device(cluster, style_settings)
    # chunked frames differ from sequential ones near seams
    layout = chunk_layout(cluster) if cluster else None
    work_dir = work_folder(output, source, style_images, style_settings, video, layout, info.files)
    target = _plan_output(info, output, style_images, video, overwrite, work_dir)
    log = _input_notes(info, size) + list(target.streams.notes if target.streams else ())
    log += _start_over_notes(work_dir)
    if cluster is None:
        stylizer = FrameStylizer(Stylizer(style_settings, styles, weights), video, work_dir)
        done, frames = _stylize_in_order(info, size, video, stylizer, work_dir, on_frame)
    else:
        job = VideoJob(source, tuple(style_images), style_settings, video, size, work_dir)
        done, frames, note = _stylize_in_chunks(job, info, cluster, weights, on_chunk)
        log.append(note)
    if done.count == 0:
        raise OutputError(f"{source}: no frames decoded in the chosen range")
    log += _short_decode_warning(info, video, done.count, work_dir)
    log += [f"scene cut before frame {i}" for i in done.cuts]
    target.write(frames, info, size, video, done.count, overwrite)
    if not video.keep_frames:
        shutil.rmtree(work_dir, ignore_errors=True)
    return VideoResult(output, done.count, done.computed, done.cuts, work_dir, log)


def _probe_range(source: Path, video: VideoSettings) -> VideoInfo:
    """The input's description, refused before any work where the range starts past its end or a
    video file is cut short."""
    info = probe(source, video.fps)
    check_range(info, video)
    if not info.files:
        check_complete(info)
    return info


def _check_cluster(video: VideoSettings, cluster: ClusterSettings | None) -> None:
    if cluster and video.passes > 1:
        raise SettingsError(
            f"--passes {video.passes}: not with --ray or --devices yet (the passes run over the "
            "whole video in one process)"
        )


def _stylize_in_order(
    info: VideoInfo,
    size: tuple[int, int],
    video: VideoSettings,
    stylizer: FrameStylizer,
    work_dir: Path,
    on_frame: FrameCallback | None,
) -> tuple[FramesDone, FrameSource]:
    """Every frame in this process, then the refinement passes; the frames to write are the last
    pass's, read back from the work folder."""
    with open_reader(info, size, video.start, video.duration) as reader:
        done = stylize_frames(
            reader.frames(video.max_frames),
            stylizer,
            work_dir,
            video,
            _frames_in_range(info, video) * video.passes,
            on_frame,
        )
    done.computed += run_passes(info, size, video, stylizer, work_dir, done, on_frame)
    final = pass_folder(work_dir, video.passes)
    return done, lambda: (read_frame(frame_path(final, i)) for i in range(done.count))


def _stylize_in_chunks(
    job: VideoJob,
    info: VideoInfo,
    cluster: ClusterSettings,
    weights: str | None,
    on_chunk: ChunkCallback | None,
) -> tuple[FramesDone, FrameSource, str]:
    """Chunks of frames on Ray workers; the frames to write are the chunks blended across their
    seams, and a note says how the video was cut up."""
    done, chunks = stylize_chunks(job, info, cluster, weights, on_chunk)
    note = (
        f"{len(chunks)} chunks of up to {cluster.chunk_frames} frames, overlapping by "
        f"{cluster.overlap_frames}"
    )
    return done, lambda: assemble(job, chunks, cluster.overlap_frames), note


def _start_over_notes(work_dir: Path) -> list[str]:
    """A new run beside folders an earlier run left: they are not resumed, and take disk."""
    if work_dir.is_dir():
        return []
    return [
        f"{other}: frames of a run with other settings or an older version, not resumed; this run "
        "starts over (delete that folder to free its space)"
        for other in other_work_folders(work_dir)
    ]


def _short_decode_warning(
    info: VideoInfo, video: VideoSettings, decoded: int, work_dir: Path
) -> list[str]:
    """check_complete passed, so damage inside the file, found while decoding: said in the output
    and frames.jsonl."""
    expected = _frames_in_range(info, video)
    if decoded >= expected - 1:
        return []
    warning = (
        f"warning: {info.path}: only {decoded} of the {expected} frames announced could be "
        "decoded; the output is that much shorter"
    )
    with FrameLog(work_dir) as frame_log:
        frame_log.write({"warning": warning})
    return [warning]


def _frames_in_range(info: VideoInfo, video: VideoSettings) -> int:
    """Expected frame count, for the progress bar (decoding decides the exact number)."""
    count = info.frames_between(video.start, video.duration)  # frames whose time lies in the range
    return min(count, video.max_frames) if video.max_frames else count


def _input_notes(info: VideoInfo, size: tuple[int, int]) -> list[str]:
    """What the user should know about how the input is read."""
    notes = numbering_gaps(list(info.files))
    if info.files:
        notes.append(f"{len(info.files)} frames read as a sequence at {_rate(info.fps)} fps")
    if info.variable_rate:
        notes.append(
            f"variable frame rate (average {_rate(info.fps)} fps): each frame is written at its "
            "own time"
        )
    if info.colour.hdr:
        notes.append(
            f"HDR ({info.colour.hdr}, bt{info.colour.primaries} primaries) tone-mapped to SDR "
            "bt709 for the network; the output is SDR bt709"
        )
    elif info.colour.bits > 8:
        notes.append(f"{info.colour.bits}-bit input kept at 16 bits up to the network")
    if info.rotation:
        notes.append(
            f"input rotated by {info.rotation} degrees for display: frames are stylized upright "
            "and written upright"
        )
    if is_crop(info, size) and size != (info.width, info.height):
        notes.append(
            f"odd frame size {info.width}x{info.height} cropped to {size[0]}x{size[1]} for yuv420p"
        )
    return notes


def _rate(fps) -> str:
    return f"{float(fps):.3f}".rstrip("0").rstrip(".")
