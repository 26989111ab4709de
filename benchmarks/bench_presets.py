"""What each --preset costs and gives: the first FRAMES frames of car-detection.mp4, each preset at
its own size (or all at --size), stylized with the preset's settings in this process. Columns: wall
seconds of the shot's first frame and of each later frame (flow, optimization and any later passes
included), and the last frame's style and content losses as ratios to a cold stylization of that
frame (300 iterations, the standard budget, at the same size), all judged with the same weights.

Run: make bench-presets [ARGS="--frames 6 [--size 256]"]. Prints markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from benchmarks.harness import (
    CLIPS,
    STYLE,
    Stamps,
    argument_parser,
    decode,
    heading,
    stylize_in_memory,
    table,
    timed,
)
from pipeline.engine import Stylizer
from pipeline.frames import FrameStylizer
from pipeline.image_io import load_rgb, to_tensor
from pipeline.settings import PRESETS, StyleSettings, VideoSettings
from pipeline.temporal import to_float
from pipeline.weights import load_weights
from pipeline.work_folder import frame_path, read_frame

CLIP = CLIPS["car"]


def preset_settings(name: str, size: int) -> tuple[StyleSettings, VideoSettings]:
    """The preset's StyleSettings and VideoSettings, at `size` instead of its own."""
    values = {**PRESETS[name], "size": size}
    style_fields = {f.name for f in fields(StyleSettings)}
    return (
        replace(StyleSettings(), **{k: v for k, v in values.items() if k in style_fields}),
        replace(VideoSettings(), **{k: v for k, v in values.items() if k not in style_fields}),
    )


def run_preset(
    name: str, frames: list[np.ndarray], size: int, network, reference: Stylizer
) -> dict:
    """Seconds of the first frame and per later frame (later passes included), and the last
    frame's losses judged by `reference`."""
    style, video = preset_settings(name, size)
    stylizer = Stylizer(style, [load_rgb(STYLE)], network)
    stamps = Stamps(start=True)
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        frame_stylizer = FrameStylizer(stylizer, video, folder)
        final = stylize_in_memory(frames, frame_stylizer, folder, video, stamps)
        end = time.perf_counter()
        last = read_frame(frame_path(final, len(frames) - 1))
    first, later = stamps.gaps()[0], (end - stamps.times[1]) / (len(stamps.times) - 2)
    losses = reference.evaluate(to_tensor(to_float(last)), to_tensor(to_float(frames[-1])))
    return {
        "first": first,
        "later": later,
        "losses": losses,
        "iterations": style.iterations,
        "later_budget": f"{video.iterations_next} / {video.evaluations_next}",
        "passes": video.passes,
    }


def cold_reference(frame: np.ndarray, size: int, network) -> tuple[Stylizer, dict, float]:
    """The judge at `size` and the losses of a cold stylization of `frame` (the standard budget)."""
    reference = Stylizer(StyleSettings(size=size), [load_rgb(STYLE)], network)
    content = to_tensor(to_float(frame))
    cold, seconds = timed(lambda: reference.evaluate(reference.stylize(content).image, content))
    return reference, cold, seconds


def preset_rows(frame_count: int, size: int | None) -> tuple[list[list], dict]:
    """A row per preset, and per size the cold reference (its judge, losses and seconds)."""
    network = load_weights(None)
    rows, colds = [], {}
    for name, preset in PRESETS.items():
        side = size or int(preset.get("size", StyleSettings().size))
        frames = decode(CLIP, frame_count, side)
        if side not in colds:
            colds[side] = cold_reference(frames[-1], side, network)
        reference, cold, _ = colds[side]
        r = run_preset(name, frames, side, network, reference)
        ratios = [f"{r['losses'][part] / cold[part]:.2f}" for part in ("style", "content")]
        cells = [name, side, r["iterations"], r["later_budget"], r["passes"], f"{r['first']:.0f}"]
        rows.append([*cells, f"{r['later']:.2f}", *ratios])
    return rows, colds


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument(
        "--size", type=int, default=None, help="one size for every preset (default: each its own)"
    )
    args = parser.parse_args()
    print(heading("Presets — `make bench-presets`"), flush=True)
    rows, colds = preset_rows(args.frames, args.size)
    cold_times = ", ".join(f"{size} px {seconds:.0f} s" for size, (_, _, seconds) in colds.items())
    print(
        f"car-detection.mp4, frames 0-{args.frames - 1}; the cold reference of frame "
        f"{args.frames - 1} (300 iterations) took {cold_times}.\n"
    )
    columns = ("preset", "size", "first-frame iterations", "later frame iterations / evaluations")
    columns += ("passes", "s first frame", "s per later frame", "style / cold", "content / cold")
    print(table(columns, rows))


if __name__ == "__main__":
    main()
