"""Image sequences: a render's, a time-lapse's or a frame dump's numbered frames in, and stylized
frames out with the input's names or numbering, format and bit depth.

A sequence is a folder of frames, a printf pattern (`shot/%04d.png`) or a glob (`shot/*.png`),
ordered by the numbers in the names. It is described by the same `VideoInfo` as a video (its
`files` set), so warm starts, cuts, resume and chunks treat both alike.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pipeline.errors import InputError, OutputError
from pipeline.temporal import from_float, to_float
from pipeline.video_io import VIDEO_SUFFIXES, Colour, FrameReader, VideoInfo, is_crop
from pipeline.work_folder import write_atomically

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".exr")
DEEP_SUFFIXES = (".png", ".tif", ".tiff")  # hold 16 bits; JPEG and WebP frames are written at 8
# of a sequence when --fps does not say: film's rate, what renders default to
DEFAULT_FPS = Fraction(24)
_PRINTF = re.compile(r"%(0?\d*)d")


def is_sequence(path: Path) -> bool:
    """A folder, a printf pattern or a glob: frames rather than one video file."""
    text = str(path)
    return (
        Path(path).is_dir()
        or bool(_PRINTF.search(Path(text).name))
        or any(c in Path(text).name for c in "*?[")
    )


def natural_key(path: Path) -> list:
    """frame2 before frame10: the digits of a name compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def frame_number(path: Path) -> int | None:
    """The last number in the file's stem (`shot_0042.png` -> 42), if any."""
    numbers = re.findall(r"\d+", path.stem)
    return int(numbers[-1]) if numbers else None


def frame_files(spec: Path) -> list[Path]:
    """The frames `spec` names, in natural order; none found is an InputError naming what was
    looked for."""
    spec = Path(spec)
    if spec.is_dir():
        found = [
            p
            for p in spec.iterdir()
            if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".")
        ]
        where = f"{spec}: no frames (PNG, JPEG, TIFF, WebP or EXR) in this folder"
    else:
        folder = spec.parent
        if not folder.is_dir():
            raise InputError(f"{spec}: folder {folder} not found")
        match = _PRINTF.search(spec.name)
        if match:
            head, tail = spec.name[: match.start()], spec.name[match.end() :]
            width = match.group(1)
            digits = rf"\d{{{int(width)},}}" if width else r"\d+"
            pattern = re.compile(re.escape(head) + digits + re.escape(tail) + r"\Z")
            found = [p for p in folder.iterdir() if pattern.match(p.name)]
        else:
            found = [p for p in folder.glob(spec.name) if p.is_file()]
        where = f"{spec}: no file matches this pattern"
    if not found:
        raise InputError(where)
    return sorted(found, key=natural_key)


def numbering_gaps(files: list[Path]) -> list[str]:
    """Where the frame numbers jump: a render that skipped frames, a copy that lost some."""
    numbers = [frame_number(p) for p in files]
    gaps = []
    for before, after, name in zip(numbers, numbers[1:], files[1:]):
        if before is not None and after is not None and after - before > 1:
            missing = f"{before + 1}" if after - before == 2 else f"{before + 1}-{after - 1}"
            gaps.append(f"frame numbers {missing} missing before {name.name}")
    return gaps


def probe_sequence(spec: Path, fps: Fraction | None = None) -> VideoInfo:
    """A sequence as a video: its frames' size (all alike, or the first odd one is named), depth
    and times."""
    files = frame_files(spec)
    fps = Fraction(fps or DEFAULT_FPS)
    first = read_frame_file(files[0])
    height, width = first.shape[:2]
    for path in files[1:]:
        size = _header_size(path)
        if size is not None and size != (width, height):
            raise InputError(
                f"{path}: {size[0]}x{size[1]}, but the sequence's frames are {width}x{height} "
                f"(from {files[0].name})"
            )
    bits = 16 if first.dtype == np.uint16 else 8
    times = tuple(float(k / fps) for k in range(len(files)))
    return VideoInfo(
        Path(spec),
        width,
        height,
        fps,
        len(files),
        float(len(files) / fps),
        0,
        (),
        colour=Colour(matrix="gbr", range="full", bits=bits),
        times=times,
        files=tuple(files),
    )


def _header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file's header alone; None where Pillow cannot tell (EXR)."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:
        return None


def read_frame_file(path: Path) -> np.ndarray:
    """One frame as H x W x 3 RGB, uint8 or uint16 as stored (grey made RGB, alpha dropped)."""
    if path.suffix.lower() == ".exr":
        return _read_exr(path)
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise InputError(f"{path}: not a readable frame")
    if array.dtype not in (np.uint8, np.uint16):
        array = from_float(to_float(array), np.uint16)
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(array, cv2.COLOR_BGRA2RGB if array.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def _read_exr(path: Path) -> np.ndarray:
    """Scene-linear EXR to sRGB-encoded 16-bit (what the network was trained on), with the
    OpenEXR package."""
    try:
        import OpenEXR
    except ImportError:
        raise InputError(
            f"{path}: reading EXR needs the OpenEXR package (pip install 'stylize[exr]')"
        ) from None
    try:
        with OpenEXR.File(str(path)) as exr:
            channels = exr.channels()
            rgb = channels["RGB"].pixels if "RGB" in channels else channels["RGBA"].pixels[..., :3]
    except Exception as err:
        raise InputError(f"{path}: not a readable EXR frame ({err})") from None
    linear = np.clip(np.asarray(rgb, np.float32), 0.0, 1.0)
    encoded = np.where(
        linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055
    )
    return from_float(encoded, np.uint16)


class SequenceReader(FrameReader):
    """A sequence's frames as a `video_io.Reader` gives a video's: at `size`, from frame `index`
    of the range."""

    def open(self, start: float, duration: float | None, index: int) -> None:
        info = self.info
        self.next = info.first_index(start) + index
        self.stop = info.frames if duration is None else info.first_index(start + duration)

    def read(self) -> np.ndarray | None:
        if self.next >= min(self.stop, len(self.info.files)):
            return None
        path = self.info.files[self.next]
        self.next += 1
        frame = read_frame_file(path)
        if (frame.shape[1], frame.shape[0]) != (self.info.width, self.info.height):
            raise InputError(
                f"{path}: {frame.shape[1]}x{frame.shape[0]}, but the sequence's frames are "
                f"{self.info.width}x{self.info.height}"
            )
        if is_crop(self.info, self.size):
            frame = frame[: self.size[1], : self.size[0]]
        else:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        wanted = np.uint16 if self.deep else np.uint8
        return np.ascontiguousarray(
            frame if frame.dtype == wanted else from_float(to_float(frame), wanted)
        )


def is_sequence_output(output: Path) -> bool:
    """`-o out/` (a folder, existing or named with a trailing slash or no extension) or `-o
    out/%04d.png`."""
    text, name = str(output), Path(output).name
    if Path(name).suffix.lower() in VIDEO_SUFFIXES and not _PRINTF.search(name):
        return False  # `out.mp4` is a video even where a folder of that name is in the way
    return (
        text.endswith(("/", "\\"))
        or Path(output).is_dir()
        or not Path(name).suffix
        or bool(_PRINTF.search(name))
    )


def output_names(output: Path, source: VideoInfo, first: int, count: int) -> list[Path]:
    """Where each of the `count` frames from source frame `first` on goes: the input's own names (a
    sequence into a folder), the input's numbers in the pattern, or 000001.png on (a video)."""
    output = Path(output)
    match = _PRINTF.search(output.name)
    files = source.files[first : first + count]
    if match is None:
        if files:  # EXR frames come out as 16-bit PNG: the network's output is display-referred
            return [
                output / (path.stem + ".png" if path.suffix.lower() == ".exr" else path.name)
                for path in files
            ]
        return [output / f"{k + 1:06d}.png" for k in range(count)]
    numbers = [frame_number(p) for p in files] if files else []
    if len(numbers) != count or None in numbers or len(set(numbers)) != count:
        # a video, or names without distinct numbers: counted from 1
        numbers = list(range(1, count + 1))
    return [
        output.parent
        / (output.name[: match.start()] + (match.group(0) % n) + output.name[match.end() :])
        for n in numbers
    ]


def check_sequence_output(
    targets: list[Path], inputs: list[Path], overwrite: bool, resuming: bool
) -> None:
    """Before any work: no frame may overwrite an input, and frames already there are a finished or
    other run's (refused without --overwrite) unless this very job is being resumed."""
    if not targets:
        return
    suffix = targets[0].suffix.lower()
    if suffix not in FRAME_SUFFIXES or suffix == ".exr":
        raise OutputError(
            f"{targets[0]}: cannot write frames as {suffix or 'files without an extension'}; "
            f"use .png, .tif, .jpg or .webp"
        )
    sources = {Path(p).resolve() for p in inputs}
    clash = next((t for t in targets if t.resolve() in sources), None)
    if clash is not None:
        raise OutputError(f"{clash}: the output would overwrite an input frame")
    there = next((t for t in targets if t.exists()), None)
    if there is not None and not overwrite and not resuming:
        raise OutputError(f"{there}: exists already (use --overwrite)")


def write_sequence(frames, targets: list[Path], overwrite: bool = False) -> int:
    """Each frame atomically into its target (16 bits where the format holds them); targets already
    written are skipped, so an interrupted write resumes. The number written."""
    written = 0
    for frame, target in zip(frames, targets):
        if target.exists() and not overwrite:
            continue
        suffix = target.suffix.lower()
        if frame.dtype == np.uint16 and suffix not in DEEP_SUFFIXES:
            frame = from_float(to_float(frame), np.uint8)
        encoded, data = cv2.imencode(suffix, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if not encoded:
            raise OutputError(f"{target}: cannot encode frame")
        write_atomically(target, data.tobytes(), "frame")
        written += 1
    return written
