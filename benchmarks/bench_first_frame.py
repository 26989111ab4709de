"""A shot's first frame: candidate starts and budgets against 300 iterations from the photo at one
size (early stop as the settings say), on the first frames of car-detection and bottle-detection.
Each candidate stylizes frame 0 cold and then frames 1-5 warm as `stylize video` does; columns:
seconds of frame 0 and that time in the baseline's later frames, and the style and content losses
of frame 0 and of frame 5 as ratios to the baseline's.

Run: make bench-first-frame [ARGS="--size 256 --later 5 --styles starry_night,the_scream"].
Prints markdown.
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
from pipeline.ladder import resize_image
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.temporal import to_float
from pipeline.work_folder import frame_path, read_frame

PHOTO, PALETTE = {"init": "content"}, {"init": "palette"}
HALF = {**PHOTO, "coarse_to_fine": True, "coarse_threshold": "half", "coarse_min_size": "half"}
DETAIL = {**PHOTO, "detail": True}  # DetailStylizer: the photo's lost detail added between sizes
# (iterations at each of two sizes, the first frame's content weight over the settings'): two sizes
# trade content for style, and the weight trades it back
CONTENT_WEIGHED = [(100, 1.25), (90, 1.25), (90, 1.3), (80, 1.3), (90, 1.4), (80, 1.4)]
CONTENT_WEIGHED += [(100, 1.5), (80, 1.5), (80, 2)]


def two_sizes(iterations: int, changes: dict = PHOTO) -> tuple[Plan, dict]:
    """The first frame at half size, then at full size, `iterations` at each."""
    return Plan(scales=2, iterations=iterations), changes


# label: (the first frame's plan, settings changed); the first is the baseline of the ratios
CANDIDATES = {
    "photo start 300 iterations one size": (Plan(), PHOTO),
    "photo start 150 iterations": (Plan(iterations=150), PHOTO),
    "photo start 100 iterations": (Plan(iterations=100), PHOTO),
    "photo start 60 iterations": (Plan(iterations=60), PHOTO),
    "photo start early stop 1 % over 10 iterations": (Plan(patience=10, tolerance=1e-2), PHOTO),
    "photo start early stop 0.5 % over 10 iterations": (Plan(patience=10, tolerance=5e-3), PHOTO),
    "photo start two sizes 100 iterations each": two_sizes(100),
    "photo start two sizes 100 iterations each, the photo's detail added": two_sizes(100, DETAIL),
    **{
        f"photo start two sizes {iterations} iterations each, content x{factor}": two_sizes(
            iterations, {**PHOTO, "first_content": factor}
        )
        for iterations, factor in CONTENT_WEIGHED
    },
    "photo start two sizes 60 iterations each": two_sizes(60),
    "photo start two sizes 60 iterations each, the photo's detail added": two_sizes(60, DETAIL),
    # a large photo's schedule: the half size's full budget, a quarter of its evaluations at the
    # full size, L-BFGS's curvature carried across
    "photo start two sizes 150 iterations then 38 evaluations carried": (
        Plan(iterations=150),
        HALF,
    ),
    # the photo in the painting's colours (`--init palette`)
    "palette start 300 iterations": (Plan(), PALETTE),
    "palette start 150 iterations": (Plan(iterations=150), PALETTE),
    "palette start 120 iterations": (Plan(iterations=120), PALETTE),
    "palette start 100 iterations": (Plan(iterations=100), PALETTE),
    "palette start 80 iterations": (Plan(iterations=80), PALETTE),
}


class DetailStylizer(Stylizer):
    """Between two sizes of the ladder, the upsampled result gets back the photo's detail that the
    smaller size could not hold: the photo minus the photo taken down to that size and back."""

    def _optimize_scale(self, image, content, size, *args):
        if image.shape[-1] < size[1]:  # up from the smaller size
            lost = resize_image(content, size) - resize_image(
                resize_image(content, tuple(image.shape[-2:])), size
            )
            image = (resize_image(image, size) + lost).clamp(0, 1)
        return super()._optimize_scale(image, content, size, *args)


class FirstFrameStylizer(FrameStylizer):
    """A shot's first frame with a stylizer of its own (other weights); later frames as they are."""

    def __init__(self, stylizer: Stylizer, video: VideoSettings, first: Stylizer):
        super().__init__(stylizer, video)
        self.first = first

    def __call__(self, frame, previous, index=0):
        if previous is not None:
            return super().__call__(frame, previous, index)
        later, self.stylizer = self.stylizer, self.first
        try:
            return super().__call__(frame, previous, index)
        finally:
            self.stylizer = later


def run(frames: list, size: int, plan: Plan, changes: dict, style: Path) -> dict:
    changes = {key: size // 2 if value == "half" else value for key, value in changes.items()}
    kind = DetailStylizer if changes.pop("detail", False) else Stylizer
    first_content = changes.pop("first_content", 1.0)
    settings = replace(StyleSettings(size=size), **changes)
    stylizer, video = kind(settings, [load_rgb(style)]), VideoSettings()
    if first_content == 1.0:
        frame_stylizer = FrameStylizer(stylizer, video)
    else:
        first = replace(settings, content_weight=settings.content_weight * first_content)
        frame_stylizer = FirstFrameStylizer(stylizer, video, kind(first, [load_rgb(style)]))
    frame_stylizer.cold_plan = plan
    stamps = Stamps(start=True)
    with tempfile.TemporaryDirectory() as work:
        stylize_frames(frames, frame_stylizer, Path(work), video, len(frames), stamps)
        outputs = [read_frame(frame_path(Path(work), i)) for i in (0, len(frames) - 1)]
    judge = Stylizer(StyleSettings(size=size), [load_rgb(style)])
    losses = [
        judge.evaluate(to_tensor(to_float(out)), to_tensor(to_float(frames[i])))
        for out, i in zip(outputs, (0, len(frames) - 1))
    ]
    gaps = stamps.gaps()
    return {"first": gaps[0], "later": float(np.mean(gaps[1:])), "losses": losses}


def clip_rows(name: str, frames: list, size: int, only: list[str], style: Path) -> None:
    baseline = None
    for label, (plan, changes) in CANDIDATES.items():
        if baseline and not any(word in label for word in only):
            continue
        found = run(frames, size, plan, changes, style)
        baseline = baseline or found
        ratios = [
            f"{found['losses'][k][part] / baseline['losses'][k][part]:.3f}"
            for k in (0, 1)
            for part in ("style", "content")
        ]
        first = found["first"]
        cells = [f"{first:.1f}", f"{first / baseline['later']:.0f}", *ratios]
        print(row([name, style.stem, label, *cells]), flush=True)


def main() -> None:
    args = argument_parser(__doc__)
    args.add_argument("--size", type=int, default=256)
    args.add_argument("--later", type=int, default=5)
    args.add_argument("--clips", default="car,bottle")
    args.add_argument("--styles", default=STYLE.stem, help="paintings in ../shared/data/styles")
    args.add_argument("--only", default="", help="candidates whose label has one of these words")
    options = args.parse_args()
    names = options.clips.split(",")
    styles = [STYLE.with_stem(stem) for stem in options.styles.split(",")]
    require(*styles, *(CLIPS[name] for name in names))
    print(heading("A shot's first frame — `make bench-first-frame`", f"{options.size} px"))
    print()
    columns = ["clip", "style", "first frame", "s", "in later frames"]
    columns += ["frame 0 style", "frame 0 content", f"frame {options.later} style"]
    print(table([*columns, f"frame {options.later} content"]))
    for name in names:
        frames = decode(CLIPS[name], options.later + 1, options.size)
        for style in styles:
            clip_rows(name, frames, options.size, options.only.split(","), style)


if __name__ == "__main__":
    main()
