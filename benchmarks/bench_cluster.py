"""Ray scale-out: items per minute for a folder run locally and over Ray with 1 and
2 single-CPU workers on this machine, Ray's per-item overhead, and a projection for N machines.
Run: make bench-cluster
"""

from __future__ import annotations

import sys
import shutil
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from pipeline.batch import stylize_folder
from pipeline.device import cpu_description
from pipeline.settings import ClusterSettings, StyleSettings

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
STYLE = DATA / "styles" / "starry_night.jpg"
PHOTOS = 8
SETTINGS = StyleSettings(size=192, iterations=40, tolerance=0.0)


def make_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    sources = sorted((DATA / "contents").glob("*.jpg"))
    for i in range(PHOTOS):
        Image.open(sources[i % len(sources)]).save(root / f"p{i}.jpg", quality=95)
    return root


def timed(source: Path, output: Path, cluster: ClusterSettings | None) -> tuple[float, float]:
    """Wall seconds for the whole run, and seconds per item once the first item is done (steady
    state)."""
    stamps: list[float] = []
    start = time.perf_counter()
    stylize_folder(
        source,
        output,
        [STYLE],
        SETTINGS,
        on_item=lambda i, n, item, r: r and stamps.append(time.perf_counter()),
        cluster=cluster,
    )
    wall = time.perf_counter() - start
    steady = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    return wall, steady


# (clip, overlap, chunk frames, chunks inside a shot start from its first result, --hold-still,
# first frame's iterations: None the tool's default, 300 with its early stop; 40, which leaves the
# first frame unconverged, so each chunk's chain goes on
# converging it and the chunks part ways): car-detection's first two seconds are still,
# bottle-detection's camera never moves; overlaps of 6 in 60 and 15 in 150 are 10 % extra work, 36
# in 150
# (the default) 24 %
SEAM_CASES = [
    ("car", 6, 60, True, 0.0, None),
    ("bottle", 6, 60, True, 0.0, None),
    ("car", 15, 150, True, 0.0, None),
    ("bottle", 15, 150, True, 0.0, None),
    ("car", 36, 150, True, 0.0, None),
    ("car", 6, 60, False, 0.0, 40),
    ("car", 6, 60, True, 0.0, 40),
    ("bottle", 6, 60, False, 0.0, 40),
    ("bottle", 6, 60, True, 0.0, 40),
    ("bottle", 15, 150, True, 0.0, 40),
    ("bottle", 6, 60, True, 0.03, 40),
]
SEAM_CLIPS = {
    "car": DATA / "videos" / "car-detection.mp4",
    "bottle": DATA / "videos" / "bottle-detection.mp4",
}


def seams_table(only: str = "") -> list[str]:
    """Seam against inside-chunk warping error for each case (two Ray workers); `only`: the cases
    whose row contains it."""
    lines = [
        "| clip | overlap (frames) | chunk (frames) | extra work | a chunk inside a shot starts | "
        "--hold-still | first frame | "
        "seam pairs (mean) | pairs inside the chunks (mean) | ratio | ratio (DIS flow) |",
        "| --- " * 11 + "|",
    ]
    for clip, overlap, chunk, heads, hold, first in SEAM_CASES:
        start = "from the shot's first result" if heads else "cold"
        budget = f"{first} iterations" if first else "default (300, early stop)"
        share = f"{overlap / chunk:.0%}"
        row = f"| {clip} | {overlap} | {chunk} | {share} | {start} | {hold or 'off'} | {budget} |"
        if only not in row:
            continue
        seam, inside, dis_ratio = seam_ratio(SEAM_CLIPS[clip], overlap, chunk, heads, hold, first)
        lines.append(f"{row} {seam:.2e} | {inside:.2e} | {seam / inside:.2f} | {dis_ratio:.2f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main() -> None:
    import ray

    if "--seams" in sys.argv:  # only the video seams
        ray.init(num_cpus=2, namespace="stylize", log_to_driver=False, include_dashboard=False)
        print(
            f"Video seams, {time.strftime('%Y-%m-%d')}, {cpu_description()}; 96 px, two chunks on "
            "2 workers:\n"
        )
        only = (
            sys.argv[sys.argv.index("--seams") + 1]
            if len(sys.argv) > sys.argv.index("--seams") + 1
            else ""
        )
        print("\n".join(seams_table(only)))
        ray.shutdown()
        return
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    source = make_folder(work / "in")
    print(
        f"## make bench-cluster — {time.strftime('%Y-%m-%d')}, {cpu_description()}, "
        f"ray {ray.__version__}\n"
    )
    print(
        f"{PHOTOS} photos (tubingen, golden_gate), {SETTINGS.size} px, {SETTINGS.iterations} "
        "iterations, starry_night.\n"
    )
    rows = []
    threads = torch.get_num_threads()
    for label, cluster, torch_threads in [
        ("local, 1 thread", None, 1),
        ("local, 2 threads", None, 2),
    ]:
        torch.set_num_threads(torch_threads)
        rows.append((label, *timed(source, work / f"local_{torch_threads}_threads", cluster), 1.0))
    torch.set_num_threads(threads)
    start = time.perf_counter()
    # everything exists: resume check only
    stylize_folder(source, work / "local_2_threads", [STYLE], SETTINGS)
    rerun_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ray.init(num_cpus=2, namespace="stylize", log_to_driver=False, include_dashboard=False)
    init_seconds = time.perf_counter() - start
    for workers in (1, 2):
        label = f"Ray, {workers} worker{'s' if workers > 1 else ''} x 1 CPU"
        rows.append(
            (
                label,
                *timed(
                    source,
                    work / f"ray{workers}",
                    ClusterSettings(workers=workers, cpus_per_worker=1),
                ),
                workers,
            )
        )
    seams = seams_table()
    ray.shutdown()
    print("| run | wall s (whole run) | photos / min (whole run) | s / photo / worker (steady) |")
    print("| --- | --- | --- | --- |")
    for label, wall, steady, workers in rows:
        print(f"| {label} | {wall:.1f} | {60 * PHOTOS / wall:.1f} | {steady * workers:.2f} |")
    local_one, ray_one = rows[0][2], rows[2][2]
    ray_two = rows[3]
    print(f"\n- a rerun over the finished folder (every output exists): {rerun_seconds:.2f} s")
    print(f"- `ray.init` (local cluster, 2 CPUs): {init_seconds:.1f} s, once per run")
    print(
        "- Ray's per-item overhead, steady state, one single-thread worker against the local "
        "single-thread loop: "
        f"{ray_one - local_one:+.2f} s per photo ({100 * (ray_one / local_one - 1):+.1f} %)"
    )
    rate = 60 / ray_two[2]
    print(
        f"- projection: a machine like this one (2 cores, 2 workers) does about {rate:.0f} "
        "photos/min at these settings; "
        f"N such machines about N x {rate:.0f}, as items are independent and only the driver's "
        "bookkeeping is shared"
    )
    print(
        "\nVideo in two chunks on 2 workers (96 px, later frames the defaults), "
        "warping error per frame pair:\n"
    )
    print("\n".join(seams))
    shutil.rmtree(work, ignore_errors=True)


def seam_ratio(
    clip: Path,
    overlap: int,
    chunk: int = 60,
    heads: bool = True,
    hold: float = 0.0,
    first: int | None = None,
) -> tuple[float, float, float]:
    """Mean warping error of the frame pairs in and around the overlap, and of the others, for a
    video of two chunks at 96 px (first frame `first` iterations without early stop, else the
    default budget; later frames the defaults); and the
    ratio of the two with DIS's own flow, as measured before the still-aware flow."""
    from pipeline.settings import VideoSettings
    from pipeline.temporal import WarpingError
    from pipeline.video_io import Reader, probe
    from pipeline.video_job import stylize_video

    info = probe(clip)
    count = 2 * chunk - overlap
    seconds = count / float(info.fps)
    output = Path(tempfile.mkdtemp()) / "out.mp4"
    stylize_video(
        clip,
        [STYLE],
        output,
        seam_style(first),
        VideoSettings(max_frames=count, hold_still=hold),
        cluster=ClusterSettings(
            workers=2,
            cpus_per_worker=1,
            chunk_frames=chunk,
            overlap_frames=overlap,
            shot_heads=heads,
        ),
    )
    out = probe(output)
    error, dis_error = WarpingError(), WarpingError(still_flow=False)
    with (
        Reader(info, (out.width, out.height), 0.0, seconds) as a,
        Reader(out, (out.width, out.height)) as b,
    ):
        for frame_in, frame_out in zip(a.frames(count), b.frames()):
            error.add(frame_in, frame_out)
            dis_error.add(frame_in, frame_out)
    shutil.rmtree(output.parent, ignore_errors=True)
    (seam, inside), (dis_seam, dis_inside) = (
        seam_and_inside(e.errors, chunk, overlap) for e in (error, dis_error)
    )
    return seam, inside, dis_seam / dis_inside


def seam_style(first: int | None, size: int = 96) -> StyleSettings:
    """The seam cases' per-frame settings: the first frame `first` iterations without early stop,
    else the default budget."""
    return (
        StyleSettings(size=size, iterations=first, tolerance=0.0)
        if first
        else StyleSettings(size=size)
    )


def seam_and_inside(errors: list[float], chunk: int, overlap: int) -> tuple[float, float]:
    """Mean warping error of the pairs from the last frame before the overlap to the first after it,
    and of the other pairs, for two chunks of `chunk` frames."""
    import statistics

    start = chunk - overlap  # first frame of the second chunk
    return statistics.mean(errors[start - 1 : chunk]), statistics.mean(
        errors[: start - 1] + errors[chunk:]
    )


if __name__ == "__main__":
    main()
