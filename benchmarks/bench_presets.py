"""What each --preset costs and gives: the first FRAMES frames of car-detection.mp4, each preset at
its own size (or all at --size), stylized with the preset's settings in this process. Columns: wall
seconds of the shot's first frame and of each later frame (flow, optimization and any later passes
included), and the last frame's style and content losses as ratios to a cold stylization of that
frame (300 iterations, the standard budget, at the same size), all judged with the same weights.

Run: make bench-presets [ARGS="--frames 6 [--size 256]"]. Prints markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import fields, replace
from datetime import date
from pathlib import Path

import numpy as np

from pipeline.device import cpu_description
from pipeline.engine import Stylizer
from pipeline.frames import FrameStylizer, stylize_frames
from pipeline.image_io import load_rgb, to_tensor
from pipeline.passes import pass_folder, refine_pass
from pipeline.settings import PRESETS, StyleSettings, VideoSettings
from pipeline.temporal import to_float
from pipeline.video_io import Reader, even_size, probe
from pipeline.weights import load_weights
from pipeline.work_folder import frame_path, read_frame

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CLIP = DATA / "videos" / "car-detection.mp4"
STYLE = DATA / "styles" / "starry_night.jpg"


def preset_settings(name: str, size: int) -> tuple[StyleSettings, VideoSettings]:
    """The preset's StyleSettings and VideoSettings, at `size` instead of its own."""
    values = {**PRESETS[name], "size": size}
    style_fields = {f.name for f in fields(StyleSettings)}
    return (
        replace(StyleSettings(), **{k: v for k, v in values.items() if k in style_fields}),
        replace(VideoSettings(), **{k: v for k, v in values.items() if k not in style_fields}),
    )


def decode(count: int, size: int) -> list[np.ndarray]:
    info = probe(CLIP)
    with Reader(info, even_size(info.width, info.height, size)) as reader:
        return list(reader.frames(count))


def run_preset(
    name: str, frames: list[np.ndarray], size: int, network, reference: Stylizer
) -> dict:
    style, video = preset_settings(name, size)
    stylizer = Stylizer(style, [load_rgb(STYLE)], network)
    stamps = [time.perf_counter()]
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        frame_stylizer = FrameStylizer(stylizer, video, folder)
        done = stylize_frames(
            frames,
            frame_stylizer,
            folder,
            video,
            len(frames),
            lambda report: stamps.append(time.perf_counter()),
        )
        passes_start = time.perf_counter()
        # as video_job.run_passes, from the frames in memory
        for number in range(2, video.passes + 1):
            order = list(enumerate(frames))
            refine_pass(
                order[::-1] if number % 2 == 0 else order, frame_stylizer, folder, number, done.cuts
            )
        passes = time.perf_counter() - passes_start
        last = read_frame(frame_path(pass_folder(folder, video.passes), len(frames) - 1))
    later = [b - a for a, b in zip(stamps[1:-1], stamps[2:])]
    losses = reference.evaluate(to_tensor(to_float(last)), to_tensor(to_float(frames[-1])))
    return {
        "first": stamps[1] - stamps[0],
        "later": (sum(later) + passes) / len(later),
        "losses": losses,
        "iterations": style.iterations,
        "later_budget": f"{video.iterations_next} / {video.evaluations_next}",
        "passes": video.passes,
    }


def cold_reference(frame: np.ndarray, size: int, network) -> tuple[Stylizer, dict, float]:
    """The judge at `size` and the losses of a cold stylization of `frame` (the standard budget)."""
    reference = Stylizer(StyleSettings(size=size), [load_rgb(STYLE)], network)
    start = time.perf_counter()
    content = to_tensor(to_float(frame))
    cold = reference.evaluate(reference.stylize(content).image, content)
    return reference, cold, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument(
        "--size", type=int, default=None, help="one size for every preset (default: each its own)"
    )
    args = parser.parse_args()
    network = load_weights(None)
    sizes = {
        name: args.size or int(PRESETS[name].get("size", StyleSettings().size)) for name in PRESETS
    }
    print(f"## Presets — `make bench-presets`, {date.today()}, {cpu_description()}\n")
    rows, colds = [], {}
    for name, size in sizes.items():
        frames = decode(args.frames, size)
        if size not in colds:
            colds[size] = cold_reference(frames[-1], size, network)
        reference, cold, _ = colds[size]
        row = run_preset(name, frames, size, network, reference)
        rows.append(
            f"| {name} | {size} | {row['iterations']} | {row['later_budget']} | {row['passes']} | "
            f"{row['first']:.0f} "
            f"| {row['later']:.2f} | {row['losses']['style'] / cold['style']:.2f} "
            f"| {row['losses']['content'] / cold['content']:.2f} |"
        )
    cold_times = ", ".join(f"{size} px {seconds:.0f} s" for size, (_, _, seconds) in colds.items())
    print(
        f"car-detection.mp4, frames 0-{args.frames - 1}; the cold reference of frame "
        f"{args.frames - 1} "
        f"(300 iterations) took {cold_times}.\n"
    )
    print(
        "| preset | size | first-frame iterations | later frame iterations / evaluations | passes "
        "| s first frame "
        "| s per later frame | style / cold | content / cold |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
