"""Ray scale-out: items per minute for a folder run locally and over Ray with 1 and
2 single-CPU workers on this machine, Ray's per-item overhead, and a projection for N machines;
then the warping error at the seams of a video run in two chunks on 2 Ray workers.

Run: make bench-cluster, or `python -m benchmarks.bench_cluster --seams [TEXT]` for the seams
alone (the cases whose row contains TEXT).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

from benchmarks.harness import (
    CLIPS,
    DATA,
    STYLE,
    Stamps,
    argument_parser,
    heading,
    row,
    table,
    timed,
)
from pipeline.batch import stylize_folder
from pipeline.settings import ClusterSettings, StyleSettings, VideoSettings

PHOTOS = 8
SETTINGS = StyleSettings(size=192, iterations=40, tolerance=0.0)

# (clip, overlap, chunk frames, chunks inside a shot start from its first result, --hold-still,
# first frame's iterations: None the tool's default, 300 with its early stop; 40, which leaves the
# first frame unconverged, so each chunk's chain goes on converging it and the chunks part ways):
# car-detection's first two seconds are still, bottle-detection's camera never moves; overlaps of
# 6 in 60 and 15 in 150 are 10 % extra work, 36 in 150 (the default) 24 %
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
SEAM_COLUMNS = (
    "clip",
    "overlap (frames)",
    "chunk (frames)",
    "extra work",
    "a chunk inside a shot starts",
    "--hold-still",
    "first frame",
    "seam pairs (mean)",
    "pairs inside the chunks (mean)",
    "ratio",
    "ratio (DIS flow)",
)


def make_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    sources = sorted((DATA / "contents").glob("*.jpg"))
    for i in range(PHOTOS):
        Image.open(sources[i % len(sources)]).save(root / f"p{i}.jpg", quality=95)
    return root


def folder_run(source: Path, output: Path, cluster: ClusterSettings | None) -> tuple[float, float]:
    """Wall seconds for the whole run, and seconds per item once the first item is done (steady
    state)."""
    stamps = Stamps()

    def on_item(index, count, item, result) -> None:
        if result:
            stamps()

    options = {"on_item": on_item, "cluster": cluster}
    _, wall = timed(stylize_folder, source, output, [STYLE], style_settings=SETTINGS, **options)
    return wall, statistics.mean(stamps.gaps())


def local_rows(source: Path, work: Path) -> list[tuple[str, float, float, int]]:
    """(run, wall, steady seconds per photo, workers) of the local loop with 1 and 2 threads."""
    rows, threads = [], torch.get_num_threads()
    for count in (1, 2):
        torch.set_num_threads(count)
        label = f"local, {count} thread{'s' if count > 1 else ''}"
        rows.append((label, *folder_run(source, work / f"local_{count}_threads", None), 1))
    torch.set_num_threads(threads)
    return rows


def ray_rows(source: Path, work: Path) -> list[tuple[str, float, float, int]]:
    """The same over Ray (started) with 1 and 2 single-CPU workers."""
    rows = []
    for workers in (1, 2):
        label = f"Ray, {workers} worker{'s' if workers > 1 else ''} x 1 CPU"
        cluster = ClusterSettings(workers=workers, cpus_per_worker=1)
        rows.append((label, *folder_run(source, work / f"ray{workers}", cluster), workers))
    return rows


def folder_report(rows: list, rerun_seconds: float, init_seconds: float) -> None:
    columns = ("run", "wall s (whole run)", "photos / min (whole run)")
    cells = [
        [label, f"{wall:.1f}", f"{60 * PHOTOS / wall:.1f}", f"{steady * workers:.2f}"]
        for label, wall, steady, workers in rows
    ]
    print(table((*columns, "s / photo / worker (steady)"), cells))
    local_one, ray_one, rate = rows[0][2], rows[2][2], 60 / rows[3][2]
    print(f"\n- a rerun over the finished folder (every output exists): {rerun_seconds:.2f} s")
    print(f"- `ray.init` (local cluster, 2 CPUs): {init_seconds:.1f} s, once per run")
    print(
        "- Ray's per-item overhead, steady state, one single-thread worker against the local "
        "single-thread loop: "
        f"{ray_one - local_one:+.2f} s per photo ({100 * (ray_one / local_one - 1):+.1f} %)"
    )
    print(
        f"- projection: a machine like this one (2 cores, 2 workers) does about {rate:.0f} "
        "photos/min at these settings; "
        f"N such machines about N x {rate:.0f}, as items are independent and only the driver's "
        "bookkeeping is shared"
    )


def seams_table(only: str = "") -> str:
    """Seam against inside-chunk warping error for each case (two Ray workers); `only`: the cases
    whose row contains it."""
    rows = []
    for clip, overlap, chunk, heads, hold, first in SEAM_CASES:
        start = "from the shot's first result" if heads else "cold"
        budget = f"{first} iterations" if first else "default (300, early stop)"
        case = [clip, overlap, chunk, f"{overlap / chunk:.0%}", start, hold or "off", budget]
        if only not in row(case):
            continue
        seam, inside, dis_ratio = seam_ratio(CLIPS[clip], overlap, chunk, heads, hold, first)
        figures = [f"{seam:.2e}", f"{inside:.2e}", f"{seam / inside:.2f}", f"{dis_ratio:.2f}"]
        rows.append([*case, *figures])
        print(row(rows[-1]), file=sys.stderr, flush=True)
    return table(SEAM_COLUMNS, rows)


def start_ray() -> float:
    """A local Ray cluster of 2 CPUs; the seconds `ray.init` took."""
    import ray

    options = {"num_cpus": 2, "namespace": "stylize", "log_to_driver": False}
    return timed(ray.init, **options, include_dashboard=False)[1]


def seams_only(only: str) -> None:
    import ray

    start_ray()
    print(heading("Ray chunk seams — `python -m benchmarks.bench_cluster --seams`"))
    print("96 px, two chunks on 2 workers:\n")
    print(seams_table(only))
    ray.shutdown()


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--seams", nargs="?", const="", metavar="TEXT", help="only the video seams (rows with TEXT)"
    )
    args = parser.parse_args()
    if args.seams is not None:
        return seams_only(args.seams)
    import ray

    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    source = make_folder(work / "in")
    print(heading("make bench-cluster", f"ray {ray.__version__}"))
    print(
        f"{PHOTOS} photos (tubingen, golden_gate), {SETTINGS.size} px, {SETTINGS.iterations} "
        "iterations, starry_night.\n",
        flush=True,
    )
    rows = local_rows(source, work)
    # everything exists: resume check only
    _, rerun_seconds = timed(
        stylize_folder, source, work / "local_2_threads", [STYLE], style_settings=SETTINGS
    )
    init_seconds = start_ray()
    rows += ray_rows(source, work)
    seams = seams_table()
    ray.shutdown()
    folder_report(rows, rerun_seconds, init_seconds)
    print(
        "\nVideo in two chunks on 2 workers (96 px, later frames the defaults), "
        "warping error per frame pair:\n"
    )
    print(seams)
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
    default budget; later frames the defaults); and the ratio of the two judged with DIS's own
    flow (no camera correction)."""
    from pipeline.temporal import WarpingError
    from pipeline.video_io import Reader, probe
    from pipeline.video_job import stylize_video

    info, count = probe(clip), 2 * chunk - overlap
    output = Path(tempfile.mkdtemp()) / "out.mp4"
    cluster = ClusterSettings(
        workers=2, cpus_per_worker=1, chunk_frames=chunk, overlap_frames=overlap, shot_heads=heads
    )
    stylize_video(
        clip,
        [STYLE],
        output,
        style_settings=seam_style(first),
        video=VideoSettings(max_frames=count, hold_still=hold),
        cluster=cluster,
    )
    out = probe(output)
    error, dis_error = WarpingError(), WarpingError(flow="dis-raw")
    with (
        Reader(info, (out.width, out.height), 0.0, count / float(info.fps)) as a,
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
    if first:
        return StyleSettings(size=size, iterations=first, tolerance=0.0)
    return StyleSettings(size=size)


def seam_and_inside(errors: list[float], chunk: int, overlap: int) -> tuple[float, float]:
    """Mean warping error of the pairs from the last frame before the overlap to the first after it,
    and of the other pairs, for two chunks of `chunk` frames."""
    start = chunk - overlap  # first frame of the second chunk
    inside = errors[: start - 1] + errors[chunk:]
    return statistics.mean(errors[start - 1 : chunk]), statistics.mean(inside)


if __name__ == "__main__":
    main()
