"""Long-term temporal consistency: each video setting on two real clips at 256 px.

For every (clip, setting): the drift of the static background over the clip, the warping error at
k = 1 and k = 30 as ratios to the input's own (judged with the camera-aware flow, and with DIS's
own), the static background's difference between frames t and t-1 and t-30 against the input's
(pixels compared in place: no flow, whose noise on a still area the warping error counts against
an output that holds still), evaluations and seconds per later frame, and the later frames'
content and style losses (of the whole frame as written, as a cold frame's are counted) against a
cold 300-iteration stylization of the same frames. Each run is its own process (`--jobs N` runs N
at once: for a GPU machine; on a 2-core CPU keep 1).

The frames are measured as written to the work folder (lossless), so that runs on machines without
ffmpeg (PyAV decodes there) compare with the rest. Run: make bench-temporal [ARGS="--frames 300
--settings default,default+passes-3"]. Prints markdown.
"""

from __future__ import annotations

import argparse
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.harness import (
    CLIPS,
    IMAGES,
    STYLE,
    TUBINGEN,
    ChildFailed,
    argument_parser,
    heading,
    run_child,
    stylize_in_memory,
    table,
)
from benchmarks.harness import decode as decode_clip

SETTINGS = {  # VideoSettings fields that each setting changes from the defaults
    "default": {},
    "default+one-frame": {"temporal_frames": (1,)},
    "default+no-carry": {"carry_curvature": False},
    "default+evals-12": {"evaluations_next": 12},
    "default+weight-1e3": {"temporal_weight": 1e3},
    "default+weight-1e5": {"temporal_weight": 1e5},
    "default+passes-3": {"passes": 3},
    "default+hold-0.03": {"hold_still": 0.03},
    "default+no-restore": {"restore_still": False},
    "default+no-photo-check": {"photo_check": False},
    "default+no-restore+no-photo-check": {"restore_still": False, "photo_check": False},
}
REFERENCE_FRAMES = (50, 150, 250)  # judged against a cold 300-iteration stylization
COLD = "cold-300"  # the setting name of that reference


def panned(count: int, size: int, speed: float = 1.5) -> list[np.ndarray]:
    """The clip "pan", a moving camera (for what holds still where nothing is): a 16:9 window
    panning right over tubingen.jpg at `speed` px a frame (of the output's size), with a little
    sensor noise, RGB uint8."""
    import cv2

    from pipeline.image_io import read_photo

    width, height = size, round(size * 9 / 16 / 2) * 2
    photo = read_photo(TUBINGEN).rgb * 255  # float, 0-1
    scale = (width + speed * count) / photo.shape[1]  # wide enough for the whole pan
    photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    rng, frames = np.random.default_rng(0), []
    for t in range(count):
        shift = np.float32([[1, 0, -speed * t], [0, 1, -0.1 * photo.shape[0]]])
        frame = cv2.warpAffine(
            photo, shift, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        frames.append(np.clip(frame + rng.normal(0, 1.5, frame.shape), 0, 255).astype(np.uint8))
    return frames


def decode(clip: str, count: int, size: int) -> list[np.ndarray]:
    """The first `count` frames of `clip` (a name of CLIPS, or "pan") at `size`, RGB uint8."""
    return panned(count, size) if clip == "pan" else decode_clip(CLIPS[clip], count, size)


def stylized(clip: str, setting: str, frames: int, size: int, device: str, work: Path):
    """`frames` frames of `clip` stylized with `setting` into a work folder, as `stylize video`
    does: the inputs, the stylizer, the folder of the last pass and the later frames' mean
    evaluations and seconds (later passes included)."""
    from pipeline.engine import Stylizer
    from pipeline.frames import FrameStylizer
    from pipeline.image_io import load_rgb
    from pipeline.settings import StyleSettings, VideoSettings

    inputs = decode(clip, frames, size)
    folder = work / f"{clip}-{setting}"
    shutil.rmtree(folder, ignore_errors=True)
    video = replace(VideoSettings(), **SETTINGS[setting])
    stylizer = Stylizer(StyleSettings(size=size, device=device), [load_rgb(STYLE)])
    reports, refined = [], []
    final = stylize_in_memory(
        inputs,
        FrameStylizer(stylizer, video, folder),
        folder,
        video,
        reports.append,
        lambda position, index, skipped, stats: refined.append(stats),
    )
    later = [r for r in reports if not r.cold]
    cost = {
        "evaluations": np.mean([r.evaluations for r in later])
        + sum(s.get("evaluations", 0) for s in refined) / max(1, len(later)),
        "seconds": np.mean([r.seconds for r in later])
        + sum(s.get("seconds", 0.0) for s in refined) / max(1, len(later)),
    }
    return inputs, stylizer, final, {k: float(v) for k, v in cost.items()}


def run_one(clip: str, setting: str, frames: int, size: int, device: str, work: str) -> dict:
    """Child: `clip` stylized with `setting`, measured on the stylized frames themselves (lossless,
    before any encoder)."""
    from pipeline.temporal_eval import figures_of_frames
    from pipeline.work_folder import frame_path, read_frame

    inputs, stylizer, final, cost = stylized(clip, setting, frames, size, device, Path(work))
    outputs = [read_frame(frame_path(final, i)) for i in range(len(inputs))]
    figures, dis_figures = (
        figures_of_frames(inputs, outputs, (1, 30), flow) for flow in ("dis", "dis-raw")
    )
    return {
        "clip": clip,
        "setting": setting,
        "frames": len(inputs),
        "work_dir": str(final),
        **cost,
        "losses": {
            i: whole_frame_losses(stylizer, inputs[i], outputs[i])
            for i in REFERENCE_FRAMES
            if i < len(inputs)
        },
        "warping": {k: list(v) for k, v in figures.warping.items()},
        "warping_dis": {k: list(v) for k, v in dis_figures.warping.items()},
        "static": {k: list(v) for k, v in figures.static_difference.items()},
        "static_share": figures.static_share,
        "drift": list(figures.drift),
    }


def whole_frame_losses(stylizer, content: np.ndarray, frame: np.ndarray) -> dict[str, float]:
    """Content and style of a written frame, as a cold frame's are counted (whole-image Grams, no
    temporal term): what a frame logs itself may be of its free pixels only (--hold-still)."""
    from pipeline.image_io import to_tensor
    from pipeline.temporal import to_float

    return stylizer.evaluate(to_tensor(to_float(frame)), to_tensor(to_float(content)))


def run_cold(clip: str, frames: int, size: int, device: str) -> dict:
    """Child, the reference: frames of `clip` stylized cold, 300 iterations at one scale. Besides
    the loss reference frames, the frame where the input's still background moves furthest from
    the first frames, and frame 2: how far an independent stylization's own still background moves
    there (what following the input's exposure costs, beside the drift a warm-started chain
    adds)."""
    from pipeline.engine import Stylizer
    from pipeline.image_io import load_rgb, to_array, to_tensor
    from pipeline.settings import StyleSettings
    from pipeline.temporal import to_float
    from pipeline.temporal_eval import FIRST_FRAMES, still_pixels

    stylizer = Stylizer(StyleSettings(size=size, device=device, tolerance=0.0), [load_rgb(STYLE)])
    inputs = decode(clip, max(frames, max(REFERENCE_FRAMES) + 1), size)
    losses = {
        i: stylizer.stylize(to_tensor(to_float(inputs[i]))).losses
        for i in REFERENCE_FRAMES
        if i < len(inputs)
    }
    still = still_pixels(inputs[:frames])
    if not still.any():
        return {"clip": clip, "setting": COLD, "losses": losses}
    means = np.array([to_float(frame)[still].mean(axis=0) for frame in inputs[:frames]])
    furthest = int(np.abs(means - means[:FIRST_FRAMES].mean(axis=0)).max(axis=1).argmax())
    first, last = (
        to_array(stylizer.stylize(to_tensor(to_float(inputs[i]))).image)[still].mean(axis=0)
        for i in (2, furthest)
    )
    drift = [
        float(np.abs(last - first).max() * 100),
        float(np.abs(means[furthest] - means[2]).max() * 100),
    ]
    return {
        "clip": clip,
        "setting": COLD,
        "losses": losses,
        "cold_drift": {"frame": furthest, "drift": drift},
    }


def loss_ratio(run: dict, cold: dict, part: str) -> float:
    pairs = [
        (run["losses"][str(i)][part], cold["losses"][str(i)][part])
        for i in REFERENCE_FRAMES
        if str(i) in run["losses"] and str(i) in cold["losses"]
    ]
    return float(np.mean([mine / theirs for mine, theirs in pairs])) if pairs else float("nan")


COLUMNS = (
    "clip",
    "setting",
    "frames",
    "drift (input)",
    "k=1 ratio",
    "k=30 ratio",
    "k=1, k=30 (DIS flow)",
    "static t vs t-1 (x input)",
    "static t vs t-30 (x input)",
    "evals / later frame",
    "s / later frame",
    "content vs cold 300",
    "style vs cold 300",
)


def result_row(run: dict, cold: dict) -> list[str]:
    if "error" in run:
        return [run["error"]]
    nan = float("nan")
    ratio, dis = (
        {k: v[0] / v[1] if v[1] > 0 else nan for k, v in run.get(which, {}).items()}
        for which in ("warping", "warping_dis")
    )
    static = [run["static"][k][0] / max(run["static"][k][1], 1e-12) for k in ("1", "30")]
    return [
        run["clip"],
        run["setting"],
        run["frames"],
        f"{run['drift'][0]:.2f} % ({run['drift'][1]:.2f} %)",
        f"{ratio['1']:.2f}",
        f"{ratio['30']:.2f}",
        f"{dis.get('1', nan):.2f}, {dis.get('30', nan):.2f}",
        *(f"{value:.1f}" for value in static),
        f"{run['evaluations']:.1f}",
        f"{run['seconds']:.2f}",
        *(f"{loss_ratio(run, cold, part):.2f}" for part in ("content", "style")),
    ]


def picture(
    runs: list[dict],
    settings: tuple[str, str],
    clip: str = "bottle",
    frames: tuple[int, ...] = (0, 100, 200, 299),
) -> str | None:
    """The same static crop at frames 0, 100, 200 and 299 for two settings (rows)."""
    import cv2

    from pipeline.temporal_eval import still_pixels
    from pipeline.work_folder import frame_path

    chosen = {
        run["setting"]: run
        for run in runs
        if run.get("clip") == clip and run.get("setting") in settings
    }
    if len(chosen) < 2:
        return None
    first = cv2.imread(str(frame_path(Path(chosen[settings[0]]["work_dir"]), 0)))
    mask = still_pixels(decode(clip, max(frames) + 1, max(first.shape))).astype(np.float32)
    side = min(96, first.shape[0] // 2, first.shape[1] // 2)
    share = cv2.boxFilter(mask, -1, (side, side), normalize=True)
    y, x = np.unravel_index(
        np.argmax(share[side // 2 : -side // 2, side // 2 : -side // 2]),
        (share.shape[0] - side, share.shape[1] - side),
    )
    rows = []
    for setting in settings:
        folder = Path(chosen[setting]["work_dir"])
        tiles = [
            cv2.imread(str(frame_path(folder, i)))[y : y + side, x : x + side]
            for i in frames
            if frame_path(folder, i).is_file()
        ]
        if not tiles:
            return None
        rows.append(cv2.resize(np.hstack(tiles), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))
    IMAGES.mkdir(parents=True, exist_ok=True)
    name = f"temporal-static-crop-{settings[0]}-vs-{settings[1]}.png"
    cv2.imwrite(str(IMAGES / name), np.vstack(rows))
    return f"images/{name}"


def measure(clip: str, setting: str, args: argparse.Namespace) -> dict:
    """One run in its own process; its result is also kept in the work folder, should the whole
    run be stopped."""
    try:
        if setting == COLD:
            out = run_child(run_cold, clip, args.frames, args.size, args.device).result
        else:
            common = (args.frames, args.size, args.device, args.work)
            out = run_child(run_one, clip, setting, *common).result
    except ChildFailed as failed:
        return {"error": str(failed)}
    (args.work / f"result-{clip}-{setting}.json").write_text(json.dumps(out))
    return out


def parse_args() -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--clips", default="bottle,car", help="of bottle, car and pan")
    parser.add_argument(
        "--settings",
        default="default,default+hold-0.03,default+passes-3",
        help=f"of {', '.join(SETTINGS)}",
    )
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at once (a GPU machine has room for several)"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-temporal"))
    parser.add_argument(
        "--picture",
        default="default,default+hold-0.03",
        help="two settings whose static crops docs/images gets",
    )
    parser.add_argument(
        "--no-cold",
        action="store_true",
        help="skip the cold 300-iteration reference (its loss columns then read nan)",
    )
    args = parser.parse_args()
    unknown = set(args.settings.split(",")) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown setting {', '.join(sorted(unknown))}")
    return args


def cold_drift_notes(colds: dict[str, dict]) -> None:
    for clip, cold in colds.items():
        if "cold_drift" in cold:
            drift = cold["cold_drift"]
            print(
                f"\n{clip}: two cold stylizations, of frame 2 and of frame {drift['frame']} "
                "(where the input's still background moves furthest), differ there by "
                f"{drift['drift'][0]:.2f} % (the input: {drift['drift'][1]:.2f} %)."
            )


def main() -> None:
    args = parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    reference = [] if args.no_cold else [COLD]
    jobs = [
        (clip, setting)
        for clip in args.clips.split(",")
        for setting in [*reference, *args.settings.split(",")]
    ]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: measure(*job, args), jobs))
    colds = {r["clip"]: r for r in results if r.get("setting") == COLD}
    runs = [r for r in results if r.get("setting") != COLD]
    print(heading("Long-term temporal consistency — `make bench-temporal`", device=args.device))
    print(f"{args.frames} frames of each clip at {args.size} px, starry_night.jpg.\n")
    no_cold = {"losses": {}}
    print(table(COLUMNS, [result_row(run, colds.get(run.get("clip"), no_cold)) for run in runs]))
    cold_drift_notes(colds)
    crop = picture(runs, tuple(args.picture.split(",")))
    if crop:
        print(f"\n![static crop]({crop})  (frames 0, 100, 200, 299; rows: {args.picture})")
    (args.work / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
