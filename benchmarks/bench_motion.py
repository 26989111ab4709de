"""Fast motion, on clips whose true motion is known (benchmarks/motion_clips.py), at 256x144.

Flows: each candidate's end-point error on the pixels whose true flow is defined (px), the share
of the undefined ones (occluded, out of view) that the forward-backward check leaves unvouched
(recall), and milliseconds per flow pair (both directions). RAFT-small's row needs torchvision's
weights (downloaded once); without a network it says so.

Stylized: each video setting's (the default, --catch-up, --passes, --fill content, --paint-holes
0) output warping error as a ratio to the input's own, judged with the true flow (where it is
defined) and with Farneback's (an estimator independent of DIS); seconds and evaluations per later
frame (all passes; a painted hole's evaluations are not counted, its seconds are); the last
frame's style and content losses as ratios to a cold stylization of it (300 iterations).

Crops: why a moving camera's frames cannot keep a cold frame's style loss. A wider view of
tubingen.jpg stylized cold, then 256x144 crops of it (what a pan keeps of the frame before, held
in place) against a cold stylization of each crop itself. The Gram matrices are the whole
image's: its parts match the painting together, not one by one.

DIS: the default estimator (camera-aware, from the camera's shift; DIS's medium preset) with one
of DIS's parameters changed (patch size and stride, finest level, gradient-descent
and variational-refinement iterations): the flows' columns; the crossing square stylized with
the most promising, and three more clips with an object moving on its own with the default and
5 and 6 px patches, as in the stylized table.

Panorama: a pan's frames against one cold stylization of the whole strip the camera sweeps, of
which a consistent video would show a crop in each frame.

Run: make bench-motion [ARGS="--frames 10 --part flows|stylized|crops|panorama|dis
--settings=default,--passes 3"]. Prints markdown.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from benchmarks.harness import (
    CLIPS,
    GOLDEN_GATE,
    STYLE,
    TUBINGEN,
    Stamps,
    argument_parser,
    decode,
    heading,
    require,
    row,
    table,
)
from benchmarks.motion_clips import SIZE, Camera, MotionClip, synthetic_clip, view, window_clip
from pipeline.engine import Stylizer
from pipeline.errors import WeightsError
from pipeline.frames import FrameReport, FrameStylizer, stylize_frames
from pipeline.image_io import load_rgb, to_tensor
from pipeline.passes import pass_folder, refine_pass
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.temporal import (
    FarnebackFlow,
    FlowEstimator,
    Frame,
    RaftFlow,
    WarpingError,
    consistency_mask,
    to_float,
    warp,
)
from pipeline.work_folder import frame_path, read_frame

CAMERAS = {
    "pan 12 px": Camera(pan=(12.0, 0.0)),
    "pan 24 px, object -12 px": Camera(pan=(24.0, 4.0), crossing=12.0),
    "pan 36 px": Camera(pan=(36.0, 0.0)),
    "zoom 4 %, turn 2°": Camera(pan=(8.0, 0.0), zoom=1.04, turn=2.0),
}
WINDOWS = {
    "car-detection, window 20 px": ("car", (20, 0)),
    "bottle, window 30 px": ("bottle", (30, 6)),
}


class ScaledFlow:
    """DIS with `finest` as its finest pyramid level, on frames scaled by `scale` first."""

    def __init__(
        self,
        preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        finest: int | None = None,
        scale: float = 1.0,
    ):
        self.dis, self.scale = cv2.DISOpticalFlow_create(preset), scale
        if finest is not None:
            self.dis.setFinestScale(finest)

    def pair(self, frame: Frame, earlier: Frame, neighbours: bool = False):
        return self.flow(frame.grey, earlier.grey), self.flow(earlier.grey, frame.grey)

    def flow(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return self.dis.calc(source, target, None)
        size = (round(source.shape[1] * self.scale), round(source.shape[0] * self.scale))
        big = [
            cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) for image in (source, target)
        ]
        flow = self.dis.calc(big[0], big[1], None) / self.scale
        return cv2.resize(flow, (source.shape[1], source.shape[0]), interpolation=cv2.INTER_AREA)


CANDIDATES = {
    "DIS medium, camera-aware, from the camera's shift (the default)": lambda: FlowEstimator(),
    "DIS medium, raw": lambda: ScaledFlow(),
    "DIS medium, finest level 0": lambda: ScaledFlow(finest=0),
    "DIS medium on frames scaled 2x": lambda: ScaledFlow(scale=2.0),
    "DIS fast, finest level 0": lambda: ScaledFlow(cv2.DISOPTICAL_FLOW_PRESET_FAST, finest=0),
    "Farneback": lambda: FarnebackFlow(),
    "RAFT-small (torchvision's weights)": lambda: RaftFlow(),
}


class TunedFlow(FlowEstimator):
    """The default estimator with DIS's parameters changed (`params`: OpenCV's setter names without
    "set", such as PatchSize), in both of its DIS instances."""

    def __init__(self, **params: int):
        super().__init__()
        self.params = params
        for dis in (self.dis, self.guided):
            for name, value in params.items():
                getattr(dis, f"set{name}")(value)

    def twin(self) -> TunedFlow:
        return TunedFlow(**self.params)


# the default: DIS's medium preset (patch 8, stride 3, finest level 1, 25 gradient-descent and 5
# variational-refinement iterations)
DIS_VARIANTS = {
    "medium preset (the default)": {},
    "patch 4": {"PatchSize": 4},
    "patch 5": {"PatchSize": 5},
    "patch 6": {"PatchSize": 6},
    "patch 12": {"PatchSize": 12},
    "stride 2": {"PatchStride": 2},
    "stride 4": {"PatchStride": 4},
    "finest level 0": {"FinestScale": 0},
    "finest level 2": {"FinestScale": 2},
    "gradient descent 50": {"GradientDescentIterations": 50},
    "variational refinement 0": {"VariationalRefinementIterations": 0},
    "variational refinement 10": {"VariationalRefinementIterations": 10},
    "variational refinement 20": {"VariationalRefinementIterations": 20},
}
DIS_STYLIZED = ("medium preset (the default)", "patch 4", "patch 5", "patch 6", "finest level 0")
DIS_COMPARED = ("medium preset (the default)", "patch 5", "patch 6")
CROSSING = "pan 24 px, object -12 px"
# more objects moving on their own: a still camera, a faster object, a slower one
OBJECT_CAMERAS = {
    "still, object 12 px": Camera(pan=(0.0, 0.0), crossing=12.0),
    "pan 12 px, object -20 px": Camera(pan=(12.0, 2.0), crossing=20.0),
    "pan 24 px, object -6 px": Camera(pan=(24.0, 4.0), crossing=6.0),
}


def flows_of(estimator, frame: Frame, earlier: Frame) -> tuple[np.ndarray, np.ndarray]:
    pair = estimator.pair(frame, earlier, True)
    return (pair.backward, pair.forward) if hasattr(pair, "backward") else pair


def measure(clip: MotionClip, estimator) -> tuple[float, float, float]:
    """Mean end-point error, occlusion recall and ms per pair over the clip's pairs."""
    errors, recalls, seconds = [], [], []
    for t in range(1, len(clip.frames)):
        frame, earlier = Frame(clip.frames[t]), Frame(clip.frames[t - 1])
        start = time.perf_counter()
        backward, forward = flows_of(estimator, frame, earlier)
        seconds.append(time.perf_counter() - start)
        valid = clip.valid[t]
        errors.append(float(np.hypot(*(backward - clip.flows[t])[valid].T).mean()))
        if (~valid).any():
            recalls.append(float((consistency_mask(backward, forward)[~valid] < 0.5).mean()))
    recall = float(np.mean(recalls)) if recalls else float("nan")
    return float(np.mean(errors)), recall, 1000 * float(np.median(seconds))


def scene() -> tuple[np.ndarray, np.ndarray]:
    """The synthetic clips' photo (tubingen.jpg) and the object crossing it (from golden_gate)."""
    photo = cv2.cvtColor(cv2.imread(str(TUBINGEN)), cv2.COLOR_BGR2RGB)
    thing = cv2.cvtColor(cv2.imread(str(GOLDEN_GATE)), cv2.COLOR_BGR2RGB)[200:500, 300:600]
    return photo, thing


def clips(frames: int) -> list[MotionClip]:
    require(TUBINGEN, GOLDEN_GATE, *CLIPS.values())
    photo, thing = scene()
    made = [synthetic_clip(name, camera, photo, thing, frames) for name, camera in CAMERAS.items()]
    for name, (clip, step) in WINDOWS.items():
        video = decode(CLIPS[clip], frames, 256 + step[0] * frames + 16)
        made.append(window_clip(name, video, step))
    return made


def flows_table(
    made: list[MotionClip],
    candidates: dict[str, Callable[[], object]] = CANDIDATES,
    digits: int = 2,
    title: str = "Fast motion: flows — `make bench-motion`",
) -> None:
    print(heading(title, "256x144"))
    print()
    names = [clip.name for clip in made]
    print(table(["flow", *(f"{name}: EPE / recall" for name in names), "ms a pair"]))
    for candidate, make in candidates.items():
        try:
            make()
        except WeightsError as missing:  # RAFT's weights need a download
            print(row([candidate, *(["–"] * len(names)), f"not measured: {missing}"]), flush=True)
            continue
        cells, times = [], []
        for clip in made:  # a fresh estimator a clip: the DIS instances keep state
            error, recall, ms = measure(clip, make())
            error_text = f"{error:.{digits}f}"
            cells.append(
                f"{error_text} / {recall:.0%}" if not np.isnan(recall) else f"{error_text} / –"
            )
            times.append(ms)
        print(row([candidate, *cells, f"{np.median(times):.1f}"]), flush=True)


SETTINGS = {
    "default": {},
    "--catch-up 2": {"catch_up": 2.0},
    "--catch-up 4": {"catch_up": 4.0},
    "--passes 2": {"passes": 2},
    "--passes 3": {"passes": 3},
    "--fill content": {"fill": "content"},
    "--paint-holes 0": {"paint_holes": 0},
}


def true_warping_error(frames: list[np.ndarray], clip: MotionClip) -> float:
    """Mean over the pairs of the squared difference between frame t and frame t-1 carried along
    the true flow, where it is defined."""
    errors = []
    for t in range(1, len(frames)):
        carried = warp(to_float(frames[t - 1]), clip.flows[t])
        valid = clip.valid[t]
        errors.append(float(((to_float(frames[t]) - carried) ** 2)[valid].mean()))
    return float(np.mean(errors))


def farneback_warping_error(frames: list[np.ndarray], inputs: list[np.ndarray]) -> float:
    error = WarpingError(flow="farneback")
    for frame_in, frame_out in zip(inputs, frames):
        error.add(frame_in, frame_out)
    return error.value


def stylized_frames(
    clip: MotionClip, stylizer: Stylizer, video: VideoSettings, flows: FlowEstimator | None = None
):
    """The clip stylized as `stylize video` does (with `flows`, where given), its refinement
    passes too: its frames, the evaluations of each later frame (all passes), the stamps."""
    stamps, evaluations = Stamps(start=True), np.zeros(len(clip.frames))
    frame_stylizer = FrameStylizer(stylizer, video)
    if flows is not None:
        frame_stylizer.flows = flows

    def made(report: FrameReport) -> None:
        stamps()
        evaluations[report.index] = report.evaluations

    def refined(position: int, index: int, skipped: bool, stats: dict) -> None:
        stamps()
        evaluations[index] += stats.get("evaluations", 0)

    with tempfile.TemporaryDirectory() as work:
        stylize_frames(clip.frames, frame_stylizer, Path(work), video, len(clip.frames), made)
        for number in range(2, video.passes + 1):
            order = list(enumerate(clip.frames))
            refine_pass(
                order[::-1] if number % 2 == 0 else order,
                frame_stylizer,
                Path(work),
                number,
                [],
                refined,
            )
        final = pass_folder(Path(work), video.passes)
        outputs = [read_frame(frame_path(final, i)) for i in range(len(clip.frames))]
    return outputs, evaluations[1:], stamps


def stylized_row(
    clip: MotionClip,
    label: str,
    video: VideoSettings,
    stylizer: Stylizer,
    cold: dict,
    flows: FlowEstimator | None = None,
) -> list[str]:
    outputs, evaluations, stamps = stylized_frames(clip, stylizer, video, flows)
    true = true_warping_error(outputs, clip) / true_warping_error(clip.frames, clip)
    independent = farneback_warping_error(outputs, clip.frames) / farneback_warping_error(
        clip.frames, clip.frames
    )
    last = to_tensor(to_float(clip.frames[-1]))
    losses = stylizer.evaluate(to_tensor(to_float(outputs[-1])), last)
    seconds = (stamps.times[-1] - stamps.times[1]) / len(evaluations)  # all passes
    return [
        clip.name,
        label,
        f"{true:.2f}",
        f"{independent:.2f}",
        f"{seconds:.2f}",
        f"{evaluations.mean():.1f}",
        f"{losses['style'] / cold['style']:.2f}",
        f"{losses['content'] / cold['content']:.2f}",
    ]


STYLIZED_COLUMNS = [
    "clip",
    "setting",
    "warping / input's (true flow)",
    "warping / input's (Farneback)",
    "s per later frame",
    "evaluations",
    "style / cold",
    "content / cold",
]


def stylized_table(made: list[MotionClip], settings: list[str]) -> None:
    stylizer = Stylizer(StyleSettings(size=256), [load_rgb(STYLE)])
    print(heading("Fast motion: stylized — `make bench-motion`", "256x144, starry_night"))
    print()
    print(table(STYLIZED_COLUMNS))
    for clip in made:
        cold = cold_losses(stylizer, clip)
        for setting in settings:
            video = replace(VideoSettings(), **SETTINGS[setting])
            print(row(stylized_row(clip, setting, video, stylizer, cold)), flush=True)


def cold_losses(stylizer: Stylizer, clip: MotionClip) -> dict:
    """The clip's last frame stylized cold: the yardstick of the style and content columns."""
    last = to_tensor(to_float(clip.frames[-1]))
    return stylizer.evaluate(stylizer.stylize(last).image, last)


def dis_tables(made: list[MotionClip]) -> None:
    """DIS's parameters inside the default estimator: its flows, and the crossing square stylized
    with the most promising ones."""
    variants = {
        name: (lambda params=params: TunedFlow(**params)) for name, params in DIS_VARIANTS.items()
    }
    title = "Fast motion: DIS's parameters — `make bench-motion ARGS=\"--part dis\"`"
    flows_table(made, variants, digits=3, title=title)
    stylizer = Stylizer(StyleSettings(size=256), [load_rgb(STYLE)])
    crossing = next(clip for clip in made if clip.name == CROSSING)
    print()
    print(heading(f"{title}: stylized", "256x144, starry_night"))
    print()
    print(table(STYLIZED_COLUMNS))
    photo, thing = scene()
    frames = len(crossing.frames)
    more = [
        synthetic_clip(name, camera, photo, thing, frames)
        for name, camera in OBJECT_CAMERAS.items()
    ]
    for clip, names in [(crossing, DIS_STYLIZED), *((other, DIS_COMPARED) for other in more)]:
        cold = cold_losses(stylizer, clip)
        for name in names:
            flows = TunedFlow(**DIS_VARIANTS[name])
            print(row(stylized_row(clip, name, VideoSettings(), stylizer, cold, flows)), flush=True)


def crops_table(widths: tuple[int, ...] = (288, 384), offsets: int = 3) -> None:
    """Each wider view's style and content at 256x144 crops, over a cold stylization of the crop."""
    require(TUBINGEN)
    photo = scene()[0]
    print(heading("Fast motion: crops — `make bench-motion ARGS=\"--part crops\"`", "starry_night"))
    print()
    print(table(["view", "crop's columns", "crop's style / crop's own cold", "content / own cold"]))
    for width in widths:
        scaled = cv2.resize(photo, (width, round(width * photo.shape[0] / photo.shape[1])))
        view = to_tensor(to_float(scaled[:144]))
        stylizer = Stylizer(StyleSettings(size=width), [load_rgb(STYLE)])
        whole = stylizer.stylize(view).image
        for left in np.linspace(0, width - 256, offsets).round().astype(int):
            columns = slice(left, left + 256)
            content = view[..., columns].contiguous()
            own = stylizer.evaluate(stylizer.stylize(content).image, content)
            kept = stylizer.evaluate(whole[..., columns].contiguous(), content)
            print(
                row(
                    [
                        f"{width}x144",
                        f"{left}-{left + 255}",
                        f"{kept['style'] / own['style']:.2f}",
                        f"{kept['content'] / own['content']:.2f}",
                    ]
                ),
                flush=True,
            )


def panorama_table(frames: int, shown: tuple[int, ...] = (1, 5, 9)) -> None:
    """A pan's frames against the best a consistent video can do: one cold stylization of the
    whole strip the camera sweeps (the panorama, its strokes at the frames' scale), of which each
    frame shows a crop. For each setting, the style of frame t over the style of the panorama's
    crop t and over a cold stylization of frame t itself; the warping error and seconds as in the
    stylized table."""
    require(TUBINGEN, GOLDEN_GATE)
    photo, thing = scene()
    stylizer = Stylizer(StyleSettings(size=256), [load_rgb(STYLE)])
    print(heading("Fast motion: a pan against its panorama — `make bench-motion`", "starry_night"))
    print()
    columns = ["clip", "setting", "warping / input's (true flow)", "s per later frame", "frame"]
    columns += ["style / panorama's crop", "style / cold frame", "panorama's crop / cold frame"]
    print(table(columns))
    for name in ("pan 12 px", "pan 36 px"):
        clip = synthetic_clip(name, CAMERAS[name], photo, thing, frames)
        best, cold = panorama_styles(clip, CAMERAS[name], photo, stylizer, shown)
        for setting, changes in SETTINGS.items():
            outputs, _, stamps = stylized_frames(
                clip, stylizer, replace(VideoSettings(), **changes)
            )
            true = true_warping_error(outputs, clip) / true_warping_error(clip.frames, clip)
            seconds = float(np.mean(stamps.gaps(skip=1)))
            for t in shown:
                content = to_tensor(to_float(clip.frames[t]))
                ours = stylizer.evaluate(to_tensor(to_float(outputs[t])), content)["style"]
                ratios = [ours / best[t], ours / cold[t], best[t] / cold[t]]
                cells = [f"{true:.2f}", f"{seconds:.2f}", t, *(f"{r:.2f}" for r in ratios)]
                print(row([name, setting, *cells]), flush=True)


def panorama_styles(
    clip: MotionClip, camera: Camera, photo: np.ndarray, stylizer: Stylizer, shown
) -> tuple[dict, dict]:
    """The style loss of the panorama's crop shown in each frame of `shown`, and of a cold
    stylization of that frame."""
    step = round(camera.pan[0])
    wide = (SIZE[0] + step * (len(clip.frames) - 1), SIZE[1])
    affine = view(0, camera, (photo.shape[1], photo.shape[0]))
    panorama = cv2.warpAffine(
        photo, affine, wide, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    painter = at_frame_scale(Stylizer(StyleSettings(size=wide[0]), [load_rgb(STYLE)]))
    painted = painter.stylize(to_tensor(to_float(panorama))).image
    best, cold = {}, {}
    for t in shown:
        content = to_tensor(to_float(clip.frames[t]))
        crop = painted[..., step * t : step * t + SIZE[0]].contiguous()
        best[t] = stylizer.evaluate(crop, content)["style"]
        cold[t] = stylizer.evaluate(stylizer.stylize(content).image, content)["style"]
    return best, cold


def at_frame_scale(stylizer: Stylizer) -> Stylizer:
    """The stylizer with the style targets of a frame's size whatever the image's size, so that a
    panorama's strokes are the frames' strokes."""
    targets = stylizer.style_grams
    stylizer.style_grams = lambda size: targets(SIZE[0])
    return stylizer


def main() -> None:
    args = argument_parser(__doc__)
    args.add_argument("--frames", type=int, default=10)
    args.add_argument(
        "--part", choices=("flows", "stylized", "crops", "panorama", "dis", "both"), default="both"
    )
    args.add_argument(
        "--settings",
        default=",".join(SETTINGS),
        help="the stylized table's rows, comma-separated (give it as --settings=...)",
    )
    options = args.parse_args()
    settings = options.settings.split(",")
    if unknown := set(settings) - set(SETTINGS):
        args.error(f"--settings: unknown {', '.join(sorted(unknown))}; use {', '.join(SETTINGS)}")
    if options.part in ("crops", "panorama"):
        crops_table() if options.part == "crops" else panorama_table(options.frames)
        return
    made = clips(options.frames)
    if options.part == "dis":
        dis_tables(made)
        return
    if options.part in ("flows", "both"):
        flows_table(made)
    if options.part in ("stylized", "both"):
        stylized_table(made, settings)


if __name__ == "__main__":
    main()
