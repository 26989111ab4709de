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

from pipeline.engine import Plan, Stylizer, scale_ladder
from pipeline.errors import InputError, OutputError, SettingsError, StylizeError
from pipeline.executor import make_executor
from pipeline.gallery import write_gallery, write_thumbnail
from pipeline.image_io import atomic_path, load_rgb, read_photo, write_photo
from pipeline.image_io import check_writable_folder
from pipeline.image_job import IMAGE_SUFFIXES, stylize_photo
from pipeline.report import BatchReport, ItemCallback, ItemResult, WorkItem, fingerprint
from pipeline.settings import ClusterSettings, FolderSettings, StyleSettings
from pipeline.weights import VGGWeights, load_weights

REPORT = "report.json"


def find_photos(folder: Path, skip: Path | None = None) -> Iterator[Path]:
    """Image files under `folder` by extension, sorted, leaving out hidden files and the `skip` tree."""
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if skip is not None and path.resolve().is_relative_to(skip):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES:
            yield path


def plan(source: Path, output: Path, styles: list[Path], settings: FolderSettings) -> list[WorkItem]:
    """Every (photo, style) pair with its mirrored output path."""
    source, output = Path(source), Path(output)
    if not source.is_dir():
        raise InputError(f"{source}: not a folder")
    if output.resolve() == source.resolve():
        raise OutputError(f"{output}: the output folder is the input folder; choose another")
    for style in styles:
        if not Path(style).is_file():
            raise InputError(f"{style}: file not found")
    items = []
    for photo in find_photos(source, skip=output.resolve()):
        relative = photo.relative_to(source)
        for style in styles:
            items.append(WorkItem(photo, output_path(output, relative, Path(style), len(styles), settings.style_folders), Path(style)))
    return items


def output_path(root: Path, relative: Path, style: Path, style_count: int, style_folders: bool) -> Path:
    if style_count == 1:
        return root / relative
    if style_folders:
        return root / style.stem / relative
    return root / relative.with_name(f"{relative.stem}.{style.stem}{relative.suffix}")


class Batch:
    """VGG loaded once; one Stylizer (and its cached Gram targets) per style."""

    def __init__(self, styles: list[Path], style: StyleSettings, folder: FolderSettings, weights: VGGWeights | str | None = None):
        self.style, self.folder = style, folder
        self.weights = weights if isinstance(weights, VGGWeights) else load_weights(weights)
        self._stylizers: dict[Path, Stylizer] = {}
        for path in styles:  # a broken style image is a bad argument, found before any work
            self._stylizers[Path(path)] = Stylizer(style, [load_rgb(Path(path))], self.weights)

    def stylizer(self, style: Path) -> Stylizer:
        return self._stylizers[Path(style)]

    def run_item(self, item: WorkItem, callback=None) -> ItemResult:
        """Stylize one photo; any failure of this photo is caught and reported, never raised."""
        if item.output.exists() and not self.folder.overwrite:
            return ItemResult(item, "skipped", "output exists")
        start = time.perf_counter()
        try:
            photo = read_photo(item.source)
            stylized, _ = stylize_photo(photo, self.stylizer(item.style), self.folder.keep_size, callback)
            write_photo(stylized, item.output, self.folder.quality)
        except StylizeError as error:
            return ItemResult(item, "failed", str(error).removeprefix(f"{item.source}: "), time.perf_counter() - start)
        except Exception as error:  # one odd photo must not stop a night's run
            return ItemResult(item, "failed", f"{type(error).__name__}: {error}", time.perf_counter() - start)
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
    styles: list[Path],
    style: StyleSettings,
    folder: FolderSettings = FolderSettings(),
    weights: VGGWeights | str | None = None,
    on_item: ItemCallback | None = None,
    cluster: ClusterSettings | None = None,
    on_workers: Callable[[int], None] | None = None,
) -> BatchReport:
    """`cluster`: run the photos on Ray workers instead of in this process (same items, same outputs);
    `on_workers` is told how many workers started there."""
    source, output = Path(source), Path(output)
    items = plan(source, output, styles, folder)
    check_writable_folder(output)
    remove_stale_temporaries(output)
    report = BatchReport(source, output)
    failed_before = {} if folder.overwrite else previous_failures(output)
    pending = []
    for item in items:
        earlier = failed_before.get((str(item.source), str(item.style)))
        if item.output.exists() and not folder.overwrite:
            report.results.append(ItemResult(item, "skipped", "output exists"))
        elif earlier is not None and earlier[0] == fingerprint(item.source):
            report.results.append(ItemResult(item, "failed", earlier[1], before=True))
        else:
            pending.append(item)

    def record(result: ItemResult) -> None:
        if result.status == "done":
            write_thumbnail(output, result.item.source, result.item.output)
        report.results.append(result)
        if on_item:
            on_item(len(report.results) - (len(items) - len(pending)) - 1, len(pending), result.item, result)
        write_gallery(report)

    if pending:
        if cluster is not None and isinstance(weights, VGGWeights):
            raise SettingsError("over Ray, pass weights as a name or path: each worker loads its own")
        starting = (lambda index, item: on_item(index, len(pending), item, None)) if on_item else None
        make_executor(cluster, on_workers).run(partial(Batch, styles, style, folder, weights), Batch.run_item, pending,
                                               record, starting)
    write_gallery(report)
    write_report(report)
    return report


def previous_failures(output: Path) -> dict[tuple[str, str], tuple[str | None, str]]:
    """(source, style) -> (fingerprint, reason) of the failures in an earlier run's report."""
    try:
        items = json.loads((output / REPORT).read_text())["items"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {(i["source"], i["style"]): (i.get("fingerprint"), i["reason"]) for i in items if i.get("status") == "failed"}


def write_report(report: BatchReport) -> Path:
    path = report.output / REPORT
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report.to_json(), indent=2))
    return path


def estimate_seconds(items: list[WorkItem], style: StyleSettings, weights: VGGWeights | str | None = None,
                     probe_iterations: int = 8) -> float:
    """A dry run's estimate: one short timed run at the chosen size (4:3), scaled to the whole batch."""
    if not items:
        return 0.0
    height, width = round(style.size * 3 / 4), style.size
    probe_settings = replace(style, coarse_to_fine=False, tolerance=0.0)
    stylizer = Stylizer(probe_settings, [load_rgb(items[0].style)], weights)
    content = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    stylizer.stylize(content, Plan(iterations=2))  # warm-up: oneDNN picks its kernels on first use
    result = stylizer.stylize(content, Plan(iterations=probe_iterations))
    per_evaluation = result.seconds / max(1, result.evaluations)
    # each scale of the ladder runs the full budget; a coarser scale costs its share of pixels
    pixels = sum(h * w for h, w in scale_ladder(height, width, style)) / (height * width)
    return len(items) * per_evaluation * style.iterations * 1.1 * pixels
