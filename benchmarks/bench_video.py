"""Video benchmarks on car-detection.mp4 with starry_night at 384 px. Prints markdown; plots and
frame strips go to docs/images/. Run: make bench-video [ARGS=...]

Default: 24 frames with the default settings, and a reference configuration (every
frame cold, 300 L-BFGS iterations, fp32, no coarse-to-fine) on the first 6 of them, in the same
run: per frame wall seconds, evaluations, style and content loss; warping errors.
--warm-starts: the first frame stylized once and shared; each warm-start mode and
disocclusion fill then runs the following frames from it.
--memory: peak RSS of a 30-frame and a 300-frame run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from benchmarks.bench_engine import OVERHEAD_COLUMNS, evaluation_overhead, overhead_cells
from benchmarks.harness import (
    CLIPS,
    IMAGES,
    STYLE,
    argument_parser,
    decode,
    heading,
    row,
    run_child,
    table,
    timed,
)
from pipeline.engine import Plan, Stylizer, halving_ladder, smallest_side
from pipeline.frames import FrameStylizer
from pipeline.image_io import load_rgb, to_tensor
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.temporal import Frame, WarpingError, to_float

CLIP = CLIPS["car"]
median = statistics.median


def warping_error(frames: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    error = WarpingError()
    for frame, out in zip(frames, outputs):
        error.add(frame, out)
    return error.value


def run_sequence(
    frame_stylizer: FrameStylizer,
    frames: list[np.ndarray],
    first: np.ndarray | None = None,
    cold: bool = False,
) -> dict:
    """Every frame from the previous result (or cold), with per-frame wall time, and the warping
    error of the whole sequence. `first`: frame 0's result made elsewhere (no stats of it)."""
    outputs, stats = ([] if first is None else [first]), []
    for index in range(len(outputs), len(frames)):
        previous = None if cold or index == 0 else (Frame(frames[index - 1]), outputs[-1])
        (out, info), wall = timed(frame_stylizer, Frame(frames[index]), previous)
        outputs.append(out)
        stats.append({**info, "wall": wall})
    return {"outputs": outputs, "stats": stats, "warping_error": warping_error(frames, outputs)}


def value_of(stat: dict, key: str) -> float:
    """A frame's figure: wall, evaluations, flow_seconds, or one of its losses."""
    return stat[key] if key in stat else stat["losses"][key]


def median_of(stats: list[dict], key: str) -> float:
    return median(value_of(s, key) for s in stats)


def strip(outputs: list[np.ndarray], name: str) -> str:
    path = IMAGES / name
    cv2.imwrite(
        str(path),
        cv2.cvtColor(np.hstack(outputs), cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, 90],
    )
    return f"images/{name}"


def stylize_bottle(frames: int) -> None:
    """Child: a whole `stylize_video` run over `frames` frames of bottle-detection.mp4."""
    from pipeline.video_job import stylize_video

    with tempfile.TemporaryDirectory() as folder:
        stylize_video(
            CLIPS["bottle"],
            [STYLE],
            Path(folder) / "o.mp4",
            style_settings=StyleSettings(size=128, iterations=5, tolerance=0),
            video=VideoSettings(iterations_next=2, max_frames=frames),
        )


def memory_section() -> None:
    """Memory stays flat however long the video."""
    print(
        "Memory over the length of a video (bottle-detection.mp4, 128 px, 5/2 iterations; whole "
        "run in a fresh process):\n"
    )
    print(table(("frames", "peak RSS MiB")), flush=True)
    for frames in (30, 300):
        print(row([frames, f"{run_child(stylize_bottle, frames).peak_rss_mib:.0f}"]), flush=True)


def warm_starts_section(frames: list[np.ndarray], stylizer: Stylizer, cold_frames: int) -> None:
    video = VideoSettings()
    (first, first_info), first_wall = timed(FrameStylizer(stylizer, video), Frame(frames[0]), None)
    print(
        f"car-detection.mp4, {frames[0].shape[1]}x{frames[0].shape[0]}, starry_night, first "
        f"{len(frames)} frames. First frame (cold, shared by all rows): {first_wall:.1f} s, "
        f"{first_info['evaluations']} evaluations, content {first_info['losses']['content']:.3f}, "
        f"style {first_info['losses']['style']:.3f}.\n"
    )
    configs = {
        "flow, fill content (default)": video,
        "flow, fill warp": replace(video, fill="warp"),
        "flow, fill blend": replace(video, fill="blend"),
        "flow, no temporal loss": replace(video, temporal_weight=0.0),
        "prev": replace(video, warm_start="prev"),
    }
    columns = ("warm start", "s / later frame (median)", "evaluations (median)")
    print(table((*columns, "content (median)", "style (median)", "warping error")), flush=True)
    results = {}
    for name, settings in configs.items():
        results[name] = run_sequence(FrameStylizer(stylizer, settings), frames, first)
        print(warm_start_row(name, results[name]), flush=True)
    cold_settings = replace(video, warm_start="content")
    cold = run_sequence(FrameStylizer(stylizer, cold_settings), frames[:cold_frames], first)
    print(warm_start_row(f"content (every frame cold, {cold_frames} frames)", cold))
    flow = strip(results["flow, fill content (default)"]["outputs"][1:5], "video_frames_flow.jpg")
    print(f"\nFour consecutive frames, flow (default): ![]({flow})\n")
    cold_strip = strip(cold["outputs"][:4], "video_frames_cold.jpg")
    print(f"The same frames, every frame cold: ![]({cold_strip})")


def warm_start_row(name: str, result: dict) -> str:
    stats = result["stats"]
    figures = [f"{median_of(stats, 'wall'):.2f}", f"{median_of(stats, 'evaluations'):.0f}"]
    figures += [f"{median_of(stats, key):.3f}" for key in ("content", "style")]
    return row([name, *figures, f"{result['warping_error']:.6f}"])


def speed_runs(frames: list[np.ndarray], size: int, reference_frames: int) -> tuple[dict, dict]:
    """The default configuration over `frames`, and the cold fp32 reference over the first
    `reference_frames` of them."""
    style_image = load_rgb(STYLE)
    stylizer = Stylizer(StyleSettings(size=size), [style_image])
    default = run_sequence(FrameStylizer(stylizer, VideoSettings()), frames)
    reference_settings = StyleSettings(
        size=size, iterations=300, precision="fp32", coarse_to_fine=False, tolerance=0.0
    )
    reference_stylizer = Stylizer(reference_settings, [style_image])
    cold = FrameStylizer(reference_stylizer, VideoSettings(warm_start="content"))
    return default, run_sequence(cold, frames[:reference_frames], cold=True)


def per_frame_table(default: dict, reference: dict) -> str:
    columns = ("frame", "default: wall s", "evals", "flow s", "style", "content")
    rows = []
    for index, ours in enumerate(default["stats"]):
        cells = [
            index,
            f"{ours['wall']:.2f}",
            ours["evaluations"],
            f"{ours.get('flow_seconds', 0.0):.3f}",
        ]
        cells += [f"{ours['losses']['style']:.3f}", f"{ours['losses']['content']:.3f}"]
        if index < len(reference["stats"]):
            ref = reference["stats"][index]
            cells += [f"{ref['wall']:.1f}", ref["evaluations"]]
            cells += [f"{ref['losses']['style']:.3f}", f"{ref['losses']['content']:.3f}"]
        else:
            cells += [""] * 4
        rows.append(cells)
    return table((*columns, "reference: wall s", "evals", "style", "content"), rows)


def speed_summary(frames: list[np.ndarray], default: dict, reference: dict) -> None:
    count, later = len(reference["stats"]), default["stats"][1:]
    shared = range(1, count)  # later frames the reference also ran
    ratio = {
        part: median(
            default["stats"][i]["losses"][part] / reference["stats"][i]["losses"][part]
            for i in shared
        )
        for part in ("style", "content")
    }
    ref_wall, ours_wall = median_of(reference["stats"], "wall"), median_of(later, "wall")
    warp = warping_error(frames[:count], default["outputs"][:count])
    print(
        f"\n- later frames (1-{len(frames) - 1}): median {ours_wall:.2f} s and "
        f"{median_of(later, 'evaluations'):.0f} evaluations per frame; reference: median "
        f"{ref_wall:.1f} s per frame: **{ref_wall / ours_wall:.0f}x** faster"
    )
    print(
        f"- frames 1-{count - 1}, default / reference (median of per-frame ratios): "
        f"style {ratio['style']:.3f}, content {ratio['content']:.3f}"
    )
    print(
        f"- warping error over frames 0-{count - 1}: default {warp:.6f}, reference "
        f"{reference['warping_error']:.6f} (ratio {warp / reference['warping_error']:.3f}); "
        f"default over all {len(frames)} frames {default['warping_error']:.6f}"
    )
    print(
        "- flow (two DIS flows, consistency mask, warp) per later frame: median "
        f"{median_of(later, 'flow_seconds'):.3f} s"
    )


def speed_section(frames: list[np.ndarray], size: int, reference_frames: int) -> None:
    """The default configuration against the cold fp32 reference, in one run."""
    default, reference = speed_runs(frames, size, reference_frames)
    print(per_frame_table(default, reference))
    speed_summary(frames, default, reference)
    seconds = plot(default, reference, "wall", "seconds per frame", "bench_video_seconds.png")
    style = plot(default, reference, "style", "style loss", "bench_video_style.png")
    content = plot(default, reference, "content", "content loss", "bench_video_content.png")
    print(f"\n![seconds per frame]({seconds}) ![style loss]({style}) ![content loss]({content})")
    four = strip(default["outputs"][8:12], "video_frames_default.jpg")
    print(f"\nFour consecutive frames (default): ![]({four})")
    first_frame_table(frames[0], reference["stats"][0], size)
    budgets_table(frames[:reference_frames], default["outputs"][0], reference, size)
    overhead_table(frames[1], size)


def first_frame_table(frame: np.ndarray, reference: dict, size: int) -> None:
    """What coarse-to-fine costs and gives on the first frame of a shot, against the reference's
    frame 0."""
    stylizer = Stylizer(StyleSettings(size=size), [load_rgb(STYLE)])
    print(
        "\nFirst frame of a shot (frame 0), the 300-iteration budget split among the scales; "
        "losses as ratio to the reference's frame 0:\n"
    )
    columns = ("first-frame scales", "sizes", "s", "evaluations", "style / reference")
    print(table((*columns, "content / reference", "total / reference")), flush=True)
    ref = reference["losses"]
    for scales in (1, 2, 3):
        plan = Plan(scales=scales, iterations=stylizer.settings.iterations // scales)
        content = to_tensor(to_float(frame))
        result, wall = timed(stylizer.stylize, content, Plan() if scales == 1 else plan)
        losses = result.losses
        ladder = halving_ladder(*frame.shape[:2], scales, smallest_side(stylizer.settings))
        total = (losses["style"] + losses["content"]) / (ref["style"] + ref["content"])
        ratios = [f"{losses[k] / ref[k]:.3f}" for k in ("style", "content")] + [f"{total:.3f}"]
        label = f"{scales}{' (default)' if scales == 1 else ''}"
        sizes = " > ".join(str(max(s)) for s in ladder)
        print(row([label, sizes, f"{wall:.1f}", result.evaluations, *ratios]), flush=True)


def overhead_table(frame: np.ndarray, size: int) -> None:
    """Per-evaluation cost of the engine against a bare pass of the same network, on a frame of
    this clip."""
    print(
        f"\nPer-evaluation overhead at {size} px (frame 1 as content, the engine's own loop, 15 "
        "evaluations x 3 rounds):\n"
    )
    print(table(("precision", *OVERHEAD_COLUMNS)), flush=True)
    for precision in ("auto", "fp32"):
        settings = StyleSettings(size=size, precision=precision, coarse_to_fine=False)
        stylizer = Stylizer(settings, [load_rgb(STYLE)])
        result = evaluation_overhead(stylizer, to_tensor(to_float(frame)))  # frames decode as uint8
        dtype = str(stylizer.dtype).removeprefix("torch.")
        print(row([f"{precision} ({dtype})", *overhead_cells(result)]), flush=True)


DEFAULT = VideoSettings()
BUDGETS = {
    f"default (flow, {DEFAULT.iterations_next} iterations, patience {DEFAULT.patience_next}, "
    f"temporal {DEFAULT.temporal_weight:g})": DEFAULT,
    "60 iterations, patience 20": VideoSettings(iterations_next=60, patience_next=20),
    "8 iterations": VideoSettings(iterations_next=8),
    "no temporal loss": VideoSettings(temporal_weight=0.0),
    "prev (unwarped) warm start": VideoSettings(warm_start="prev"),
}


def budgets_table(frames: list[np.ndarray], first: np.ndarray, reference: dict, size: int) -> None:
    """What each later-frame setting costs and gives, against the reference frames of this run."""
    stylizer = Stylizer(StyleSettings(size=size), [load_rgb(STYLE)])
    print(
        f"\nLater-frame settings, frames 1-{len(frames) - 1} from the same first frame; losses as "
        "median ratio to the reference frames:\n"
    )
    columns = ("setting", "s / frame", "evaluations", "style / reference", "content / reference")
    print(table((*columns, "warping error (frames 0-5)")), flush=True)
    for name, video in BUDGETS.items():
        result = run_sequence(FrameStylizer(stylizer, video), frames, first)
        stats = result["stats"]
        pairs = list(zip(stats, reference["stats"][1:]))
        ratios = [
            f"{median(s['losses'][k] / r['losses'][k] for s, r in pairs):.3f}"
            for k in ("style", "content")
        ]
        figures = [f"{median_of(stats, 'wall'):.2f}", f"{median_of(stats, 'evaluations'):.0f}"]
        print(row([name, *figures, *ratios, f"{result['warping_error']:.6f}"]), flush=True)
    ref = reference["stats"]
    figures = [f"{median_of(ref, 'wall'):.1f}", f"{median_of(ref, 'evaluations'):.0f}", 1, 1]
    label = "reference (cold, fp32, 300 iterations)"
    print(row([label, *figures, f"{reference['warping_error']:.6f}"]))


def plot(default: dict, reference: dict, key: str, label: str, name: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.2), dpi=100)
    axes.plot([value_of(s, key) for s in default["stats"]], "o-", label="default")
    reference_label = "reference (cold, fp32, 300 it.)"
    axes.plot([value_of(s, key) for s in reference["stats"]], "s-", label=reference_label)
    axes.set_xlabel("frame")
    axes.set_ylabel(label)
    if key == "wall":
        axes.set_yscale("log")
    axes.legend()
    figure.tight_layout()
    figure.savefig(IMAGES / name)
    plt.close(figure)
    return f"images/{name}"


def parse_args() -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--reference-frames", type=int, default=6)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument(
        "--warm-starts", action="store_true", help="compare the warm starts and fills (8 frames)"
    )
    cold_frames = "with --warm-starts: frames of the every-frame-cold baseline"
    parser.add_argument("--cold-frames", type=int, default=4, help=cold_frames)
    parser.add_argument("--memory", action="store_true", help="only the peak-RSS-over-length check")
    parser.add_argument(
        "--overhead", action="store_true", help="only the per-evaluation overhead table"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)
    print(heading("make bench-video"), flush=True)
    if args.memory:
        return memory_section()
    if args.overhead:
        return overhead_table(decode(CLIP, 2, args.size)[1], args.size)
    if args.warm_starts:
        stylizer = Stylizer(StyleSettings(size=args.size), [load_rgb(STYLE)])
        return warm_starts_section(decode(CLIP, 8, args.size), stylizer, args.cold_frames)
    speed_section(decode(CLIP, args.frames, args.size), args.size, args.reference_frames)


if __name__ == "__main__":
    main()
