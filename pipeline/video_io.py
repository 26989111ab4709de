"""Video in and out through ffmpeg pipes: probe with PyAV, decode and encode raw RGB with
ffmpeg-python.

Frames stream one at a time; a whole video is never held in memory. Audio never passes through
Python: the encoder takes the source file again as a second input and copies its audio.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import ffmpeg
import numpy as np

from pipeline.errors import InputError, OutputError, SettingsError, first_line
from pipeline.image_io import atomic_path
from pipeline.settings import VIDEO_CODEC, VIDEO_CRF, check_crf

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")


def ffmpeg_binary() -> str:
    """ffmpeg on PATH, else the one the imageio-ffmpeg wheel carries (a fresh machine needs no
    system package)."""
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
        raise SettingsError(
            f"--codec {codec}: cannot list the encoders of {binary} ({err})"
        ) from None
    if codec not in encoders:
        raise SettingsError(
            f"--codec {codec}: not a video encoder of this ffmpeg (e.g. libx264, libx265, "
            "libvpx-vp9)"
        )


@functools.cache
def _video_encoders(binary: str) -> frozenset[str]:
    """Names of the video encoders `binary -encoders` lists, and the codecs they encode ("(codec
    h264)")."""
    listing = subprocess.run(
        [binary, "-hide_banner", "-encoders"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
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


def start_ffmpeg(
    stream, stdin: bool = False, stdout: bool = False
) -> tuple[subprocess.Popen, tempfile.TemporaryFile]:
    """Start ffmpeg on an ffmpeg-python graph with no pipe left unread.

    No stats line, errors only, and stderr goes to a temporary file rather than a pipe: ffmpeg's
    half-second stats line would fill an unread 64 KiB pipe in about five minutes and block it for
    good. The file keeps ffmpeg's last words for the error message.
    """
    args = stream.global_args("-nostats", "-loglevel", "error").compile(cmd=ffmpeg_binary())
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        args,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
        stderr=log,
    )
    _children.add(process)
    return process, log


def last_words(log) -> str:
    """What ffmpeg said, on one line: its first error (usually the cause) and its last two lines."""
    log.seek(0)
    lines = [
        re.sub(r"^\[[^]]* @ 0x[0-9a-f]+\] ", "", line.strip())
        for line in log.read().decode(errors="replace").splitlines()
    ]
    lines = [line for line in lines if line]
    said = lines if len(lines) <= 3 else [lines[0], "...", *lines[-2:]]
    return " / ".join(said)[:400] or "no message"


def kill_children() -> None:
    """End every ffmpeg this process started (the signal handler's last resort)."""
    for process in list(_children):
        if process.poll() is None:
            process.kill()


# PyAV's colour tags (FFmpeg's AVColorSpace, AVColorPrimaries, AVColorTransferCharacteristic) in
# zscale's names.
_MATRICES = {
    0: "gbr",
    1: "709",
    4: "fcc",
    5: "470bg",
    6: "170m",
    7: "240m",
    9: "2020_ncl",
    10: "2020_cl",
}
_PRIMARIES = {
    1: "709",
    4: "470m",
    5: "470bg",
    6: "170m",
    7: "240m",
    9: "2020",
    11: "smpte431",
    12: "smpte432",
}
_TRANSFERS = {
    1: "709",
    4: "470m",
    5: "470bg",
    6: "601",
    7: "240m",
    8: "linear",
    13: "iec61966-2-1",
    14: "2020_10",
    15: "2020_12",
    16: "smpte2084",
    18: "arib-std-b67",
}
HDR_TRANSFERS = {"smpte2084": "PQ", "arib-std-b67": "HLG"}


@dataclass(frozen=True)
class Colour:
    """How a video's pixel values mean colour, in zscale's names; untagged values get what
    players assume."""

    matrix: str = "709"
    range: str = "limited"
    primaries: str = "709"
    transfer: str = "709"
    bits: int = 8  # per component as coded: 10-bit video decodes to 16-bit frames

    @property
    def hdr(self) -> str | None:
        """ "PQ" or "HLG" for HDR video (tone-mapped to SDR for the network), else None."""
        return HDR_TRANSFERS.get(self.transfer)


def _colour(stream) -> Colour:
    context = stream.codec_context
    pixels = av.VideoFormat(context.pix_fmt or "yuv420p")
    rgb = pixels.name.startswith(("gbr", "rgb", "bgr"))
    height = context.height or 0
    # HD: bt709, SD: bt601
    matrix = "gbr" if rgb else _MATRICES.get(context.colorspace, "709" if height >= 720 else "170m")
    full = rgb or context.color_range == 2 or pixels.name.startswith("yuvj")
    transfer = _TRANSFERS.get(context.color_trc, "709")
    primaries = _PRIMARIES.get(
        context.color_primaries, "2020" if transfer in HDR_TRANSFERS else "709"
    )
    return Colour(
        matrix,
        "full" if full else "limited",
        primaries,
        transfer,
        max(c.bits for c in pixels.components),
    )


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # as displayed (after rotation)
    height: int
    fps: Fraction  # average rate
    frames: int
    duration: float  # seconds, of the video stream
    rotation: int  # degrees the player rotates by; decoding applies it
    audio: tuple[str, ...]  # codec names of the audio streams
    subtitles: tuple[str, ...] = ()  # codec names of the subtitle streams
    colour: Colour = Colour()
    # each frame's presentation time in seconds from the file's start, as ffmpeg's -ss counts
    times: tuple[float, ...] = ()
    files: tuple[Path, ...] = ()  # an image sequence's frames, in order (empty for a video file)
    # of the video stream's timestamps (None: a sequence's, 1/fps)
    time_base: Fraction | None = None

    @property
    def variable_rate(self) -> bool:
        """Frames shown at uneven intervals (a phone's video), beyond a millisecond."""
        gaps = np.diff(self.times)
        # Matroska rounds times to the millisecond
        return bool(gaps.size) and float(np.ptp(gaps)) > 2e-3

    def frame_time(self, index: int) -> float:
        """Presentation time of frame `index` (past the known times: at the average rate)."""
        if index < len(self.times):
            return self.times[index]
        last = self.times[-1] if self.times else -1 / float(self.fps)
        return last + (index - len(self.times) + 1) / float(self.fps)

    def first_index(self, start: float) -> int:
        """The first frame shown at or after `start` seconds."""
        return (
            int(np.searchsorted(self.times, start - 1e-6))
            if self.times
            else math.ceil(start * self.fps - 1e-6)
        )

    def frames_between(self, start: float, duration: float | None) -> int:
        """Frames whose presentation time lies in [start, start + duration)."""
        first = self.first_index(start)
        stop = self.frames if duration is None else self.first_index(start + duration)
        return max(0, min(stop, self.frames) - first)

    def range_times(self, start: float, count: int) -> list[float]:
        """Times of the `count` frames from `start` on, counted from `start`: when each output
        frame is shown."""
        first = self.first_index(start)
        return [self.frame_time(first + k) - start for k in range(count)]

    def end_time(self, start: float, count: int) -> float:
        """When the last of `count` frames from `start` stops being shown, counted from `start`."""
        return self.frame_time(self.first_index(start) + count) - start


def probe(path: Path) -> VideoInfo:
    """Exact rational rate, frame count and times, rotation, colour and the other streams, read
    with PyAV."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with av.open(str(path)) as container:
            info = _stored_video(path, container)
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"{path}: not a readable video ({first_line(err)})") from None
    if info.frames <= 0 or info.fps <= 0 or info.width <= 0:
        raise InputError(f"{path}: video stream has no decodable frames")
    if info.rotation % 180:  # decoding turns the frames upright
        info = replace(info, width=info.height, height=info.width)
    return info


def _stored_video(path: Path, container) -> VideoInfo:
    """The first video stream as stored (its size before rotation), beside the other streams.
    `probe` refuses one without frames or rate."""
    if not container.streams.video:
        kind = "an audio-only file" if container.streams.audio else "no video stream"
        raise InputError(f"{path}: {kind}; give a video or a folder of frames")
    stream = container.streams.video[0]
    fps = Fraction(stream.average_rate or stream.guessed_rate or 0)
    announced = stream.frames or _announced_frames(container, stream)
    colour = _colour(stream)
    rotation = _rotation(container, stream)  # decodes a frame, then seeks back to the start
    width, height = stream.codec_context.width, stream.codec_context.height
    audio = tuple(a.codec_context.name for a in container.streams.audio)
    subtitles = tuple(s.codec_context.name for s in container.streams.subtitles)
    times = _frame_times(container, stream)
    frames = announced or len(times)
    return VideoInfo(
        path,
        width,
        height,
        fps,
        frames,
        float(frames / fps) if fps > 0 else 0.0,
        rotation,
        audio,
        subtitles,
        colour,
        times,
        time_base=Fraction(stream.time_base) if stream.time_base else None,
    )


def _announced_frames(container, stream) -> int:
    """Frames the container's duration announces (Matroska, WebM keep no frame count)."""
    if not container.duration or not stream.average_rate:
        return 0
    return round(container.duration / av.time_base * stream.average_rate)


def _frame_times(container, stream) -> tuple[float, ...]:
    """Every video packet's presentation time, read without decoding, in display order: up to the
    damage in a broken file. Counted from the file's start, as ffmpeg's output timestamps are."""
    stamps = []
    try:
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None and not packet.is_discard:
                stamps.append(packet.pts)
    except av.FFmpegError:
        pass
    origin = (container.start_time or 0) / av.time_base
    return tuple(float(pts * stream.time_base) - origin for pts in sorted(stamps))


def check_complete(info: VideoInfo) -> None:
    """Refuse a truncated file (a copy cut short, a download that stopped) before any work, rather
    than writing a short video without a word."""
    found = len(info.times)
    if info.frames - found > max(2, info.frames // 50):
        raise InputError(
            f"{info.path}: truncated or damaged: only {found} of the {info.frames} frames its "
            "container "
            f"announces are in the file"
        )


def _rotation(container, stream) -> int:
    """Display rotation in degrees from the first frame's display matrix, or 0."""
    try:
        for frame in container.decode(stream):
            return int(round(getattr(frame, "rotation", 0) or 0)) % 360
    except Exception:
        return 0
    finally:
        container.seek(0)
    return 0


def even_size(width: int, height: int, long_side: int | None) -> tuple[int, int]:
    """Frame size for stylization: long side `long_side` (or as is), each side even for yuv420p."""
    scale = (long_side / max(width, height)) if long_side else 1.0
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def seek_time(info: VideoInfo, start: float, index: int) -> float:
    """Where to seek for frame `index` of a range that starts `start` seconds into the video:
    halfway from the frame before, since -ss keeps frames whose time is at or after it, and float
    times round."""
    if index == 0:
        return start
    first = info.first_index(start)
    return (info.frame_time(first + index - 1) + info.frame_time(first + index)) / 2


def is_crop(info: VideoInfo, size: tuple[int, int]) -> bool:
    """At full size, an odd side loses its last pixel rather than being resampled."""
    return 0 <= info.width - size[0] <= 1 and 0 <= info.height - size[1] <= 1


def _to_rgb(stream, colour: Colour):
    """Video to linear-precision RGB as the tags say: zscale (zimg) reads the matrix and range
    exactly (swscale's default path is biased by about 1/255); HDR is tone-mapped to SDR bt709."""
    tags = {"primaries": colour.primaries, "transfer": "linear" if colour.hdr else colour.transfer}
    stream = stream.filter(
        "zscale",
        matrixin=colour.matrix,
        rangein=colour.range,
        primariesin=colour.primaries,
        transferin=colour.transfer,
        filter="bicubic",
        dither="none",
        npl=100,
        **tags,
    )
    if colour.hdr:
        stream = (
            stream.filter("format", "gbrpf32le")
            .filter("zscale", primaries="709")
            .filter("tonemap", tonemap="hable", desat=0)
            .filter("zscale", transfer="709", dither="none")
        )
    return stream.filter("format", "gbrpf32le")


class FrameReader:
    """What every reader of frames offers: frames of the range [start, start + duration) at `size`
    from frame `index` of it on, `read() -> frame or None`, `frames(limit)`, `close()`, and use as
    a context manager. Frames are uint8, or uint16 from a deeper input."""

    def __init__(
        self,
        info: VideoInfo,
        size: tuple[int, int],
        start: float = 0.0,
        duration: float | None = None,
        index: int = 0,
    ):
        self.info, self.size, self.deep = info, size, info.colour.bits > 8
        self.open(start, duration, index)

    def open(self, start: float, duration: float | None, index: int) -> None:
        raise NotImplementedError

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to release unless a reader holds a process or a file."""

    def frames(self, limit: int | None = None) -> Iterator[np.ndarray]:
        """Frames in order, at most `limit`."""
        count = 0
        while limit is None or count < limit:
            frame = self.read()
            if frame is None:
                return
            yield frame
            count += 1

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Reader(FrameReader):
    """Decoded frames as H x W x 3 RGB at `size`, one at a time: `read() -> frame or None`; uint8
    for 8-bit video, uint16 for deeper video. `index`: start at that frame of the range (a seek)."""

    def open(self, start: float, duration: float | None, index: int) -> None:
        info, size = self.info, self.size
        self.width, self.height = size
        seek = seek_time(info, start, index)
        input_args = {"ss": seek} if seek else {}
        if duration:
            input_args["t"] = max(0.0, start + duration - seek)
        stream = _to_rgb(ffmpeg.input(str(info.path), **input_args).video, info.colour)
        if is_crop(info, size):
            stream = stream.filter("crop", self.width, self.height, 0, 0)
        else:
            stream = stream.filter("scale", self.width, self.height, flags="area")
        stream = ffmpeg.output(
            stream, "pipe:", format="rawvideo", pix_fmt="rgb48le", fps_mode="passthrough"
        )
        self.process, self.log = start_ffmpeg(stream, stdout=True)
        self.path = info.path

    def read(self) -> np.ndarray | None:
        """The next frame, or None at the end. A decoder that fails outright raises InputError."""
        size = self.width * self.height * 6
        data = self.process.stdout.read(size)
        if len(data) < size:
            if self.process.wait() != 0:
                raise InputError(f"{self.path}: ffmpeg failed to decode ({last_words(self.log)})")
            return None
        frame = np.frombuffer(data, "<u2").reshape(self.height, self.width, 3)
        return frame.astype(np.uint16) if self.deep else to_8_bits(frame)

    def close(self) -> None:
        self.process.stdout.close()
        self.process.kill()
        self.process.wait()
        self.log.close()


def to_8_bits(frame: np.ndarray) -> np.ndarray:
    """16-bit values to the nearest 8-bit ones (x 257 maps 8 bits onto 16 exactly)."""
    return ((frame.astype(np.uint32) + 128) // 257).astype(np.uint8)


@dataclass(frozen=True)
class EncodeSettings:
    codec: str = VIDEO_CODEC
    crf: int = VIDEO_CRF
    preset: str = "medium"
    pix_fmt: str = "yuv420p"

    def encoder_args(self) -> dict:
        """Constant quality for each encoder family (VP9 needs a zero bitrate for it)."""
        if "vpx" in self.codec:
            return {"crf": self.crf, "b:v": 0, "row-mt": 1, "deadline": "good", "cpu-used": 4}
        if "aom" in self.codec or "svtav1" in self.codec:
            return {"crf": self.crf, "cpu-used" if "aom" in self.codec else "preset": 6}
        return {"crf": self.crf, "preset": self.preset}


# What each container takes besides video: subtitle codecs to convert to (None: none at all).
_SUBTITLES = {
    ".mp4": "mov_text",
    ".m4v": "mov_text",
    ".mov": "mov_text",
    ".mkv": "copy",
    ".webm": "webvtt",
    ".avi": None,
}
# Tags of what the encoder is handed: bt709 SDR, as every result of the network is.
_BT709_TAGS = {
    "colorspace": "bt709",
    "color_primaries": "bt709",
    "color_trc": "bt709",
    "color_range": "tv",
}


def default_codec(output: Path) -> str:
    """The video encoder a container is written with unless --codec says otherwise."""
    return "libvpx-vp9" if Path(output).suffix.lower() == ".webm" else VIDEO_CODEC


def encode_settings(output: Path, codec: str | None, crf: int) -> EncodeSettings:
    """How `output` is encoded: `--codec` (else its container's default) at `--crf`; refused before
    any work where this ffmpeg lacks the encoder or the CRF is out of its range."""
    codec = codec or default_codec(output)
    check_encoder(codec)
    check_crf(codec, crf)
    return EncodeSettings(codec=codec, crf=crf)


@dataclass(frozen=True)
class Streams:
    """What the output takes from the source besides the stylized video, settled before any work."""

    audio: str | None = None  # "copy", an encoder, or None (no audio)
    subtitles: str | None = None  # "copy", an encoder, or None
    metadata: bool = True  # global tags (creation_time, location) and chapters
    notes: tuple[str, ...] = ()  # what the user should know: audio re-encoded, subtitles dropped


class Writer:
    """Frames in (`write(frame)`, uint8 or uint16 RGB), an encoded file out, each frame shown at its
    time. The source's audio, subtitles, chapters and tags come from the source file itself.
    `close()` checks ffmpeg's exit status."""

    def __init__(
        self,
        path: Path,
        size: tuple[int, int],
        fps: Fraction,
        timing: Callable[[int], tuple[float, float]],
        *,
        source: VideoInfo | None = None,
        start: float = 0.0,
        end: float | None = None,
        settings: EncodeSettings = EncodeSettings(),
        streams: Streams = Streams(),
        name: Path | None = None,
        time_base: Fraction | None = None,
    ):
        """`timing(k)`: when frame k is shown and until when, in seconds from `start`; `end`: how
        much of the source's other streams to take (None: to their end); `time_base`: of the written
        timestamps (None: 1/fps, a constant rate kept exact)."""
        self.path = Path(path)
        # what messages call the file (the final path, not its temporary)
        self.name = name or self.path
        self.size, self.fps, self.timing, self.written, self.muxer = size, fps, timing, 0, None
        self.time_base = time_base or 1 / Fraction(fps)
        graph = _encode_graph(self.path, start, end, source, settings, streams, self.time_base)
        self.process, self.log = start_ffmpeg(graph, stdin=True)

    def write(self, frame: np.ndarray) -> None:
        try:
            if self.muxer is None:  # the first frame says whether 8 or 16 bits go down the pipe
                self.muxer = _TimedFrames(
                    self.process.stdin,
                    self.size,
                    frame.dtype == np.uint16,
                    self.fps,
                    self.time_base,
                )
            self.muxer.write(frame, *self.timing(self.written))
        except (OSError, av.FFmpegError):
            self._fail()
        self.written += 1

    def close(self) -> None:
        with contextlib.suppress(OSError, av.FFmpegError):  # ffmpeg died: its exit status says why
            if self.muxer is not None:
                self.muxer.close()
        with contextlib.suppress(BrokenPipeError):
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


class _TimedFrames:
    """Raw frames with their presentation times, muxed as NUT into ffmpeg's stdin: a variable frame
    rate passes as it is, with no guess of a constant rate."""

    def __init__(self, pipe, size: tuple[int, int], deep: bool, fps: Fraction, time_base: Fraction):
        self.container = av.open(pipe, "w", format="nut")
        # the nominal rate, for the encoder's rate control
        self.stream = self.container.add_stream("rawvideo", rate=fps)
        self.stream.codec_context.time_base = self.time_base = time_base
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = self.format = "rgb48le" if deep else "rgb24"
        self.stream.time_base = time_base

    def write(self, frame: np.ndarray, time: float, until: float) -> None:
        image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=self.format)
        image.pts, image.time_base = round(time / self.time_base), self.time_base
        image.duration = max(1, round(until / self.time_base) - image.pts)
        for packet in self.stream.encode(image):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def _encode_graph(
    path: Path,
    start: float,
    end: float | None,
    source: VideoInfo | None,
    settings: EncodeSettings,
    streams: Streams,
    time_base: Fraction,
):
    """ffmpeg-python's graph: the timed frames converted to the tagged bt709 the output says it
    holds, and the source's other streams beside them."""
    inputs = [_bt709_frames()]
    args = {
        "fps_mode": "passthrough",
        "enc_time_base": f"{time_base.numerator}:{time_base.denominator}",
        **_BT709_TAGS,
    }
    if source is not None and not source.files:
        others, other_args = _source_streams(source, start, end, streams)
        inputs += others
        args.update(other_args)
    out = ffmpeg.output(
        *inputs,
        str(path),
        vcodec=settings.codec,
        pix_fmt=settings.pix_fmt,
        **settings.encoder_args(),
        **args,
    )
    return out.overwrite_output()


def _bt709_frames():
    """The timed frames from the pipe, converted to bt709 and tagged so: the frames' own tags win
    over -color_*."""
    return (
        ffmpeg.input("pipe:", format="nut")
        .video.filter(
            "scale", out_color_matrix="bt709", out_range="tv", flags="accurate_rnd+full_chroma_int"
        )
        .filter(
            "setparams", color_primaries="bt709", color_trc="bt709", colorspace="bt709", range="tv"
        )
    )


def _source_streams(
    source: VideoInfo, start: float, end: float | None, streams: Streams
) -> tuple[list, dict]:
    """The source's audio, subtitles, tags and chapters over the same range: its streams for the
    graph, and the output arguments that copy or convert them."""
    other = ffmpeg.input(
        str(source.path), **({"ss": start} if start else {}), **({"t": end} if end else {})
    )
    # the audio stream also keeps the source an input for its tags, where it has no audio
    inputs, args = [other["a?"]], {"acodec": streams.audio or "copy"}
    if streams.subtitles:
        inputs.append(other["s?"])
        args["scodec"] = streams.subtitles
    if streams.metadata:
        args.update({"map_metadata": 1, "map_chapters": 1})
    return inputs, args


def _audio_codec_for(output: Path) -> str:
    return "libopus" if output.suffix.lower() == ".webm" else "aac"


def plan_streams(source: VideoInfo | None, output: Path, settings: EncodeSettings) -> Streams:
    """Settle, before any work, what the output container takes: a trial encode of a fraction of a
    second with the source's streams. Audio is copied where the container takes it, else re-encoded
    (AAC; Opus for WebM); subtitles are converted to the container's kind or, where it takes none,
    left out. A container that refuses the video codec itself is refused in one line."""
    output = Path(output)
    if source is None or source.files:
        choices = [Streams(metadata=False)]
    else:
        audio = ("copy", _audio_codec_for(output)) if source.audio else (None,)
        subtitles = _SUBTITLES.get(output.suffix.lower()) if source.subtitles else None
        if subtitles == "copy" and "mov_text" in source.subtitles:
            subtitles = "srt"  # Matroska takes no mov_text
        choices = [Streams(a, s) for s in dict.fromkeys((subtitles, None)) for a in audio]
    failure = ""
    for streams in choices:
        failure = _trial_encode(source, output, settings, streams)
        if not failure:
            return replace(streams, notes=_notes(source, streams))
    raise OutputError(f"{output}: ffmpeg failed to encode a trial before any work ({failure})")


def _notes(source: VideoInfo | None, streams: Streams) -> tuple[str, ...]:
    notes = []
    if source is not None and source.audio and streams.audio != "copy":
        notes.append(
            f"audio re-encoded with {streams.audio} (the container does not take "
            f"{', '.join(source.audio)})"
        )
    if source is not None and source.subtitles and not streams.subtitles:
        notes.append(
            f"{len(source.subtitles)} subtitle track(s) left out: the container takes none of them"
        )
    return tuple(notes)


def _trial_encode(
    source: VideoInfo | None, output: Path, settings: EncodeSettings, streams: Streams
) -> str:
    """'' when a short encode with these streams succeeds, else ffmpeg's words."""
    with tempfile.TemporaryDirectory() as folder:
        trial = Path(folder) / f"trial{output.suffix}"
        try:
            writer = Writer(
                trial,
                (64, 64),
                Fraction(10),
                lambda k: (k / 10, (k + 1) / 10),
                source=source,
                start=0.0,
                end=0.2,
                settings=settings,
                streams=streams,
                name=output,
            )
            for _ in range(2):
                writer.write(np.zeros((64, 64, 3), np.uint8))
            writer.close()
        except OutputError as err:
            return str(err).split(" (", 1)[-1].removesuffix(")")
    return ""


def encode(
    frames: Callable[[], Iterable[np.ndarray]],
    output: Path,
    size: tuple[int, int],
    fps: Fraction,
    *,
    source: VideoInfo | None = None,
    start: float = 0.0,
    count: int | None = None,
    settings: EncodeSettings = EncodeSettings(),
    streams: Streams | None = None,
) -> None:
    """Encode the frames `frames()` yields into `output`, atomically (temporary file, then rename).

    With a `source` and the `count` of its frames from `start` on, each frame is shown when the
    source showed it (a variable frame rate kept) and the source's other streams go along for as
    long; else frames are shown at `fps`.
    """
    if streams is None:
        streams = plan_streams(source, output, settings)
    end, time_base = None, None
    if source is not None and count is not None:
        times, end = source.range_times(start, count), source.end_time(start, count)
        timing = lambda k: (times[k], times[k + 1] if k + 1 < count else end)  # noqa: E731
        if source.variable_rate:
            time_base = source.time_base  # the source's own clock: its timestamps exactly
    else:
        timing = lambda k: (k / fps, (k + 1) / fps)  # noqa: E731
    with atomic_path(output) as tmp:
        writer = Writer(
            tmp,
            size,
            fps,
            timing,
            source=source,
            start=start,
            end=end,
            settings=settings,
            streams=streams,
            name=output,
            time_base=time_base,
        )
        try:
            for frame in frames():
                writer.write(frame)
            writer.close()
        except BaseException:
            writer.abort()
            raise
