"""Reading and writing still images, and moving them between numpy and torch."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image

from pipeline.errors import InputError, OutputError, first_line
from pipeline.settings import JPEG_QUALITY


@dataclass
class Photo:
    """An image as the pipeline sees it: RGB float32 in [0, 1], plus what is needed to write it
    back alike."""

    rgb: np.ndarray  # H x W x 3, float32
    alpha: np.ndarray | None = None  # H x W, float32 in [0, 1]
    grayscale: bool = False
    bits: int = 8
    # the camera's EXIF (date, camera), orientation reset: pixels are upright
    exif: bytes | None = field(default=None, repr=False)
    # the colour profile the pixel values are in
    icc: bytes | None = field(default=None, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.rgb.shape[1], self.rgb.shape[0]


def read_photo(path: Path) -> Photo:
    """Read any still image imageio's Pillow plugin knows, upright (EXIF orientation applied)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    try:
        array = iio.imread(path, plugin="pillow", rotate=True)
    except Exception as err:
        raise InputError(f"{path}: not a readable image ({first_line(err)})") from None
    return replace(_photo_from_array(array, path), **_metadata(path))


def _metadata(path: Path) -> dict[str, bytes | None]:
    """EXIF (orientation set to upright, as the pixels now are) and ICC profile, to write back."""
    try:
        with Image.open(path) as image:
            icc = image.info.get("icc_profile") or None
            exif = image.getexif()
            if _ORIENTATION in exif:
                exif[_ORIENTATION] = 1
            return {"exif": exif.tobytes() if exif else None, "icc": icc}
    except Exception:  # metadata is a courtesy: unreadable metadata never costs the photo
        return {"exif": None, "icc": None}


_ORIENTATION = 0x0112
_METADATA_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".tif",
    ".tiff",
)  # Pillow writes EXIF and ICC to these


def _photo_from_array(array: np.ndarray, path: Path) -> Photo:
    if array.ndim not in (2, 3) or min(array.shape[:2]) < 1:
        raise InputError(f"{path}: unsupported image layout {array.shape}")
    bits = (
        16 if array.dtype in (np.uint16, np.int32, np.uint32) or array.max(initial=0) > 255 else 8
    )
    scale = 65535.0 if bits == 16 else 255.0
    values = array.astype(np.float32) / scale
    if values.ndim == 2:
        values = values[..., None]
    channels = values.shape[2]
    alpha = values[..., channels - 1] if channels in (2, 4) else None
    colour = values[..., : 1 if channels <= 2 else 3]
    grayscale = colour.shape[2] == 1
    rgb = np.repeat(colour, 3, axis=2) if grayscale else colour
    return Photo(np.ascontiguousarray(np.clip(rgb, 0, 1)), alpha, grayscale, bits)


def write_photo(photo: Photo, path: Path, quality: int = JPEG_QUALITY) -> None:
    """Write atomically, in the format the extension names, keeping grayscale, alpha and bit
    depth."""
    path = Path(path)
    values = photo.rgb.mean(axis=2, keepdims=True) if photo.grayscale else photo.rgb
    if photo.alpha is not None and _supports_alpha(path):
        values = np.concatenate([values, photo.alpha[..., None]], axis=2)
    bits = photo.bits if path.suffix.lower() in (".png", ".tif", ".tiff") else 8
    scale, dtype = (65535.0, np.uint16) if bits == 16 else (255.0, np.uint8)
    array = np.round(np.clip(values, 0, 1) * scale).astype(dtype)
    if array.shape[2] == 1:
        array = array[..., 0]
    extra = {"quality": quality} if path.suffix.lower() in (".jpg", ".jpeg", ".webp") else {}
    if path.suffix.lower() in _METADATA_SUFFIXES:
        extra.update(
            {
                key: value
                for key, value in (("exif", photo.exif), ("icc_profile", photo.icc))
                if value
            }
        )
    with atomic_path(path) as tmp:
        try:
            iio.imwrite(tmp, array, plugin="pillow", extension=path.suffix, **extra)
        except Exception as err:
            raise OutputError(f"{path}: cannot write image ({first_line(err)})") from None


def _supports_alpha(path: Path) -> bool:
    return path.suffix.lower() in (".png", ".webp", ".tif", ".tiff")


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def check_output_file(output: Path, inputs: Sequence[Path], overwrite: bool) -> None:
    """Fail early, before any work, when the file `output` could not or should not be written."""
    output = Path(output)
    if any(output.resolve() == Path(path).resolve() for path in inputs):
        raise OutputError(f"{output}: the output would overwrite an input")
    if output.is_dir():
        raise OutputError(f"{output}: is a folder; name the output file")
    if output.exists() and not overwrite:
        raise OutputError(f"{output}: exists already (use --overwrite)")
    check_writable_folder(output.parent)


def check_writable_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise OutputError(
            f"{folder}: cannot write into this folder ({err.strerror or err})"
        ) from None


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
        )
    except OSError as err:
        raise OutputError(f"{path}: cannot write here ({err.strerror or err})") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a finished file gets the usual mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def resize_long_side(rgb: np.ndarray, long_side: int | None) -> np.ndarray:
    """To `long_side` px on its long side (None: as is)."""
    if long_side is None:
        return rgb
    height, width = rgb.shape[:2]
    scale = long_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return rgb
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return np.clip(cv2.resize(rgb, size, interpolation=interpolation), 0, 1)


def resize_to(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (width, height)."""
    if (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    interpolation = cv2.INTER_AREA if size[0] < rgb.shape[1] else cv2.INTER_CUBIC
    return np.clip(cv2.resize(rgb, tuple(size), interpolation=interpolation), 0, 1)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """H x W x 3 float array to a 1 x 3 x H x W tensor."""
    return (
        torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32))
        .permute(2, 0, 1)
        .unsqueeze(0)
        .contiguous()
    )


def to_array(image: torch.Tensor) -> np.ndarray:
    """1 x 3 x H x W tensor to an H x W x 3 float32 array in [0, 1]."""
    return image.detach().float().clamp(0, 1).squeeze(0).permute(1, 2, 0).cpu().numpy().copy()


def load_rgb(path: Path, long_side: int | None = None) -> torch.Tensor:
    rgb = read_photo(path).rgb
    return to_tensor(resize_long_side(rgb, long_side) if long_side else rgb)


def load_styles(paths: Sequence[Path]) -> list[torch.Tensor]:
    """Style images at their own size (the engine resizes them to the content); a broken one
    names its file."""
    return [load_rgb(Path(p)) for p in paths]
