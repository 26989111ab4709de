"""Video benchmarks: warm-start modes and disocclusion fills on a real clip (issue 8).

car-detection.mp4 at 384 px with starry_night. The first frame is stylized cold once and shared;
each configuration then runs the following frames from it, so they differ only in the warm start.
Per configuration: seconds and evaluations per later frame, final content and style loss, and the
warping error of the sequence. Prints markdown; a strip of consecutive frames goes to docs/images/.
Run: make bench-video
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

from benchmarks.bench_engine import cpu_model
from pipeline.engine import Stylizer, cpu_has_amx
from pipeline.image_io import load_rgb
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.temporal import WarpingError
from pipeline.video_io import Reader, even_size, probe
from pipeline.video_job import FrameStylizer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CLIP = DATA / "videos" / "car-detection.mp4"
STYLE = DATA / "styles" / "starry_night.jpg"
IMAGES = ROOT / "docs" / "images"


def decode(count: int, size: int) -> list[np.ndarray]:
    info = probe(CLIP)
    with Reader(info, even_size(info.width, info.height, size)) as reader:
        return list(reader.frames(count))


def run_sequence(frame_stylizer: FrameStylizer, frames: list[np.ndarray], first: np.ndarray) -> dict:
    outputs, stats = [first], []
    for index in range(1, len(frames)):
        start = time.perf_counter()
        out, info = frame_stylizer(frames[index], (frames[index - 1], outputs[-1]))
        info["wall"] = time.perf_counter() - start
        outputs.append(out)
        stats.append(info)
    error = WarpingError()
    for frame, out in zip(frames, outputs):
        error.add(frame, out)
    return {"outputs": outputs, "stats": stats, "warping_error": error.value}


def strip(outputs: list[np.ndarray], name: str) -> str:
    path = IMAGES / name
    cv2.imwrite(str(path), cv2.cvtColor(np.hstack(outputs), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return f"images/{name}"


def peak_rss_for(frames: int) -> float:
    """Peak RSS (MiB) of a whole `stylize_video` run over `frames` frames, in a fresh process."""
    code = ("import resource, sys, tempfile, pathlib;"
            "from pipeline.settings import StyleSettings, VideoSettings;"
            "from pipeline.video_job import stylize_video;"
            "out = pathlib.Path(tempfile.mkdtemp()) / 'o.mp4';"
            f"stylize_video(pathlib.Path('{DATA / 'videos' / 'bottle-detection.mp4'}'), [pathlib.Path('{STYLE}')], out,"
            "StyleSettings(size=128, iterations=5, tolerance=0), VideoSettings(iterations_next=2, max_frames=int(sys.argv[1])));"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    result = subprocess.run([sys.executable, "-c", code, str(frames)], cwd=ROOT, check=True, capture_output=True, text=True)
    return float(result.stdout.strip().splitlines()[-1])


def memory_section() -> None:
    print("\nMemory over the length of a video (bottle-detection.mp4, 128 px, 5/2 iterations; whole run in a fresh process):\n")
    print("| frames | peak RSS MiB |\n| --- | --- |")
    for frames in (30, 300):
        print(f"| {frames} | {peak_rss_for(frames):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--cold-frames", type=int, default=4, help="frames for the every-frame-cold baseline")
    parser.add_argument("--memory-only", action="store_true", help="only the peak-RSS-over-length check")
    args = parser.parse_args()
    if args.memory_only:
        return memory_section()
    IMAGES.mkdir(parents=True, exist_ok=True)
    frames = decode(args.frames, args.size)
    style = StyleSettings(size=args.size)
    stylizer = Stylizer(style, [load_rgb(STYLE)])
    video = VideoSettings()
    start = time.perf_counter()
    first, first_info = FrameStylizer(stylizer, video)(frames[0], None)
    first_wall = time.perf_counter() - start
    print(f"## make bench-video — {time.strftime('%Y-%m-%d')}, {cpu_model()} ({'AMX' if cpu_has_amx() else 'no AMX'}), "
          f"precision {stylizer.dtype}\n")
    print(f"car-detection.mp4, {frames[0].shape[1]}x{frames[0].shape[0]}, starry_night, first {len(frames)} frames. "
          f"First frame (cold, shared by all rows): {first_wall:.1f} s, {first_info['evaluations']} evaluations, "
          f"content {first_info['losses']['content']:.3f}, style {first_info['losses']['style']:.3f}.\n")
    configs = {
        "flow, fill content (default)": video,
        "flow, fill warp": replace(video, fill="warp"),
        "flow, fill blend": replace(video, fill="blend"),
        "flow, no temporal loss": replace(video, temporal_weight=0.0),
        "prev": replace(video, init="prev"),
    }
    print("| warm start | s / later frame (median) | evaluations (median) | content (median) | style (median) | warping error |")
    print("| --- | --- | --- | --- | --- | --- |")
    results = {}
    for name, settings in configs.items():
        result = run_sequence(FrameStylizer(stylizer, settings), frames, first)
        results[name] = result
        _row(name, result)
    cold = run_sequence(FrameStylizer(stylizer, replace(video, init="content")), frames[: args.cold_frames], first)
    _row(f"content (every frame cold, {args.cold_frames} frames)", cold)
    default = results["flow, fill content (default)"]
    print(f"\nFour consecutive frames, flow (default): ![]({strip(default['outputs'][1:5], 'video_frames_flow.jpg')})\n")
    print(f"The same frames, every frame cold: ![]({strip(cold['outputs'][:4], 'video_frames_cold.jpg')})")
    memory_section()


def _row(name: str, result: dict) -> None:
    stats = result["stats"]

    def median(key):
        return statistics.median(s[key] if key in s else s["losses"][key] for s in stats)

    print(f"| {name} | {median('wall'):.2f} | {median('evaluations'):.0f} | {median('content'):.3f} | "
          f"{median('style'):.3f} | {result['warping_error']:.6f} |")


if __name__ == "__main__":
    main()
