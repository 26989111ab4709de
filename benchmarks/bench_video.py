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
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from benchmarks.bench_engine import evaluation_overhead, overhead_header, overhead_row
from pipeline.device import cpu_description
from pipeline.engine import Plan, Stylizer, halving_ladder, smallest_side
from pipeline.frames import FrameStylizer
from pipeline.image_io import load_rgb, to_tensor
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.temporal import Frame, WarpingError, to_float
from pipeline.video_io import Reader, even_size, probe

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CLIP = DATA / "videos" / "car-detection.mp4"
STYLE = DATA / "styles" / "starry_night.jpg"
IMAGES = ROOT / "docs" / "images"


def decode(count: int, size: int) -> list[np.ndarray]:
    info = probe(CLIP)
    with Reader(info, even_size(info.width, info.height, size)) as reader:
        return list(reader.frames(count))


def run_sequence(
    frame_stylizer: FrameStylizer, frames: list[np.ndarray], first: np.ndarray
) -> dict:
    outputs, stats = [first], []
    for index in range(1, len(frames)):
        start = time.perf_counter()
        out, info = frame_stylizer(Frame(frames[index]), (Frame(frames[index - 1]), outputs[-1]))
        info["wall"] = time.perf_counter() - start
        outputs.append(out)
        stats.append(info)
    error = WarpingError()
    for frame, out in zip(frames, outputs):
        error.add(frame, out)
    return {"outputs": outputs, "stats": stats, "warping_error": error.value}


def strip(outputs: list[np.ndarray], name: str) -> str:
    path = IMAGES / name
    cv2.imwrite(
        str(path),
        cv2.cvtColor(np.hstack(outputs), cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, 90],
    )
    return f"images/{name}"


def peak_rss_for(frames: int) -> float:
    """Peak RSS (MiB) of a whole `stylize_video` run over `frames` frames, in a fresh process."""
    code = (
        "import resource, sys, tempfile, pathlib;"
        "from pipeline.settings import StyleSettings, VideoSettings;"
        "from pipeline.video_job import stylize_video;"
        "out = pathlib.Path(tempfile.mkdtemp()) / 'o.mp4';"
        f"stylize_video(pathlib.Path('{DATA / 'videos' / 'bottle-detection.mp4'}'), "
        f"[pathlib.Path('{STYLE}')], out,"
        "StyleSettings(size=128, iterations=5, tolerance=0), VideoSettings(iterations_next=2, "
        "max_frames=int(sys.argv[1])));"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(frames)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def memory_section() -> None:
    """Memory stays flat however long the video."""
    print(
        "\nMemory over the length of a video (bottle-detection.mp4, 128 px, 5/2 iterations; whole "
        "run in a fresh process):\n"
    )
    print("| frames | peak RSS MiB |\n| --- | --- |")
    for frames in (30, 300):
        print(f"| {frames} | {peak_rss_for(frames):.0f} |")


def warm_starts_section(frames: list[np.ndarray], stylizer: Stylizer, cold_frames: int) -> None:
    video = VideoSettings()
    start = time.perf_counter()
    first, first_info = FrameStylizer(stylizer, video)(Frame(frames[0]), None)
    first_wall = time.perf_counter() - start
    print(
        f"car-detection.mp4, {frames[0].shape[1]}x{frames[0].shape[0]}, starry_night, first "
        f"{len(frames)} frames. "
        f"First frame (cold, shared by all rows): {first_wall:.1f} s, {first_info['evaluations']} "
        "evaluations, "
        f"content {first_info['losses']['content']:.3f}, style "
        f"{first_info['losses']['style']:.3f}.\n"
    )
    configs = {
        "flow, fill content (default)": video,
        "flow, fill warp": replace(video, fill="warp"),
        "flow, fill blend": replace(video, fill="blend"),
        "flow, no temporal loss": replace(video, temporal_weight=0.0),
        "prev": replace(video, warm_start="prev"),
    }
    print(
        "| warm start | s / later frame (median) | evaluations (median) | content (median) | "
        "style (median) | warping error |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    results = {}
    for name, settings in configs.items():
        results[name] = run_sequence(FrameStylizer(stylizer, settings), frames, first)
        _row(name, results[name])
    cold = run_sequence(
        FrameStylizer(stylizer, replace(video, warm_start="content")), frames[:cold_frames], first
    )
    _row(f"content (every frame cold, {cold_frames} frames)", cold)
    default = results["flow, fill content (default)"]
    print(
        "\nFour consecutive frames, flow (default): "
        f"![]({strip(default['outputs'][1:5], 'video_frames_flow.jpg')})\n"
    )
    print(
        "The same frames, every frame cold: "
        f"![]({strip(cold['outputs'][:4], 'video_frames_cold.jpg')})"
    )


def timed_sequence(frame_stylizer: FrameStylizer, frames: list[np.ndarray], cold: bool) -> dict:
    """Every frame from the previous result (or cold), with per-frame wall time and the warping
    error."""
    outputs, stats, error = [], [], WarpingError()
    for index, frame in enumerate(frames):
        previous = None if cold or index == 0 else (Frame(frames[index - 1]), outputs[-1])
        start = time.perf_counter()
        out, info = frame_stylizer(Frame(frame), previous)
        info["wall"] = time.perf_counter() - start
        outputs.append(out)
        stats.append(info)
        error.add(frame, out)
    return {"outputs": outputs, "stats": stats, "warping_error": error.value}


def speed_section(frames: list[np.ndarray], size: int, reference_frames: int) -> None:
    """The default configuration against the cold fp32 reference, in one run."""
    style_image = load_rgb(STYLE)
    default = timed_sequence(
        FrameStylizer(Stylizer(StyleSettings(size=size), [style_image]), VideoSettings()),
        frames,
        cold=False,
    )
    reference_settings = StyleSettings(
        size=size, iterations=300, precision="fp32", coarse_to_fine=False, tolerance=0.0
    )
    reference = timed_sequence(
        FrameStylizer(
            Stylizer(reference_settings, [style_image]), VideoSettings(warm_start="content")
        ),
        frames[:reference_frames],
        cold=True,
    )
    print(
        "| frame | default: wall s | evals | flow s | style | content | reference: wall s | evals "
        "| style | content |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for index, ours in enumerate(default["stats"]):
        cells = [
            f"{index}",
            f"{ours['wall']:.2f}",
            f"{ours['evaluations']}",
            f"{ours['flow_seconds']:.3f}",
            f"{ours['losses']['style']:.3f}",
            f"{ours['losses']['content']:.3f}",
        ]
        if index < len(reference["stats"]):
            ref = reference["stats"][index]
            cells += [
                f"{ref['wall']:.1f}",
                f"{ref['evaluations']}",
                f"{ref['losses']['style']:.3f}",
                f"{ref['losses']['content']:.3f}",
            ]
        else:
            cells += [""] * 4
        print("| " + " | ".join(cells) + " |")
    later = default["stats"][1:]
    shared = range(1, len(reference["stats"]))  # later frames the reference also ran
    median = statistics.median
    ref_wall = median(s["wall"] for s in reference["stats"])
    ours_wall = median(s["wall"] for s in later)
    style_ratio = median(
        default["stats"][i]["losses"]["style"] / reference["stats"][i]["losses"]["style"]
        for i in shared
    )
    content_ratio = median(
        default["stats"][i]["losses"]["content"] / reference["stats"][i]["losses"]["content"]
        for i in shared
    )
    warp_default = WarpingError()
    for frame, out in zip(frames[:reference_frames], default["outputs"][:reference_frames]):
        warp_default.add(frame, out)
    print(
        f"\n- later frames (1-{len(frames) - 1}): median {ours_wall:.2f} s and "
        f"{median(s['evaluations'] for s in later):.0f} evaluations "
        f"per frame; reference: median {ref_wall:.1f} s per frame: "
        f"**{ref_wall / ours_wall:.0f}x** faster"
    )
    print(
        f"- frames 1-{reference_frames - 1}, default / reference (median of per-frame ratios): "
        f"style {style_ratio:.3f}, content {content_ratio:.3f}"
    )
    print(
        f"- warping error over frames 0-{reference_frames - 1}: default {warp_default.value:.6f}, "
        f"reference {reference['warping_error']:.6f} "
        f"(ratio {warp_default.value / reference['warping_error']:.3f}); default over all "
        f"{len(frames)} frames {default['warping_error']:.6f}"
    )
    print(
        "- flow (two DIS flows, consistency mask, warp) per later frame: median "
        f"{median(s['flow_seconds'] for s in later):.3f} s"
    )
    seconds = plot(default, reference, "wall", "seconds per frame", "bench_video_seconds.png")
    style = plot(default, reference, "style", "style loss", "bench_video_style.png")
    content = plot(default, reference, "content", "content loss", "bench_video_content.png")
    print(f"\n![seconds per frame]({seconds}) ![style loss]({style}) ![content loss]({content})")
    print(
        "\nFour consecutive frames (default): "
        f"![]({strip(default['outputs'][8:12], 'video_frames_default.jpg')})"
    )
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
    print(
        "| first-frame scales | sizes | s | evaluations | style / reference | content / reference "
        "| total / reference |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    reference_total = reference["losses"]["style"] + reference["losses"]["content"]
    for scales in (1, 2, 3):
        start = time.perf_counter()
        plan = (
            Plan()
            if scales == 1
            else Plan(scales=scales, iterations=stylizer.settings.iterations // scales)
        )
        result = stylizer.stylize(to_tensor(to_float(frame)), plan)
        wall, losses = time.perf_counter() - start, result.losses
        info = {"evaluations": result.evaluations}
        sizes = " > ".join(
            str(max(s))
            for s in halving_ladder(*frame.shape[:2], scales, smallest_side(stylizer.settings))
        )
        print(
            f"| {scales}{' (default)' if scales == 1 else ''} | {sizes} | {wall:.1f} | "
            f"{info['evaluations']} | "
            f"{losses['style'] / reference['losses']['style']:.3f} | "
            f"{losses['content'] / reference['losses']['content']:.3f} | "
            f"{(losses['style'] + losses['content']) / reference_total:.3f} |"
        )


def overhead_table(frame: np.ndarray, size: int) -> None:
    """Per-evaluation cost of the engine against a bare pass of the same network, on a frame of
    this clip."""
    print(
        f"\nPer-evaluation overhead at {size} px (frame 1 as content, the engine's own loop, 15 "
        "evaluations x 3 rounds):\n"
    )
    print(overhead_header(("precision",)))
    for precision in ("auto", "fp32"):
        stylizer = Stylizer(
            StyleSettings(size=size, precision=precision, coarse_to_fine=False), [load_rgb(STYLE)]
        )
        result = evaluation_overhead(stylizer, to_tensor(to_float(frame)))  # frames decode as uint8
        print(overhead_row(f"{precision} ({str(stylizer.dtype).removeprefix('torch.')})", result))


def budgets_table(frames: list[np.ndarray], first: np.ndarray, reference: dict, size: int) -> None:
    """What each later-frame setting costs and gives, against the reference frames of this run."""
    stylizer = Stylizer(StyleSettings(size=size), [load_rgb(STYLE)])
    variants = {
        "default (flow, 12 iterations, patience 5, temporal 1000)": VideoSettings(),
        "60 iterations, patience 20": VideoSettings(iterations_next=60, patience_next=20),
        "8 iterations": VideoSettings(iterations_next=8),
        "no temporal loss": VideoSettings(temporal_weight=0.0),
        "prev (unwarped) warm start": VideoSettings(warm_start="prev"),
    }
    print(
        f"\nLater-frame settings, frames 1-{len(frames) - 1} from the same first frame; losses as "
        "median ratio to the reference frames:\n"
    )
    print(
        "| setting | s / frame | evaluations | style / reference | content / reference | warping "
        "error (frames 0-5) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, video in variants.items():
        result = run_sequence(FrameStylizer(stylizer, video), frames, first)
        stats = result["stats"]
        ratio = {
            k: statistics.median(
                s["losses"][k] / r["losses"][k] for s, r in zip(stats, reference["stats"][1:])
            )
            for k in ("style", "content")
        }
        print(
            f"| {name} | {statistics.median(s['wall'] for s in stats):.2f} | "
            f"{statistics.median(s['evaluations'] for s in stats):.0f} | "
            f"{ratio['style']:.3f} | {ratio['content']:.3f} | {result['warping_error']:.6f} |"
        )
    ref_wall = statistics.median(s["wall"] for s in reference["stats"])
    print(
        f"| reference (cold, fp32, 300 iterations) | {ref_wall:.1f} | "
        f"{statistics.median(s['evaluations'] for s in reference['stats']):.0f} | 1 | 1 | "
        f"{reference['warping_error']:.6f} |"
    )


def plot(default: dict, reference: dict, key: str, label: str, name: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def values(result):
        return [s[key] if key in s else s["losses"][key] for s in result["stats"]]

    figure, axes = plt.subplots(figsize=(5, 3.2), dpi=100)
    axes.plot(values(default), "o-", label="default")
    axes.plot(values(reference), "s-", label="reference (cold, fp32, 300 it.)")
    axes.set_xlabel("frame")
    axes.set_ylabel(label)
    if key == "wall":
        axes.set_yscale("log")
    axes.legend()
    figure.tight_layout()
    figure.savefig(IMAGES / name)
    plt.close(figure)
    return f"images/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--reference-frames", type=int, default=6)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument(
        "--warm-starts", action="store_true", help="compare the warm starts and fills (8 frames)"
    )
    parser.add_argument(
        "--cold-frames",
        type=int,
        default=4,
        help="with --warm-starts: frames of the every-frame-cold baseline",
    )
    parser.add_argument("--memory", action="store_true", help="only the peak-RSS-over-length check")
    parser.add_argument(
        "--overhead", action="store_true", help="only the per-evaluation overhead table"
    )
    args = parser.parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)
    if args.memory:
        return memory_section()
    print(f"## make bench-video — {time.strftime('%Y-%m-%d')}, {cpu_description()}\n")
    if args.overhead:
        return overhead_table(decode(2, args.size)[1], args.size)
    if args.warm_starts:
        frames = decode(8, args.size)
        return warm_starts_section(
            frames, Stylizer(StyleSettings(size=args.size), [load_rgb(STYLE)]), args.cold_frames
        )
    speed_section(decode(args.frames, args.size), args.size, args.reference_frames)


def _row(name: str, result: dict) -> None:
    stats = result["stats"]

    def median(key):
        return statistics.median(s[key] if key in s else s["losses"][key] for s in stats)

    print(
        f"| {name} | {median('wall'):.2f} | {median('evaluations'):.0f} | "
        f"{median('content'):.3f} | "
        f"{median('style'):.3f} | {result['warping_error']:.6f} |"
    )


if __name__ == "__main__":
    main()
