"""A look before the night: a few frames spread over a video (or photos spread over a folder), each
stylized at a small size for every style weight to try, written as one contact sheet: the input
above each result, every row labelled with its setting, the header with the whole run's estimate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from pipeline.batch import estimate_seconds, find_photos, plan
from pipeline.engine import Stylizer
from pipeline.errors import InputError
from pipeline.image_io import (
    Photo,
    check_output_file,
    load_styles,
    read_photo,
    resize_long_side,
    to_array,
    to_tensor,
    write_photo,
)
from pipeline.report import format_duration
from pipeline.settings import FolderSettings, StyleSettings, VideoSettings
from pipeline.sources import open_reader, probe
from pipeline.video_io import even_size
from pipeline.weights import load_weights

# long side of each tile at most: the strokes scale with the image (the style is sized to the
# output)
PREVIEW_SIZE = 256
PREVIEW_ITERATIONS = 100  # enough to show the look; the run itself converges further
LABEL = 20  # pixels of the band above each row


@dataclass
class Preview:
    path: Path
    samples: int
    style_weights: tuple[float, ...]
    run_seconds: float  # the whole run's estimate at the chosen settings


def make_preview(
    source: Path,
    style_images: list[Path],
    output: Path,
    *,
    settings: StyleSettings,
    video: VideoSettings = VideoSettings(),
    style_weights: tuple[float, ...] = (),
    samples: int = 3,
    weights: str | None = None,
    overwrite: bool = False,
    on_tile: Callable[[int, int], None] | None = None,
) -> Preview:
    """Stylize `samples` inputs for each of `style_weights` (default: the settings' own) and
    write the sheet."""
    source, output = Path(source), Path(output)
    check_output_file(output, [source, *style_images], overwrite)
    style_weights = style_weights or (settings.style_weight,)
    side = min(settings.size or PREVIEW_SIZE, PREVIEW_SIZE)
    inputs = (
        _spread_photos(source, samples, side)
        if source.is_dir()
        else _spread_frames(source, video, samples, side)
    )
    network, styles = load_weights(weights), load_styles(style_images)
    run_seconds = _run_estimate(source, style_images, output, settings, video, network)
    rows = [[rgb for _, rgb in inputs]]
    for number, style_weight in enumerate(style_weights):
        look = replace(
            settings,
            style_weight=style_weight,
            size=side,
            iterations=min(settings.iterations, PREVIEW_ITERATIONS),
            coarse_to_fine=False,
        )
        stylizer = Stylizer(look, styles, network)
        row = []
        for index, (_, rgb) in enumerate(inputs):
            row.append(to_array(stylizer.stylize(to_tensor(rgb)).image))
            if on_tile:
                on_tile(number * len(inputs) + index + 1, len(style_weights) * len(inputs))
        rows.append(row)
    labels = ["input: " + ", ".join(name for name, _ in inputs)] + [
        f"style weight {w:g}" for w in style_weights
    ]
    header = (
        f"{source.name} x {', '.join(p.name for p in style_images)}: whole run at "
        f"{settings.size or 'full'} px "
        f"estimated {format_duration(run_seconds)} on this machine"
    )
    write_photo(Photo(contact_sheet(rows, labels, header)), output)
    return Preview(output, len(inputs), tuple(style_weights), run_seconds)


def _spread_frames(
    source: Path, video: VideoSettings, count: int, side: int
) -> list[tuple[str, np.ndarray]]:
    """`count` frames spread evenly over the range, decoded in one pass at the preview size."""
    info = probe(source, video.fps)
    total = info.frames_between(video.start, video.duration)
    wanted = {min(total - 1, int((k + 0.5) * total / count)): k for k in range(count)}
    size = even_size(info.width, info.height, side)
    picked = []
    with open_reader(info, size, video.start, video.duration) as reader:
        for index, rgb in enumerate(reader.frames(max(wanted) + 1)):
            if index in wanted:
                picked.append((f"frame {index}", rgb.astype(np.float32) / np.iinfo(rgb.dtype).max))
    return picked


def _spread_photos(folder: Path, count: int, side: int) -> list[tuple[str, np.ndarray]]:
    photos = sorted(find_photos(folder))
    if not photos:
        raise InputError(f"{folder}: no photos found")
    chosen = sorted({photos[int((k + 0.5) * len(photos) / count)] for k in range(count)})
    return [(path.name, resize_long_side(read_photo(path).rgb, side)) for path in chosen]


def _run_estimate(
    source: Path,
    style_images: list[Path],
    output: Path,
    settings: StyleSettings,
    video: VideoSettings,
    network,
) -> float:
    if source.is_dir():
        return estimate_seconds(
            plan(source, output.parent / output.stem, style_images, FolderSettings()),
            settings,
            network,
        )
    from pipeline.video_estimate import estimate_video  # it decodes the whole video: only here

    target = output.with_suffix(".mp4")
    guess = estimate_video(
        source, style_images, target, style_settings=settings, video=video, weights=network
    )
    return guess.seconds


def contact_sheet(rows: list[list[np.ndarray]], labels: list[str], header: str) -> np.ndarray:
    """Rows of tiles (float RGB in [0, 1]) on a white sheet, each row under its label, the header
    on top."""
    width = sum(max(tile.shape[1] for tile in column) for column in zip(*rows)) + 4 * (
        len(rows[0]) + 1
    )
    blocks = [_band(header, width)]
    for label, row in zip(labels, rows):
        height = max(tile.shape[0] for tile in row)
        strip = np.ones((height, width, 3), np.float32)
        x = 4
        for tile in row:
            strip[: tile.shape[0], x : x + tile.shape[1]] = tile
            x += tile.shape[1] + 4
        blocks += [_band(label, width), strip]
    return np.concatenate(blocks, axis=0)


def _band(text: str, width: int) -> np.ndarray:
    band = np.full((LABEL, width, 3), 255, np.uint8)
    cv2.putText(
        band, text, (4, LABEL - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA
    )
    return band.astype(np.float32) / 255
