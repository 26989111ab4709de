"""A video in, a stylized video out: decode -> stylize frame by frame (warm-started along the
flow) -> encode. Each frame is written atomically into a work folder, so a killed run resumes
at the first missing frame and reproduces the frames an uninterrupted run would have made.
"""

from __future__ import annotations

import hashlib
import math
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.engine import Stylizer
from pipeline.errors import OutputError
from pipeline.image_io import atomic_path, load_rgb, to_array, to_tensor
from pipeline.losses import TemporalLoss
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.temporal import FlowEstimator, WarpingError, carry_over, fill_disocclusions, scene_change, to_float
from pipeline.video_io import VIDEO_SUFFIXES, EncodeSettings, Reader, VideoInfo, encode, even_size, probe


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


def check_video_output(source: Path, output: Path, overwrite: bool) -> None:
    if output.suffix.lower() not in VIDEO_SUFFIXES:
        raise OutputError(f"{output}: unknown video container {output.suffix!r}; use one of {', '.join(VIDEO_SUFFIXES)}")
    if output.resolve() == source.resolve():
        raise OutputError(f"{output}: the output would overwrite the input")
    if output.exists() and not overwrite:
        raise OutputError(f"{output}: exists already (use --overwrite)")


def file_digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def work_folder(output: Path, source: Path, styles: list[Path], style: StyleSettings, video: VideoSettings) -> Path:
    """Keyed by the input's and styles' content and every setting that changes the frames."""
    frames_only = {k: v for k, v in asdict(video).items() if k not in ("codec", "crf", "keep_frames")}
    key = json.dumps([file_digest(source), [file_digest(p) for p in styles], asdict(style), frames_only], sort_keys=True, default=str)
    return output.parent / f".{output.name}.frames-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def frame_path(work_dir: Path, index: int) -> Path:
    return work_dir / f"{index:06d}.png"


def read_frame(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def write_frame(path: Path, frame: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
            raise OutputError(f"{path}: cannot write frame")


class FrameStylizer:
    """Frame t from frame t-1: the per-frame policy (cold start, warm start, temporal loss)."""

    def __init__(self, stylizer: Stylizer, video: VideoSettings):
        self.stylizer, self.video = stylizer, video
        self.flows = FlowEstimator()

    def __call__(self, frame: np.ndarray, previous: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, dict]:
        """`previous`: (input frame, stylized uint8 frame) of t-1, or None for a cold start."""
        content = to_float(frame)
        if previous is None or self.video.init == "content":
            result = self.stylizer.stylize(to_tensor(content))
        else:
            prev_in, prev_out = to_float(previous[0]), to_float(previous[1])
            extra = []
            if self.video.init == "prev":
                init = prev_out
            else:
                carried = carry_over(prev_out, prev_in, content, self.flows)
                init = fill_disocclusions(carried, content, self.video.fill)
                if self.video.temporal_weight > 0:
                    loss = TemporalLoss(to_tensor(carried.image), torch.from_numpy(carried.mask)[None, None])
                    extra.append(("temporal", self.video.temporal_weight, loss))
            result = self.stylizer.stylize(to_tensor(content), init=to_tensor(init), extra_losses=extra,
                                           iterations=self.video.iterations_next)
        out = np.round(to_array(result.image) * 255).astype(np.uint8)
        return out, {"iterations": result.iterations, "evaluations": result.evaluations,
                     "seconds": result.seconds, "losses": result.losses}


def stylize_video(
    source: Path,
    styles: list[Path],
    output: Path,
    style: StyleSettings,
    video: VideoSettings = VideoSettings(),
    weights: str | None = None,
    overwrite: bool = False,
    on_frame: FrameCallback | None = None,
) -> VideoResult:
    source, output = Path(source), Path(output)
    check_video_output(source, output, overwrite)
    info = probe(source)
    style_images = [load_rgb(Path(p)) for p in styles]
    size = even_size(info.width, info.height, style.size)
    log = _size_notes(info, size, style.size)
    work_dir = work_folder(output, source, [Path(p) for p in styles], style, video)
    work_dir.mkdir(parents=True, exist_ok=True)
    total = _frames_in_range(info, video)
    stylizer = Stylizer(style, style_images, weights)
    frame_stylizer = FrameStylizer(stylizer, video)
    cuts, computed, count = [], 0, 0
    with Reader(info, size, video.start, video.duration) as reader, open(work_dir / "frames.jsonl", "a") as frame_log:
        previous_in: np.ndarray | None = None
        for index, frame in enumerate(reader.frames(video.max_frames)):
            count = index + 1
            cut = previous_in is not None and scene_change(previous_in, frame) > video.scene_threshold
            if cut:
                cuts.append(index)
            path = frame_path(work_dir, index)
            if path.is_file():
                report = FrameReport(index, total, previous_in is None or cut, cut, skipped=True)
            else:
                previous = None if previous_in is None or cut else (previous_in, read_frame(frame_path(work_dir, index - 1)))
                stylized, stats = frame_stylizer(frame, previous)
                write_frame(path, stylized)
                computed += 1
                report = FrameReport(index, total, previous is None or video.init == "content", cut, False, **stats)
                frame_log.write(json.dumps({"frame": index, "cold": report.cold, "cut": cut, **stats}) + "\n")
                frame_log.flush()
            if on_frame:
                on_frame(report)
            previous_in = frame
    if count == 0:
        raise OutputError(f"{source}: no frames decoded in the chosen range")
    log += [f"scene cut before frame {i}" for i in cuts]
    duration = count / info.fps
    encode(lambda: (read_frame(frame_path(work_dir, i)) for i in range(count)), output, size, info.fps, info,
           video.start, float(duration), EncodeSettings(codec=video.codec, crf=video.crf))
    if not video.keep_frames:
        shutil.rmtree(work_dir, ignore_errors=True)
    return VideoResult(output, count, computed, cuts, work_dir, log)


def _frames_in_range(info: VideoInfo, video: VideoSettings) -> int:
    """Expected frame count, for the progress bar (decoding decides the exact number)."""
    seconds = max(0.0, info.duration - video.start)
    if video.duration:
        seconds = min(seconds, video.duration)
    count = min(info.frames, math.ceil(seconds * info.fps - 1e-6))  # frames whose start time lies in the range
    return min(count, video.max_frames) if video.max_frames else count


def _size_notes(info: VideoInfo, size: tuple[int, int], long_side: int | None) -> list[str]:
    notes = []
    if info.rotation:
        notes.append(f"input rotated by {info.rotation} degrees for display: frames are stylized upright and written upright")
    exact = even_size(info.width, info.height, None) if not long_side else None
    if exact and (exact != (info.width, info.height)):
        notes.append(f"odd frame size {info.width}x{info.height} cropped to {exact[0]}x{exact[1]} for yuv420p")
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
