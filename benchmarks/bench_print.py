"""Print-size benchmark: a 4032x3024 photo stylized at its full size.

A camera-size photo (golden_gate.jpg upscaled to 4032x3024, as a phone takes them) runs through
`--size full`: coarse-to-fine from about 512 px up, each scale within the memory budget (tiled
where the whole image does not fit). Each run is its own process so its peak RSS is its own.
Reports, per scale: its size, iterations, evaluations, tiles, wall time and peak RSS at its end;
then the final losses at full size of the full-size result and of a 512-px result scaled up
(both judged tiled, against the same full-size content), and writes the same crop of each to
docs/images/print-crop.jpg.

Run: make bench-print [ARGS="--max-memory 7G --width 4032"]; ARGS=--bounds: peak RSS against
--max-memory. Prints markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from benchmarks.harness import (
    GOLDEN_GATE,
    IMAGES,
    STYLE,
    argument_parser,
    heading,
    row,
    run_child,
    run_command,
    table,
)


class ScaleRecorder:
    """A progress callback that keeps each scale's figures: size, start and end (seconds from the
    start), iterations, evaluations, budget, peak RSS so far and tiles."""

    def __init__(self, stylizer) -> None:
        self.stylizer, self.scales, self.start = stylizer, {}, time.perf_counter()

    def __call__(self, progress) -> None:
        from pipeline.device import peak_rss_bytes

        elapsed = time.perf_counter() - self.start
        height, width = progress.image.shape[-2:]
        entry = self.scales.setdefault(progress.scale, {"size": [height, width], "start": elapsed})
        entry.update(
            end=elapsed,
            iterations=progress.iteration,
            evaluations=progress.evaluations,
            budget=progress.iterations,
            peak_mib=peak_rss_bytes() / 2**20,
            tiles=len(self.stylizer.memory_plan(height, width).tiles or []),
        )
        if progress.tile is None and progress.evaluations % 5 == 1:
            print(
                f"scale {progress.scale}/{progress.scales} {entry['size']} eval "
                f"{progress.evaluations} {elapsed:.0f} s {entry['peak_mib']:.0f} MiB",
                file=sys.stderr,
                flush=True,
            )


def stylize_photo(photo: str, output: str, size: str, budget: str) -> dict:
    """Child: `photo` stylized at `size` ("full" or a long side in pixels) into `output`."""
    from pipeline.engine import Stylizer
    from pipeline.image_io import (
        Photo,
        load_rgb,
        read_photo,
        resize_long_side,
        to_array,
        to_tensor,
        write_photo,
    )
    from pipeline.settings import StyleSettings, parse_bytes

    long_side = None if size == "full" else int(size)
    settings = StyleSettings(size=long_side, max_memory=parse_bytes(budget))
    stylizer = Stylizer(settings, [load_rgb(STYLE)])
    content = to_tensor(resize_long_side(read_photo(Path(photo)).rgb, settings.size))
    recorder = ScaleRecorder(stylizer)
    result = stylizer.stylize(content, callback=recorder)
    write_photo(Photo(to_array(result.image)), Path(output))
    return {"scales": recorder.scales, "losses": result.losses, "seconds": result.seconds}


def judge(photo: str, budget: str, outputs: list[str]) -> dict:
    """Child: each output's losses at full size against the full-size content (tiled when
    needed)."""
    from pipeline.engine import Stylizer, resize_image
    from pipeline.image_io import load_rgb
    from pipeline.settings import StyleSettings, parse_bytes

    settings = StyleSettings(size=None, max_memory=parse_bytes(budget))
    stylizer = Stylizer(settings, [load_rgb(STYLE)])
    content = load_rgb(Path(photo))
    return {
        name: stylizer.evaluate(
            resize_image(load_rgb(Path(name)), tuple(content.shape[-2:])), content
        )
        for name in outputs
    }


def activation_bytes(precision: str, side: int) -> float:
    """Child: the peak RSS growth of one whole-image evaluation (forward and backward), per input
    pixel: the calibration of tiles.ACTIVATION_BYTES."""
    import torch

    from pipeline.device import peak_rss_bytes
    from pipeline.engine import Plan, Stylizer
    from pipeline.image_io import load_rgb
    from pipeline.settings import StyleSettings

    settings = StyleSettings(
        size=side, precision=precision, coarse_to_fine=False, tolerance=0.0, max_memory=2**40
    )
    stylizer = Stylizer(settings, [load_rgb(STYLE)])
    stylizer.stylize(torch.rand(1, 3, 48, 64), Plan(iterations=1))
    height = side * 3 // 4
    content = torch.rand(1, 3, height, side, generator=torch.Generator().manual_seed(0))
    terms = stylizer.loss_terms(content)
    before = peak_rss_bytes()
    image = content.clone().requires_grad_(True)
    stylizer._evaluate(image, terms, stylizer.memory_plan(height, side))
    return (peak_rss_bytes() - before) / (height * side)


def calibrate(sizes: tuple[int, ...] = (512, 1024)) -> None:
    print(heading("Activation memory — `make bench-print ARGS=--calibrate`"))
    print(
        "Peak RSS growth of one whole-image evaluation (forward and backward), per input pixel:\n"
    )
    print(table(("precision", "size", "bytes per pixel")), flush=True)
    for precision in ("fp32", "bf16"):
        for side in sizes:
            growth = run_child(activation_bytes, precision, side).result
            print(row([precision, f"{side}x{side * 3 // 4}", f"{growth:.0f}"]), flush=True)


def camera_photo(folder: Path, width: int) -> Path:
    """golden_gate.jpg upscaled to a phone's 4:3 frame (4032x3024 by default)."""
    rgb = cv2.imread(str(GOLDEN_GATE))
    height = width * 3 // 4
    source_h, source_w = rgb.shape[:2]
    crop_h = min(source_h, source_w * 3 // 4)
    crop_w = crop_h * 4 // 3
    top, left = (source_h - crop_h) // 2, (source_w - crop_w) // 2
    big = cv2.resize(
        rgb[top : top + crop_h, left : left + crop_w],
        (width, height),
        interpolation=cv2.INTER_CUBIC,
    )
    path = folder / f"camera-{width}x{height}.jpg"
    cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


def crop_pair(full: Path, small: Path) -> str:
    """The same 600x400 crop of the full-size result and of the 512-px result scaled up."""
    big = cv2.imread(str(full))
    up = cv2.resize(
        cv2.imread(str(small)), (big.shape[1], big.shape[0]), interpolation=cv2.INTER_CUBIC
    )
    top, left = big.shape[0] // 2 - 200, big.shape[1] // 2 - 300
    pair = np.hstack(
        [
            big[top : top + 400, left : left + 600],
            np.full((400, 8, 3), 255, np.uint8),
            up[top : top + 400, left : left + 600],
        ]
    )
    IMAGES.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(IMAGES / "print-crop.jpg"), pair, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return "images/print-crop.jpg"


def scales_table(scales: dict) -> str:
    columns = ("scale", "size", "iterations / budget", "evaluations", "tiles", "wall")
    rows = [
        [
            index,
            f"{scale['size'][1]}x{scale['size'][0]}",
            f"{scale['iterations']} / {scale['budget']}",
            scale["evaluations"],
            scale["tiles"] or "whole",
            f"{(scale['end'] - scale['start']) / 60:.1f} min",
            f"{scale['peak_mib']:.0f} MiB",
        ]
        for index, scale in sorted(scales.items(), key=lambda item: int(item[0]))
    ]
    return table((*columns, "peak RSS at its end"), rows)


def print_size(work: Path, width: int, max_memory: str) -> None:
    """The full-size run and the 512-px run, each judged at full size, and their crops."""
    photo = camera_photo(work, width)
    full_path, small_path = work / "full.png", work / "small-512.png"
    full = run_child(stylize_photo, photo, full_path, "full", max_memory)
    small = run_child(stylize_photo, photo, small_path, "512", max_memory)
    judged = run_child(judge, photo, max_memory, [str(full_path), str(small_path)]).result
    print(heading("Print size — `make bench-print`"))
    print(f"Photo: {photo.name}; style starry_night.jpg; --max-memory {max_memory}.\n")
    print(scales_table(full.result["scales"]))
    print(
        f"\nFull size: {full.wall_s / 60:.1f} min in all, peak RSS {full.peak_rss_mib:.0f} MiB. "
        f"512 px: {small.wall_s / 60:.1f} min, peak RSS {small.peak_rss_mib:.0f} MiB.\n"
    )
    print("Judged at full size (weighted losses against the full-size content; lower is better):\n")
    rows = [
        [label, *(f"{judged[str(path)][part]:.4g}" for part in ("content", "style", "total"))]
        for label, path in (("full size", full_path), ("512 px scaled up", small_path))
    ]
    print(table(("result", "content", "style", "total"), rows))
    crop = crop_pair(full_path, small_path)
    print(f"\n![crop]({crop})  (left: full size; right: 512 px scaled up)")


class BudgetRuns:
    """The photo at full size with the default ladder, and runs of one scale from the result one
    scale down (scaled up; its L-BFGS curvature carried as the ladder does, or not)."""

    def __init__(self, photo: Path, device: str, max_memory: str, iterations: int) -> None:
        from pipeline.engine import Stylizer, rung_budget
        from pipeline.image_io import load_rgb
        from pipeline.settings import StyleSettings, parse_bytes

        self.settings = StyleSettings(
            size=None, max_memory=parse_bytes(max_memory), device=device, iterations=iterations
        )
        self.stylizer = Stylizer(self.settings, [load_rgb(STYLE)])
        self.content = load_rgb(photo)
        self.ladder = self.stylizer.ladder(self.content)
        self.default = [
            rung_budget(size, iterations, self.settings, self.ladder)[1] for size in self.ladder
        ]

    def at(self, scale: int):
        """The content at ladder[scale]."""
        from pipeline.engine import resize_image

        return resize_image(self.content, self.ladder[scale])

    def run(self, image, start=None, evaluations: int | None = None, carry: bool = True):
        """`image` stylized: the default ladder without `start`, else from it at one scale."""
        from pipeline.engine import Plan, resize_image

        if start is None:
            return self.stylizer.stylize(image)
        plan = Plan(
            init=resize_image(start.image, tuple(image.shape[-2:])),
            iterations=evaluations,
            evaluations=evaluations,
            curvature=start.curvature if carry else None,
        )
        return self.stylizer.stylize(image, plan)

    def judged(self, result) -> list[str]:
        """Evaluations, seconds and the losses at full size of a result."""
        losses = self.stylizer.evaluate(result.image, self.content)
        each = result.seconds / max(1, result.evaluations)
        figures = [f"{losses[part]:.4g}" for part in ("content", "style", "total")]
        return [result.evaluations, f"{result.seconds:.1f} s ({each:.2f} s each)", *figures]


def budget_table(photo: Path, args: argparse.Namespace) -> None:
    """How few evaluations the two largest scales need: each budget run from the same start (the
    default ladder's result one scale down, scaled up) and judged at full size. The rest of the
    ladder keeps its default budgets; "below" varies the second-largest scale, the largest at its
    default."""
    runs = BudgetRuns(photo, args.device, args.max_memory, args.iterations)
    top, below = (tuple(int(n) for n in text.split(",") if n) for text in (args.top, args.below))
    largest, second = max(runs.ladder[-1]), max(runs.ladder[-2])
    precision = f"{runs.settings.precision} precision"
    title = "Scale budgets — `make bench-print ARGS=--budgets`"
    print(heading(title, precision, device=args.device))
    sides = [max(size) for size in runs.ladder]
    print(f"Ladder {sides}, default evaluations {runs.default}.\n")
    columns = ("varied scale", "its evaluations (asked)", "used", "wall", "content", "style")
    print(table((*columns, "total")), flush=True)
    start_top = runs.run(runs.at(-2))
    for budget in top:
        carried = runs.judged(runs.run(runs.content, start_top, budget))
        print(row([f"{largest} px, curvature carried", budget, *carried]), flush=True)
        if args.cold and budget:
            cold = runs.judged(runs.run(runs.content, start_top, budget, carry=False))
            print(row([f"{largest} px, cold start", budget, *cold]), flush=True)
    start_below = runs.run(runs.at(-3)) if below else None
    for budget in below:
        middle = runs.run(runs.at(-2), start_below, budget)
        judged = runs.judged(runs.run(runs.content, middle, runs.default[-1]))
        label = f"{second} px (then {runs.default[-1]} at {largest})"
        print(row([label, budget, *judged]), flush=True)


def bound_row(photo: Path, output: Path, bound: str, iterations: int) -> list[str]:
    """`stylize image --size full --max-memory bound` on `photo`, as a user runs it: what came of
    it and its peak RSS against the bound."""
    from pipeline.settings import parse_bytes

    command = [sys.executable, "-m", "cli.main", "image", str(photo), "-s", str(STYLE)]
    command += ["-o", str(output), "--size", "full", "--overwrite"]
    command += ["--max-memory", bound, "--iterations", str(iterations)]
    run = run_command(command)
    lines = [line for line in run.output.splitlines() if line.strip()]
    reason = lines[-1].removeprefix("error: ") if lines else "?"
    outcome = "done" if run.returncode == 0 else f"refused: {reason}"
    limit = parse_bytes(bound)
    ratio = f"{run.peak_rss_mib * 2**20 / limit:.2f}" if limit else "–"
    width, height = (int(n) for n in photo.stem.split("-")[-1].split("x"))
    return [
        f"{width}x{height}",
        bound,
        outcome,
        f"{run.wall_s / 60:.1f} min",
        f"{run.peak_rss_mib:.0f} MiB",
        ratio,
    ]


def bounds_table(work: Path, widths: Sequence[int], bounds: Sequence[str], iterations: int) -> None:
    print(heading("Memory bound — `make bench-print ARGS=--bounds`"))
    print(
        f"`stylize image PHOTO -s starry_night.jpg --size full --max-memory BOUND --iterations"
        f" {iterations}`, each its own process; peak RSS from the OS (wait4).\n"
    )
    print(table(("photo", "--max-memory", "outcome", "wall", "peak RSS", "peak / bound")))
    for width in widths:
        photo, tried = camera_photo(work, width), set()
        for bound in bounds:
            cells = bound_row(photo, work / "bound.jpg", bound, iterations)
            print(row(cells), flush=True)
            tried.add(bound)
            named = re.search(r"give at least ([\d.]+[GM])", cells[2])
            if named and named[1] not in tried:  # the bound the refusal names, run once
                tried.add(named[1])
                print(row(bound_row(photo, work / "bound.jpg", named[1], iterations)), flush=True)


def parse_args() -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--width", type=int, default=4032)
    parser.add_argument("--max-memory", default="auto")
    parser.add_argument(
        "--work", type=Path, help="where inputs and outputs go (default: a temporary folder)"
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="only measure activation memory per pixel (tiles.ACTIVATION_BYTES)",
    )
    parser.add_argument(
        "--budgets",
        action="store_true",
        help="only the table of the two largest scales' evaluation budgets",
    )
    parser.add_argument(
        "--bounds",
        action="store_true",
        help="only the table of peak RSS against --max-memory (2G, 4G, auto) at 2400 and 4032 px",
    )
    parser.add_argument("--bound-widths", default="2400,4032", help="with --bounds")
    parser.add_argument("--bound-values", default="2G,4G,auto", help="with --bounds")
    parser.add_argument("--bound-iterations", type=int, default=3, help="with --bounds")
    budgets = parser.add_argument_group("with --budgets")
    budgets.add_argument("--device", default="auto", help="cpu, cuda or auto")
    budgets.add_argument("--iterations", type=int, default=300, help="the settings' --iterations")
    budgets.add_argument(
        "--cold", action="store_true", help="also each top budget from a cold L-BFGS start"
    )
    budgets.add_argument(
        "--top", default="0,2,5,10,20,40", help="evaluations tried at the largest scale"
    )
    budgets.add_argument(
        "--below", default="0,5,10,19,40,80", help="at the second largest (empty: none)"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.calibrate and not args.budgets:
        return calibrate()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-print-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.budgets:
        return budget_table(camera_photo(work, args.width), args)
    if args.bounds:
        widths = [int(n) for n in args.bound_widths.split(",")]
        return bounds_table(work, widths, args.bound_values.split(","), args.bound_iterations)
    print_size(work, args.width, args.max_memory)


if __name__ == "__main__":
    main()
