"""Video in and out through ffmpeg pipes: probe with PyAV, decode and encode raw RGB with ffmpeg-python.

Frames stream one at a time; a whole video is never held in memory. Audio never passes through
Python: the encoder takes the source file again as a second input and copies its audio.
"""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import ffmpeg
import numpy as np

from pipeline.errors import InputError, OutputError, SettingsError, first_line
from pipeline.image_io import atomic_path
from pipeline.settings import VIDEO_CODEC, VIDEO_CRF

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")


def ffmpeg_binary() -> str:
    """ffmpeg on PATH, else the one the imageio-ffmpeg wheel carries (a fresh machine needs no system package)."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def check_encoder(codec: str) -> None:
    """Refuse a `--codec` this ffmpeg cannot encode video with, before any work (not when the
    first frames are encoded). An encoder name (libx264) or a codec name ffmpeg maps to its
    default encoder (h264) passes."""
    binary = ffmpeg_binary()
    try:
        encoders = _video_encoders(binary)
    except (OSError, subprocess.SubprocessError) as err:
        raise SettingsError(f"--codec {codec}: cannot list the encoders of {binary} ({err})") from None
    if codec not in encoders:
        raise SettingsError(f"--codec {codec}: not a video encoder of this ffmpeg (e.g. libx264, libx265, libvpx-vp9)")


@functools.cache
def _video_encoders(binary: str) -> frozenset[str]:
    """Names of the video encoders `binary -encoders` lists, and the codecs they encode ("(codec h264)")."""
    listing = subprocess.run([binary, "-hide_banner", "-encoders"], capture_output=True, text=True, check=True, timeout=60).stdout
    names: set[str] = set()
    table = False
    for line in listing.splitlines():
        fields = line.split()
        if fields and set(fields[0]) == {"-"}:
            table = True  # the legend above " ------" explains the flags
        elif table and len(fields) >= 2 and fields[0].startswith("V"):
            names.add(fields[1])
            names.update(re.findall(r"\(codec ([^)\s]+)\)", line))
    return frozenset(names)


# Running ffmpeg children, so that a signal handler can end them when the process must exit at once.
_children: weakref.WeakSet[subprocess.Popen] = weakref.WeakSet()


def start_ffmpeg(stream, stdin: bool = False, stdout: bool = False) -> tuple[subprocess.Popen, tempfile.TemporaryFile]:
    """Start ffmpeg on an ffmpeg-python graph with no pipe left unread.

    No stats line, errors only, and stderr goes to a temporary file rather than a pipe: ffmpeg's
    half-second stats line would fill an unread 64 KiB pipe in about five minutes and block it for
    good. The file keeps ffmpeg's last words for the error message.
    """
    args = stream.global_args("-nostats", "-loglevel", "error").compile(cmd=ffmpeg_binary())
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(args, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                               stdout=subprocess.PIPE if stdout else subprocess.DEVNULL, stderr=log)
    _children.add(process)
    return process, log


def last_words(log) -> str:
    """What ffmpeg said, on one line: its first error (usually the cause) and its last two lines."""
    log.seek(0)
    lines = [re.sub(r"^\[[^]]* @ 0x[0-9a-f]+\] ", "", line.strip()) for line in log.read().decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    said = lines if len(lines) <= 3 else [lines[0], "...", *lines[-2:]]
    return " / ".join(said)[:400] or "no message"


def kill_children() -> None:
    """End every ffmpeg this process started (the signal handler's last resort)."""
    for process in list(_children):
        if process.poll() is None:
            process.kill()


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
            frames = stream.frames or _announced_frames(container, stream) or count_packets(container, stream)
            rotation = _rotation(container, stream)
            width, height = stream.codec_context.width, stream.codec_context.height
            audio = tuple(a.codec_context.name for a in container.streams.audio)
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"{path}: not a readable video ({first_line(err)})") from None
    if frames <= 0 or fps <= 0 or width <= 0:
        raise InputError(f"{path}: video stream has no decodable frames")
    if rotation % 180:
        width, height = height, width
    return VideoInfo(path, width, height, fps, frames, float(frames / fps), rotation, audio)


def _announced_frames(container, stream) -> int:
    """Frames the container's duration announces (Matroska, WebM keep no frame count)."""
    if not container.duration or not stream.average_rate:
        return 0
    return round(container.duration / av.time_base * stream.average_rate)


def count_packets(container, stream) -> int:
    """Video packets actually in the file, read without decoding: up to the damage in a broken file."""
    count = 0
    try:
        for packet in container.demux(stream):
            count += bool(packet.size)
    except av.FFmpegError:
        pass
    container.seek(0)
    return count


def check_complete(info: VideoInfo) -> None:
    """Refuse a truncated file (a copy cut short, a download that stopped) before any work, rather
    than writing a short video without a word."""
    with av.open(str(info.path)) as container:
        found = count_packets(container, container.streams.video[0])
    if info.frames - found > max(2, info.frames // 50):
        raise InputError(f"{info.path}: truncated or damaged: only {found} of the {info.frames} frames its container "
                         f"announces are in the file")


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


def seek_time(info: VideoInfo, start: float, index: int) -> float:
    """Where to seek for frame `index` of a range that starts `start` seconds into the video: half a
    frame early, since -ss keeps frames whose time is at or after it, and float times round."""
    return start + max(0.0, (index - 0.5) / float(info.fps))


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
        self.process, self.log = start_ffmpeg(stream, stdout=True)
        self.path = info.path

    def read(self) -> np.ndarray | None:
        """The next frame, or None at the end. A decoder that fails outright raises InputError."""
        size = self.width * self.height * 3
        data = self.process.stdout.read(size)
        if len(data) < size:
            if self.process.wait() != 0:
                raise InputError(f"{self.path}: ffmpeg failed to decode ({last_words(self.log)})")
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
        self.log.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class EncodeSettings:
    codec: str = VIDEO_CODEC
    crf: int = VIDEO_CRF
    preset: str = "medium"
    pix_fmt: str = "yuv420p"


class Writer:
    """Raw RGB frames in (`write(frame)`), an encoded file out, with the source's audio taken from
    the source file itself. `close()` checks ffmpeg's exit status."""

    def __init__(self, path: Path, size: tuple[int, int], fps: Fraction, source: VideoInfo | None = None,
                 start: float = 0.0, duration: float | None = None, settings: EncodeSettings = EncodeSettings(),
                 copy_audio: bool = True, name: Path | None = None):
        self.path = Path(path)
        self.name = name or self.path  # what messages call the file (the final path, not its temporary)
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
        self.process, self.log = start_ffmpeg(out, stdin=True)

    def write(self, frame: np.ndarray) -> None:
        try:
            self.process.stdin.write(np.ascontiguousarray(frame, np.uint8).tobytes())
        except BrokenPipeError:
            self._fail()

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):  # ffmpeg died: its exit status says why
            self.process.stdin.close()
        if self.process.wait() != 0:
            self._fail()
        self.log.close()

    def abort(self) -> None:
        self.process.kill()
        self.process.wait()
        with contextlib.suppress(BrokenPipeError, OSError):
            self.process.stdin.close()

    def _fail(self) -> None:
        self.abort()
        words = last_words(self.log)
        self.log.close()
        raise OutputError(f"{self.name}: ffmpeg failed to encode ({words})")


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
                writer = Writer(tmp, size, fps, source, start, duration, settings, copy_audio, name=output)
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
