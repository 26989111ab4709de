"""A folder of photos in, a mirrored folder of stylized photos out.

Each (photo, style) pair is an independent, idempotent work item: its output is written
atomically, and an item whose output exists is done. So a killed run resumes where it stopped,
one bad photo costs only itself, and the same items could be spread over several machines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
from PIL import Image

from pipeline.device import release_freed_memory
from pipeline.engine import Plan, Stylizer, rung_budget, scale_ladder
from pipeline.errors import InputError, OutputError, SettingsError, StylizeError
from pipeline.executor import check_worker_device, make_executor
from pipeline.gallery import write_gallery, write_thumbnail
from pipeline.image_io import (
    atomic_path,
    check_writable_folder,
    load_styles,
    read_photo,
    write_photo,
)
from pipeline.image_job import IMAGE_SUFFIXES, stylize_photo
from pipeline.report import BatchReport, ItemCallback, ItemResult, WorkItem, fingerprint
from pipeline.settings import ClusterSettings, FolderSettings, StyleSettings
from pipeline.weights import VGGWeights, load_weights

REPORT = "report.json"


def find_photos(folder: Path, skip: Path | None = None) -> Iterator[Path]:
    """Image files under `folder` by extension, sorted, leaving out hidden files and the `skip`
    tree."""
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if skip is not None and path.resolve().is_relative_to(skip):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES:
            yield path


def plan(
    source: Path, output: Path, style_images: list[Path], settings: FolderSettings
) -> list[WorkItem]:
    """Every (photo, style) pair with its mirrored output path."""
    source, output = Path(source), Path(output)
    if not source.is_dir():
        raise InputError(f"{source}: not a folder")
    if output.resolve() == source.resolve():
        raise OutputError(f"{output}: the output folder is the input folder; choose another")
    for style in style_images:
        if not Path(style).is_file():
            raise InputError(f"{style}: file not found")
    items = []
    for photo in find_photos(source, skip=output.resolve()):
        relative = photo.relative_to(source)
        for style in style_images:
            items.append(
                WorkItem(
                    photo,
                    output_path(
                        output, relative, Path(style), len(style_images), settings.style_folders
                    ),
                    Path(style),
                )
            )
    return items


def triage(
    items: list[WorkItem], output: Path, overwrite: bool
) -> tuple[list[ItemResult], list[WorkItem]]:
    """What an earlier run settled (output written; failed on the very same file) and what is
    left to run."""
    failed_before = {} if overwrite else previous_failures(output)
    settled, pending = [], []
    for item in items:
        earlier = failed_before.get((str(item.source), str(item.style_image)))
        if is_done(item, overwrite):
            settled.append(ItemResult(item, "skipped", "output exists"))
        elif earlier is not None and earlier[0] == fingerprint(item.source):
            settled.append(ItemResult(item, "failed", earlier[1], before=True))
        else:
            pending.append(item)
    return settled, pending


def is_done(item: WorkItem, overwrite: bool) -> bool:
    """Items are idempotent: one whose output exists is done (its write was atomic)."""
    return not overwrite and item.output.exists()


def output_path(
    root: Path, relative: Path, style: Path, style_count: int, style_folders: bool
) -> Path:
    if style_count == 1:
        return root / relative
    if style_folders:
        return root / style.stem / relative
    return root / relative.with_name(f"{relative.stem}.{style.stem}{relative.suffix}")


class Batch:
    """VGG loaded once; one Stylizer (and its cached Gram targets) per style."""

    def __init__(
        self,
        style_images: list[Path],
        style_settings: StyleSettings,
        folder_settings: FolderSettings,
        weights: VGGWeights | str | None = None,
    ):
        self.folder_settings = folder_settings
        self.weights = weights if isinstance(weights, VGGWeights) else load_weights(weights)
        # a broken style image is a bad argument, found before any work
        images = load_styles(style_images)
        self._stylizers = {
            Path(p): Stylizer(style_settings, [image], self.weights)
            for p, image in zip(style_images, images)
        }

    def stylizer(self, style_image: Path) -> Stylizer:
        return self._stylizers[Path(style_image)]

    def run_item(self, item: WorkItem, callback=None) -> ItemResult:
        """Stylize one photo; any failure of this photo is caught and reported, never raised."""
        # a rerun of the item (another worker finished it)
        if is_done(item, self.folder_settings.overwrite):
            return ItemResult(item, "skipped", "output exists")
        start = time.perf_counter()
        try:
            photo = read_photo(item.source)
            stylized, _ = stylize_photo(
                photo, self.stylizer(item.style_image), self.folder_settings.keep_size, callback
            )
            write_photo(stylized, item.output, self.folder_settings.quality)
        except StylizeError as error:
            return ItemResult(
                item,
                "failed",
                str(error).removeprefix(f"{item.source}: "),
                time.perf_counter() - start,
            )
        except Exception as error:  # one odd photo must not stop a night's run
            return ItemResult(
                item, "failed", f"{type(error).__name__}: {error}", time.perf_counter() - start
            )
        finally:
            release_freed_memory()
        return ItemResult(item, "done", "", time.perf_counter() - start)


def remove_stale_temporaries(output: Path) -> int:
    """Temporary files a killed run left behind (atomic writes never completed)."""
    stale = [p for p in output.rglob(".*.tmp*") if p.is_file()] if output.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def stylize_folder(
    source: Path,
    output: Path,
    style_images: list[Path],
    *,
    style_settings: StyleSettings,
    folder_settings: FolderSettings = FolderSettings(),
    weights: VGGWeights | str | None = None,
    on_item: ItemCallback | None = None,
    cluster: ClusterSettings | None = None,
    on_workers: Callable[[int], None] | None = None,
) -> BatchReport:
    """`cluster`: run the photos on several devices of this machine or on Ray workers instead of
    in this process (same items, same outputs); `on_workers` is told how many workers started."""
    source, output = Path(source), Path(output)
    check_worker_device(cluster, style_settings)
    items = plan(source, output, style_images, folder_settings)
    check_writable_folder(output)
    remove_stale_temporaries(output)
    settled, pending = triage(items, output, folder_settings.overwrite)
    report = BatchReport(source, output, settled)

    def record(result: ItemResult) -> None:
        if result.status == "done":
            write_thumbnail(output, result.item.source, result.item.output)
        report.results.append(result)
        if on_item:
            on_item(
                len(report.results) - (len(items) - len(pending)) - 1,
                len(pending),
                result.item,
                result,
            )
        write_gallery(report)

    if pending:
        if cluster is not None and isinstance(weights, VGGWeights):
            raise SettingsError(
                "over Ray or --devices, pass weights as a name or path: each worker loads its own"
            )
        starting = (
            (lambda index, item: on_item(index, len(pending), item, None)) if on_item else None
        )
        setup = partial(Batch, style_images, style_settings, folder_settings, weights)
        make_executor(cluster, on_workers).run(setup, Batch.run_item, pending, record, starting)
    write_gallery(report)
    write_report(report)
    return report


def previous_failures(output: Path) -> dict[tuple[str, str], tuple[str | None, str]]:
    """(source, style) -> (fingerprint, reason) of the failures in an earlier run's report."""
    try:
        items = json.loads((output / REPORT).read_text())["items"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {
        (i["source"], i["style"]): (i.get("fingerprint"), i["reason"])
        for i in items
        if i.get("status") == "failed"
    }


def write_report(report: BatchReport) -> Path:
    path = report.output / REPORT
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report.to_json(), indent=2))
    return path


def estimate_seconds(
    items: list[WorkItem],
    style_settings: StyleSettings,
    weights: VGGWeights | str | None = None,
    probe_iterations: int = 8,
) -> float:
    """A dry run's estimate: one short timed run at up to 512 px, scaled by each photo's pixels over
    its coarse-to-fine scales and their budgets (photo sizes read from the file headers)."""
    if not items:
        return 0.0
    stylizer = Stylizer(
        replace(style_settings, coarse_to_fine=False, tolerance=0.0),
        load_styles([items[0].style_image]),
        weights,
    )
    per_pixel_evaluation = seconds_per_pixel_evaluation(
        stylizer, style_settings.size, probe_iterations
    )
    work = sum(
        pixel_evaluations(*_header_size(item.source, style_settings), style_settings, stylizer)
        for item in items
    )
    return per_pixel_evaluation * work


def seconds_per_pixel_evaluation(
    stylizer: Stylizer, size: int | None, probe_iterations: int = 8
) -> float:
    """One loss evaluation's seconds per pixel, timed on a random image of up to 512 px (4:3)."""
    side = min(size or 512, 512)
    height, width = round(side * 3 / 4), side
    content = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    stylizer.stylize(content, Plan(iterations=2))  # warm-up: oneDNN picks its kernels on first use
    result = stylizer.stylize(content, Plan(iterations=probe_iterations))
    return result.seconds / max(1, result.evaluations) / (height * width)


def _header_size(photo: Path, settings: StyleSettings) -> tuple[int, int]:
    """(height, width) of the photo's output, from its header (4:3 where the header cannot be
    read)."""
    try:
        with Image.open(photo) as image:
            width, height = image.size
    except (OSError, ValueError):
        width, height = 4, 3
    scale = (settings.size / max(width, height)) if settings.size else 1.0
    return max(1, round(height * scale)), max(1, round(width * scale))


def pixel_evaluations(
    height: int, width: int, settings: StyleSettings, stylizer: Stylizer
) -> float:
    """Pixels times loss evaluations of a cold stylization at this output size, over its ladder: a
    tiled scale counts its tiles' windows, halos included, and the first pass (a third more); 1.1
    evaluations an iteration, as line searches take."""
    ladder = scale_ladder(height, width, settings)
    return 1.1 * sum(
        _evaluated_pixels(stylizer, h, w)
        * min(rung_budget((h, w), settings.iterations, settings, ladder))
        for h, w in ladder
    )


def _evaluated_pixels(stylizer: Stylizer, height: int, width: int) -> float:
    tiles = stylizer.memory_plan(height, width).tiles
    if tiles is None:
        return height * width
    windows = sum(
        (t.window[0].stop - t.window[0].start) * (t.window[1].stop - t.window[1].start)
        for t in tiles
    )
    return windows * 4 / 3
