"""One image in, one stylized image out: the work item behind `stylize image` and each photo of a
folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from pipeline.engine import ProgressCallback, Result, Stylizer, check_size
from pipeline.errors import OutputError
from pipeline.image_io import (
    Photo,
    check_output_file,
    load_styles,
    read_photo,
    resize_long_side,
    resize_to,
    to_array,
    to_tensor,
    write_photo,
)
from pipeline.settings import JPEG_QUALITY, StyleSettings

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")


def check_output(output: Path, inputs: Sequence[Path], overwrite: bool = False) -> None:
    """Fail early, before any work, when `output` could not or should not be written."""
    output = Path(output)
    if output.suffix.lower() not in IMAGE_SUFFIXES:
        raise OutputError(
            f"{output}: unknown image format {output.suffix!r}; use one of "
            f"{', '.join(IMAGE_SUFFIXES)}"
        )
    check_output_file(output, inputs, overwrite)


def stylize_photo(
    photo: Photo,
    stylizer: Stylizer,
    keep_size: bool = False,
    callback: ProgressCallback | None = None,
) -> tuple[Photo, Result]:
    """Stylize at the settings' size; alpha, grayscale and bit depth follow the input."""
    content = to_tensor(resize_long_side(photo.rgb, stylizer.settings.size))
    result = stylizer.stylize(content, callback=callback)
    rgb = to_array(result.image)
    size = photo.size if keep_size else (rgb.shape[1], rgb.shape[0])
    rgb = resize_to(rgb, size)
    alpha = resize_to(photo.alpha, size) if photo.alpha is not None else None
    return replace(photo, rgb=rgb, alpha=alpha), result


def save_intermediates(output: Path, every: int) -> ProgressCallback | None:
    """A progress callback that writes `<output stem>.iterNNNN<suffix>` every `every` iterations."""
    if every <= 0:
        return None
    written: set[tuple[int, int]] = set()

    def callback(progress) -> None:
        key = (progress.scale, progress.iteration)
        if progress.iteration and progress.iteration % every == 0 and key not in written:
            written.add(key)
            path = output.with_name(
                f"{output.stem}.s{progress.scale}.iter{progress.iteration:04d}{output.suffix}"
            )
            write_photo(Photo(to_array(progress.image)), path)

    return callback


def stylize_file(
    content: Path,
    styles: Sequence[Path],
    output: Path,
    *,
    settings: StyleSettings,
    weights: str | None = None,
    callback: ProgressCallback | None = None,
    quality: int = JPEG_QUALITY,
    overwrite: bool = False,
) -> Result:
    """Read, stylize, write (atomically). Checks every path before loading the network."""
    content, output = Path(content), Path(output)
    photo = read_photo(content)
    style_images = load_styles(styles)
    check_output(output, [content, *styles], overwrite)
    check_size(*resize_long_side(photo.rgb, settings.size).shape[:2], settings, content)
    stylizer = Stylizer(settings, style_images, weights)
    saver = save_intermediates(output, settings.save_every)

    def both(progress) -> None:
        for fn in (callback, saver):
            if fn:
                fn(progress)

    stylized, result = stylize_photo(photo, stylizer, callback=both)
    write_photo(stylized, output, quality=quality)
    return result
