"""Video in and out through ffmpeg pipes: probe with PyAV, decode and encode raw RGB with ffmpeg-python.

Frames stream one at a time; a whole video is never held in memory. Audio never passes through
Python: the encoder takes the source file again as a second input and copies its audio.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import ffmpeg
import numpy as np

from pipeline.errors import InputError, OutputError
from pipeline.image_io import atomic_path

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")


def ffmpeg_binary() -> str:
    """ffmpeg on PATH, else the one the imageio-ffmpeg wheel carries (a fresh machine needs no system package)."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # as displayed (after rotation)
    height: int
    fps: Fraction
    frames: int
    duration: float  # seconds, of the video stream
    rotation: int  # degrees the player rotates by; decoding applies it
    audio: tuple[str, ...]  # codec names of the audio streams
    full_range: bool


def probe(path: Path) -> VideoInfo:
    """Exact rational rate, frame count, rotation and audio streams, read with PyAV."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            stream = container.streams.video[0]
            fps = Fraction(stream.average_rate or stream.guessed_rate or 0)
            frames = stream.frames or _count_frames(container, stream)
            rotation = _rotation(container, stream)
            width, height = stream.codec_context.width, stream.codec_context.height
            audio = tuple(a.codec_context.name for a in container.streams.audio)
            full_range = (stream.codec_context.pix_fmt or "").startswith("yuvj") or stream.codec_context.color_range == 2
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"{path}: not a readable video ({str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__})") from None
    if frames <= 0 or fps <= 0 or width <= 0:
        raise InputError(f"{path}: video stream has no decodable frames")
    if rotation % 180:
        width, height = height, width
    return VideoInfo(path, width, height, fps, frames, float(frames / fps), rotation, audio, full_range)


def _count_frames(container, stream) -> int:
    count = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0)
    return count


def _rotation(container, stream) -> int:
    """Display rotation in degrees from the first frame's display matrix, or 0."""
    try:
        for frame in container.decode(stream):
            return int(round(getattr(frame, "rotation", 0) or 0)) % 360
    except Exception:
        return 0
    return 0


def even_size(width: int, height: int, long_side: int | None) -> tuple[int, int]:
    """Frame size for stylization: long side `long_side` (or as is), each side even for yuv420p."""
    scale = (long_side / max(width, height)) if long_side else 1.0
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def is_crop(info: VideoInfo, size: tuple[int, int]) -> bool:
    """At full size, an odd side loses its last pixel rather than being resampled."""
    return 0 <= info.width - size[0] <= 1 and 0 <= info.height - size[1] <= 1


class Reader:
    """Decoded frames as H x W x 3 uint8 RGB at `size`, one at a time: `read() -> frame or None`."""

    def __init__(self, info: VideoInfo, size: tuple[int, int], start: float = 0.0, duration: float | None = None):
        self.width, self.height = size
        input_args = {"ss": start} if start else {}
        if duration:
            input_args["t"] = duration
        stream = ffmpeg.input(str(info.path), **input_args).video
        if is_crop(info, size):
            stream = stream.filter("crop", self.width, self.height, 0, 0)
        else:
            stream = stream.filter("scale", self.width, self.height, flags="area")
        stream = ffmpeg.output(stream, "pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
        self.process = stream.run_async(cmd=ffmpeg_binary(), pipe_stdout=True, pipe_stderr=True, quiet=True)
        self.path = info.path

    def read(self) -> np.ndarray | None:
        size = self.width * self.height * 3
        data = self.process.stdout.read(size)
        if len(data) < size:
            return None
        return np.frombuffer(data, np.uint8).reshape(self.height, self.width, 3)

    def frames(self, limit: int | None = None) -> Iterator[np.ndarray]:
        """Frames in order, at most `limit`."""
        count = 0
        while limit is None or count < limit:
            frame = self.read()
            if frame is None:
                return
            yield frame
            count += 1

    def close(self) -> None:
        self.process.stdout.close()
        self.process.kill()
        self.process.wait()
        self.process.stderr.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class EncodeSettings:
    codec: str = "libx264"
    crf: int = 18
    preset: str = "medium"
    pix_fmt: str = "yuv420p"


class Writer:
    """Raw RGB frames in (`write(frame)`), an encoded file out, with the source's audio taken from
    the source file itself. `close()` checks ffmpeg's exit status."""

    def __init__(self, path: Path, size: tuple[int, int], fps: Fraction, source: VideoInfo | None = None,
                 start: float = 0.0, duration: float | None = None, settings: EncodeSettings = EncodeSettings(),
                 copy_audio: bool = True):
        self.path = Path(path)
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{size[0]}x{size[1]}", framerate=str(fps))
        streams, audio_args = [video.video], {}
        if source is not None and source.audio:
            input_args = {"ss": start} if start else {}
            if duration:
                input_args["t"] = duration
            streams.append(ffmpeg.input(str(source.path), **input_args).audio)
            audio_args = {"acodec": "copy" if copy_audio else _audio_codec_for(self.path)}
        out = ffmpeg.output(*streams, str(self.path), vcodec=settings.codec, crf=settings.crf, preset=settings.preset,
                            pix_fmt=settings.pix_fmt, r=str(fps), **audio_args).overwrite_output()
        self.process = subprocess.Popen(out.compile(cmd=ffmpeg_binary()), stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def write(self, frame: np.ndarray) -> None:
        try:
            self.process.stdin.write(np.ascontiguousarray(frame, np.uint8).tobytes())
        except BrokenPipeError:
            self._fail()

    def close(self) -> None:
        self.process.stdin.close()
        if self.process.wait() != 0:
            self._fail()
        self.process.stderr.close()

    def abort(self) -> None:
        self.process.kill()
        self.process.wait()

    def _fail(self) -> None:
        self.abort()
        tail = self.process.stderr.read().decode(errors="replace").strip().splitlines()[-3:]
        raise OutputError(f"{self.path}: ffmpeg failed to encode ({' / '.join(tail)[:300]})")


def _audio_codec_for(output: Path) -> str:
    return "libopus" if output.suffix.lower() == ".webm" else "aac"


def encode(frames: Callable[[], Iterable[np.ndarray]], output: Path, size: tuple[int, int], fps: Fraction,
           source: VideoInfo | None = None, start: float = 0.0, duration: float | None = None,
           settings: EncodeSettings = EncodeSettings()) -> None:
    """Encode the frames `frames()` yields into `output`, atomically (temporary file, then rename).

    Audio is copied when the container takes it, else re-encoded (AAC; Opus for WebM): the
    second try calls `frames()` again.
    """
    attempts = (True, False) if source is not None and source.audio else (True,)
    for copy_audio in attempts:
        try:
            with atomic_path(output) as tmp:
                writer = Writer(tmp, size, fps, source, start, duration, settings, copy_audio)
                try:
                    for frame in frames():
                        writer.write(frame)
                    writer.close()
                except BaseException:
                    writer.abort()
                    raise
            return
        except OutputError:
            if copy_audio is attempts[-1]:
                raise
