"""A shot's first frame: candidate budgets against the default (300 iterations at one size, early
stop), on the first frames of car-detection and bottle-detection. Each candidate stylizes frame 0
cold and then frames 1-5 warm as `stylize video` does; columns: seconds of frame 0 and that time
in later frames, and the style and content losses of frame 0 and of frame 5 as ratios to the
default's.

Run: make bench-first-frame [ARGS="--size 256 --later 5"]. Prints markdown.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.harness import (
    CLIPS,
    STYLE,
    Stamps,
    argument_parser,
    decode,
    heading,
    require,
    row,
    table,
)
from pipeline.engine import Plan, Stylizer
from pipeline.frames import FrameStylizer, stylize_frames
from pipeline.image_io import load_rgb, to_tensor
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.temporal import to_float
from pipeline.work_folder import frame_path, read_frame

HALF = {"coarse_to_fine": True, "coarse_threshold": "half", "coarse_min_size": "half"}
# label: (the first frame's plan, settings changed)
CANDIDATES = {
    "300 iterations, one size (the default)": (Plan(), {}),
    "150 iterations": (Plan(iterations=150), {}),
    "100 iterations": (Plan(iterations=100), {}),
    "60 iterations": (Plan(iterations=60), {}),
    "early stop 1 % over 10 iterations": (Plan(patience=10, tolerance=1e-2), {}),
    "early stop 0.5 % over 10 iterations": (Plan(patience=10, tolerance=5e-3), {}),
    "early stop 0.3 % over 10 iterations": (Plan(patience=10, tolerance=3e-3), {}),
    "two sizes, 100 iterations each": (Plan(scales=2, iterations=100), {}),
    "two sizes, 60 iterations each": (Plan(scales=2, iterations=60), {}),
    # a large photo's schedule: the half size's full budget, a quarter of its evaluations at the
    # full size, L-BFGS's curvature carried across
    "two sizes, 150 iterations then 38 evaluations carried": (Plan(iterations=150), HALF),
    "two sizes, 100 iterations then 25 evaluations carried": (Plan(iterations=100), HALF),
    "two sizes, 200 iterations then 50 evaluations carried": (Plan(iterations=200), HALF),
}


def run(frames: list, size: int, plan: Plan, changes: dict) -> dict:
    changes = {key: size // 2 if value == "half" else value for key, value in changes.items()}
    settings = replace(StyleSettings(size=size), **changes)
    stylizer, video = Stylizer(settings, [load_rgb(STYLE)]), VideoSettings()
    frame_stylizer = FrameStylizer(stylizer, video)
    frame_stylizer.cold_plan = plan
    stamps = Stamps(start=True)
    with tempfile.TemporaryDirectory() as work:
        stylize_frames(frames, frame_stylizer, Path(work), video, len(frames), stamps)
        outputs = [read_frame(frame_path(Path(work), i)) for i in (0, len(frames) - 1)]
    judge = Stylizer(StyleSettings(size=size), [load_rgb(STYLE)])
    losses = [
        judge.evaluate(to_tensor(to_float(out)), to_tensor(to_float(frames[i])))
        for out, i in zip(outputs, (0, len(frames) - 1))
    ]
    gaps = stamps.gaps()
    return {"first": gaps[0], "later": float(np.mean(gaps[1:])), "losses": losses}


def clip_rows(name: str, frames: list, size: int, only: list[str]) -> None:
    default = None
    for label, (plan, changes) in CANDIDATES.items():
        if default and not any(word in label for word in only):
            continue
        found = run(frames, size, plan, changes)
        default = default or found
        ratios = [
            f"{found['losses'][k][part] / default['losses'][k][part]:.3f}"
            for k in (0, 1)
            for part in ("style", "content")
        ]
        first = found["first"]
        cells = [f"{first:.1f}", f"{first / default['later']:.0f}", *ratios]
        print(row([name, label, *cells]), flush=True)


def main() -> None:
    args = argument_parser(__doc__)
    args.add_argument("--size", type=int, default=256)
    args.add_argument("--later", type=int, default=5)
    args.add_argument("--clips", default="car,bottle")
    args.add_argument("--only", default="", help="candidates whose label has one of these words")
    options = args.parse_args()
    names = options.clips.split(",")
    require(STYLE, *(CLIPS[name] for name in names))
    print(heading("A shot's first frame — `make bench-first-frame`", f"{options.size} px"))
    print()
    columns = ["clip", "first frame", "s", "in later frames"]
    columns += ["frame 0 style", "frame 0 content", f"frame {options.later} style"]
    print(table([*columns, f"frame {options.later} content"]))
    for name in names:
        frames = decode(CLIPS[name], options.later + 1, options.size)
        clip_rows(name, frames, options.size, options.only.split(","))


if __name__ == "__main__":
    main()
