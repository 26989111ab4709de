"""Print-size benchmark: a 4032x3024 photo stylized at its full size.

A camera-size photo (golden_gate.jpg upscaled to 4032x3024, as a phone takes them) runs through
`--size full`: coarse-to-fine from about 512 px up, each scale within the memory budget (tiled
where the whole image does not fit). Each run is its own process so its peak RSS is its own.
Reports, per scale: its size, iterations, evaluations, tiles, wall time and peak RSS at its end;
then the final losses at full size of the full-size result and of a 512-px result scaled up
(both judged tiled, against the same full-size content), and writes the same crop of each to
docs/images/print-crop.jpg.

Run: make bench-print [ARGS="--max-memory 4G --width 4032"]. Prints markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np

from pipeline.device import cpu_description

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
STYLE = DATA / "styles" / "starry_night.jpg"
PHOTO = DATA / "contents" / "golden_gate.jpg"
IMAGES = ROOT / "docs" / "images"

# One child process: stylize, recording each scale's figures through the progress callback.
CHILD = r"""
import json, sys, time, torch
from pipeline.device import peak_rss_bytes
from pipeline.engine import Stylizer
from pipeline.image_io import Photo, load_rgb, read_photo, to_array, to_tensor, write_photo,
resize_long_side from pipeline.settings import StyleSettings, parse_bytes
photo_path, style_path, out_path, size, budget = sys.argv[1:6]
settings = StyleSettings(size=None if size == "full" else int(size), max_memory=parse_bytes(budget))
stylizer = Stylizer(settings, [load_rgb(style_path)])
content = to_tensor(resize_long_side(read_photo(photo_path).rgb, settings.size))
scales, start = {}, time.perf_counter()
def record(progress):
    entry = scales.setdefault(progress.scale, {"size": list(progress.image.shape[-2:]), "start":
    time.perf_counter() - start}) entry.update(end=time.perf_counter() - start,
    iterations=progress.iteration, evaluations=progress.evaluations,
                 budget=progress.iterations, peak_mib=peak_rss_bytes() / 2**20,
                 tiles=len(stylizer.memory_plan(*progress.image.shape[-2:]).tiles or []))
    if progress.tile is None and progress.evaluations % 5 == 1:
        print(f"scale {progress.scale}/{progress.scales} {entry['size']} eval {progress.evaluations}
        "
              f"{entry['end']:.0f} s {entry['peak_mib']:.0f} MiB", file=sys.stderr, flush=True)
result = stylizer.stylize(content, callback=record)
write_photo(Photo(to_array(result.image)), out_path)
print(json.dumps({"scales": scales, "losses": result.losses, "seconds": result.seconds,
                  "peak_mib": peak_rss_bytes() / 2**20}))
"""

# Judge an output at full size: its losses against the full-size content (tiled when needed).
JUDGE = r"""
import json, sys, torch
from pipeline.engine import Stylizer, resize_image
from pipeline.image_io import load_rgb
from pipeline.settings import StyleSettings, parse_bytes
photo_path, style_path, budget = sys.argv[1:4]
stylizer = Stylizer(StyleSettings(size=None, max_memory=parse_bytes(budget)),
[load_rgb(style_path)]) content = load_rgb(photo_path)
out = {}
for name in sys.argv[4:]:
    image = resize_image(load_rgb(name), tuple(content.shape[-2:]))
    out[name] = stylizer.evaluate(image, content)
print(json.dumps(out))
"""


# Calibration of tiles.ACTIVATION_BYTES: peak RSS growth of one whole-image evaluation, per pixel.
CALIBRATE = r"""
import json, sys, torch
from pipeline.device import peak_rss_bytes
from pipeline.engine import Stylizer, Plan
from pipeline.image_io import load_rgb
from pipeline.settings import StyleSettings
precision, side, style = sys.argv[1], int(sys.argv[2]), sys.argv[3]
settings = StyleSettings(size=side, precision=precision, coarse_to_fine=False, tolerance=0.0,
max_memory=2**40) stylizer = Stylizer(settings, [load_rgb(style)])
stylizer.stylize(torch.rand(1, 3, 48, 64), Plan(iterations=1))
height = side * 3 // 4
content = torch.rand(1, 3, height, side, generator=torch.Generator().manual_seed(0))
terms = stylizer.loss_terms(content)
before = peak_rss_bytes()
image = content.clone().requires_grad_(True)
stylizer._evaluate(image, terms, stylizer.memory_plan(height, side))
growth = peak_rss_bytes() - before
print(json.dumps({"precision": precision, "side": side, "bytes_per_pixel": growth / (height *
side)}))
"""


def calibrate(sizes: tuple[int, ...] = (512, 1024)) -> str:
    lines = [
        "Peak RSS growth of one whole-image evaluation (forward and backward), per input pixel:",
        "",
        "| precision | size | bytes per pixel |",
        "|---|---|---|",
    ]
    for precision in ("fp32", "bf16"):
        for side in sizes:
            out = child(CALIBRATE, precision, side, STYLE)
            lines.append(f"| {precision} | {side}x{side * 3 // 4} | {out['bytes_per_pixel']:.0f} |")
    return "\n".join(lines)


def camera_photo(folder: Path, width: int) -> Path:
    """golden_gate.jpg upscaled to a phone's 4:3 frame (4032x3024 by default)."""
    rgb = cv2.imread(str(PHOTO))
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


def child(code: str, *args: str) -> dict:
    """Run `code` in a fresh process (its stderr shows progress); its last stdout line is JSON."""
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    if run.returncode != 0:
        raise SystemExit(f"child failed ({run.returncode})")
    out = json.loads(run.stdout.strip().splitlines()[-1])
    out["wall"] = time.monotonic() - started
    return out


def crop_pair(full: Path, small: Path, width: int) -> str:
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


def report(
    args: argparse.Namespace,
    photo: Path,
    full: dict,
    small: dict,
    judged: dict,
    crop: str,
    outputs: dict,
) -> str:
    lines = [
        f"## Print size — `make bench-print`, {date.today()}",
        "",
        f"Machine: {cpu_description()}. Photo: {photo.name}; style starry_night.jpg; --max-memory "
        f"{args.max_memory}.",
        "",
        "| scale | size | iterations / budget | evaluations | tiles | wall | peak RSS at its end |",
        "|---|---|---|---|---|---|---|",
    ]
    for index, scale in sorted(full["scales"].items(), key=lambda item: int(item[0])):
        h, w = scale["size"]
        lines.append(
            f"| {index} | {w}x{h} | {scale['iterations']} / {scale['budget']} | "
            f"{scale['evaluations']} | "
            f"{scale['tiles'] or 'whole'} | {(scale['end'] - scale['start']) / 60:.1f} min | "
            f"{scale['peak_mib']:.0f} MiB |"
        )
    lines += [
        "",
        f"Full size: {full['wall'] / 60:.1f} min in all, peak RSS {full['peak_mib']:.0f} MiB. "
        f"512 px: {small['wall'] / 60:.1f} min, peak RSS {small['peak_mib']:.0f} MiB.",
        "",
        "Judged at full size (weighted losses against the full-size content; lower is better):",
        "",
        "| result | content | style | total |",
        "|---|---|---|---|",
    ]
    for label, key in (("full size", outputs["full"]), ("512 px scaled up", outputs["small"])):
        losses = judged[key]
        lines.append(
            f"| {label} | {losses['content']:.4g} | {losses['style']:.4g} | {losses['total']:.4g} |"
        )
    lines += ["", f"![crop]({crop})  (left: full size; right: 512 px scaled up)"]
    return "\n".join(lines)


def budget_table(
    photo: Path,
    device: str,
    max_memory: str,
    iterations: int = 300,
    cold: bool = False,
    top: tuple[int, ...] = (0, 2, 5, 10, 20, 40),
    below: tuple[int, ...] = (0, 5, 10, 19, 40, 80),
) -> str:
    """How few evaluations the two largest scales need: each budget run from the same start (the
    default ladder's result one scale down, scaled up) and judged at full size. The rest of the
    ladder keeps its default budgets; "below" varies the second-largest scale, the largest at its
    default."""
    import torch
    from pipeline.engine import Plan, Stylizer, rung_budget, resize_image
    from pipeline.image_io import load_rgb
    from pipeline.settings import StyleSettings, parse_bytes

    settings = StyleSettings(
        size=None, max_memory=parse_bytes(max_memory), device=device, iterations=iterations
    )
    stylizer = Stylizer(settings, [load_rgb(STYLE)])
    content = load_rgb(photo)
    ladder = stylizer.ladder(content)
    default = [rung_budget(size, settings.iterations, settings, ladder)[1] for size in ladder]

    def timed(image: torch.Tensor, start=None, evaluations: int | None = None, carry: bool = True):
        """From `start` (a Result one scale down: its image scaled up, its curvature carried as
        the ladder does, or not)."""
        if start is None:
            return stylizer.stylize(image)
        size = tuple(image.shape[-2:])
        plan = Plan(
            init=resize_image(start.image, size),
            iterations=evaluations,
            evaluations=evaluations,
            curvature=start.curvature if carry else None,
        )
        return stylizer.stylize(image, plan)

    def judged(result) -> str:
        losses = stylizer.evaluate(result.image, content)
        per = result.seconds / max(1, result.evaluations)
        figures = " | ".join(f"{losses[part]:.4g}" for part in ("content", "style", "total"))
        return f"{result.evaluations} | {result.seconds:.1f} s ({per:.2f} s each) | {figures} |"

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    lines: list[str] = []
    for line in [
        f"Scale budgets, {device} "
        f"({torch.cuda.get_device_name(0) if device == 'cuda' else cpu_description()}), "
        f"{settings.precision} precision; ladder {[max(size) for size in ladder]}, default "
        f"evaluations {default}",
        "",
        "| varied scale | its evaluations (asked) | used | wall | content | style | total |",
        "|---|---|---|---|---|---|---|",
    ]:
        emit(line)
    start_top = timed(resize_image(content, ladder[-2]))
    for budget in top:
        emit(
            f"| {max(ladder[-1])} px, curvature carried | {budget} | "
            + judged(timed(content, start_top, budget))
        )
        if cold and budget:
            emit(
                f"| {max(ladder[-1])} px, cold start | {budget} | "
                + judged(timed(content, start_top, budget, carry=False))
            )
    start_below = timed(resize_image(content, ladder[-3])) if below else None
    for budget in below:
        middle = timed(resize_image(content, ladder[-2]), start_below, budget)
        emit(
            f"| {max(ladder[-2])} px (then {default[-1]} at {max(ladder[-1])}) | {budget} | "
            + judged(timed(content, middle, default[-1]))
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4032)
    parser.add_argument("--max-memory", default="4G")
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="where inputs and outputs go (default: a temporary folder)",
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
    parser.add_argument("--device", default="auto", help="with --budgets: cpu, cuda or auto")
    parser.add_argument(
        "--iterations", type=int, default=300, help="with --budgets: the settings' --iterations"
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="with --budgets: also each top budget from a cold L-BFGS start",
    )
    parser.add_argument(
        "--top",
        default="0,2,5,10,20,40",
        help="with --budgets: evaluations tried at the largest scale",
    )
    parser.add_argument(
        "--below",
        default="0,5,10,19,40,80",
        help="with --budgets: at the second largest (empty: none)",
    )
    args = parser.parse_args()
    if args.budgets:
        work = args.work or Path(tempfile.mkdtemp(prefix="bench-print-"))
        work.mkdir(parents=True, exist_ok=True)
        budget_table(
            camera_photo(work, args.width),
            args.device,
            args.max_memory,
            args.iterations,
            args.cold,
            tuple(int(n) for n in args.top.split(",") if n),
            tuple(int(n) for n in args.below.split(",") if n),
        )
        return
    if args.calibrate:
        print(calibrate())
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-print-"))
    work.mkdir(parents=True, exist_ok=True)
    photo = camera_photo(work, args.width)
    outputs = {"full": str(work / "full.png"), "small": str(work / "small-512.png")}
    full = child(CHILD, photo, STYLE, outputs["full"], "full", args.max_memory)
    small = child(CHILD, photo, STYLE, outputs["small"], "512", args.max_memory)
    judged = child(JUDGE, photo, STYLE, args.max_memory, outputs["full"], outputs["small"])
    print(
        report(
            args,
            photo,
            full,
            small,
            judged,
            crop_pair(Path(outputs["full"]), Path(outputs["small"]), args.width),
            outputs,
        )
    )


if __name__ == "__main__":
    main()
