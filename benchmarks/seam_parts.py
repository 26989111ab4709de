"""Where a Ray seam comes from the two chunks of `bench_cluster`'s seam case run one
after the other in this process (no Ray), every frame kept lossless, and for each frame of the
overlap the mean squared difference between the two chunks and of each from the shot's first
result; then the seam and inside warping errors of the assembled, unencoded frames, and the seam
pairs' error against the same pairs of one unchunked run (the clip's own motion there).

Run: python -m benchmarks.seam_parts [--clip bottle] [--chunk 60] [--overlap 6] [--first 40]
[--video '{"hold_still": 0.03}']. Prints JSON (differences in units of 1e-4, pixels in [0, 1]).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.bench_cluster import seam_and_inside, seam_style
from benchmarks.harness import CLIPS, STYLE, argument_parser
from pipeline import chunks
from pipeline.engine import Stylizer
from pipeline.settings import VideoSettings
from pipeline.temporal import WarpingError, to_float
from pipeline.video_io import Reader, even_size, probe
from pipeline.work_folder import frame_path, read_frame

SIZE = 96


def run_chunks(
    job: chunks.VideoJob, stylizer: Stylizer, count: int, chunk_frames: int, overlap: int
) -> list[chunks.Chunk]:
    """The shot's first frame, then each chunk, as the Ray workers would make them."""
    planned = chunks.plan_chunks(count, [], chunk_frames, overlap)
    chunks.stylize_shot_start(job, stylizer, planned[0])
    for chunk in planned:
        chunks.stylize_chunk(job, stylizer, chunk)
    return planned


def chunk_frame(job: chunks.VideoJob, chunk: chunks.Chunk, index: int) -> np.ndarray:
    return to_float(read_frame(frame_path(chunks.chunk_folder(job, chunk), index - chunk.start)))


def overlap_differences(
    job: chunks.VideoJob, before: chunks.Chunk, after: chunks.Chunk
) -> list[dict]:
    first = to_float(read_frame(chunks.shot_path(job, 0)))
    rows = []
    for index in range(after.start, before.stop):
        a, b = chunk_frame(job, before, index), chunk_frame(job, after, index)
        rows.append(
            {
                "frame": index,
                "chunks": 1e4 * float(((a - b) ** 2).mean()),
                "before_vs_first": 1e4 * float(((a - first) ** 2).mean()),
                "after_vs_first": 1e4 * float(((b - first) ** 2).mean()),
            }
        )
    return rows


def pair_errors(
    job: chunks.VideoJob, planned: list[chunks.Chunk], count: int, overlap: int
) -> list[float]:
    """The warping error of each pair of the assembled, lossless frames."""
    info, error = probe(job.source), WarpingError()
    with Reader(info, job.size, 0.0, count / float(info.fps)) as reader:
        for frame_in, frame_out in zip(
            reader.frames(count), chunks.assemble(job, planned, overlap)
        ):
            error.add(frame_in, frame_out)
    return error.errors


def seam_errors(
    job: chunks.VideoJob,
    planned: list[chunks.Chunk],
    count: int,
    overlap: int,
    unchunked: list[float],
) -> dict:
    """Mean warping error of the pairs in and around the overlap against the others, and against the
    same pairs of one unchunked run (what the clip's motion there costs anyway)."""
    seam, inside = seam_and_inside(
        pair_errors(job, planned, count, overlap), planned[0].stop, overlap
    )
    same_pairs, _ = seam_and_inside(unchunked, planned[0].stop, overlap)
    return {
        "seam": seam,
        "inside": inside,
        "ratio": seam / inside,
        "unchunked_seam_pairs": same_pairs,
        "ratio_to_unchunked": seam / same_pairs,
    }


def unchunked_errors(job: chunks.VideoJob, stylizer: Stylizer, count: int) -> list[float]:
    """The pair errors of the same frames stylized in one chunk (the sequential run)."""
    single = replace(job, work_dir=job.work_dir / "unchunked")
    planned = chunks.plan_chunks(count, [], count + 1, 0)
    chunks.stylize_chunk(single, stylizer, planned[0])
    return pair_errors(single, planned, count, 0)


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--clip", default="bottle", choices=sorted(CLIPS))
    parser.add_argument("--chunk", type=int, default=60)
    parser.add_argument("--overlap", type=int, default=6)
    parser.add_argument(
        "--first",
        type=int,
        default=0,
        help="the first frame's iterations without early stop (0: the default budget)",
    )
    parser.add_argument("--video", default="{}", help="VideoSettings fields, as JSON")
    parser.add_argument("--work", type=Path, default=Path("/tmp/seam-parts"))
    args = parser.parse_args()
    source = CLIPS[args.clip]
    info, count = probe(source), 2 * args.chunk - args.overlap
    shutil.rmtree(args.work, ignore_errors=True)
    job = chunks.VideoJob(
        source,
        (STYLE,),
        seam_style(args.first, SIZE),
        VideoSettings(max_frames=count, **json.loads(args.video)),
        even_size(info.width, info.height, SIZE),
        args.work,
    )
    stylizer = chunks.job_stylizer(job)  # VGG and the style targets, once for both runs
    planned = run_chunks(job, stylizer, count, args.chunk, args.overlap)
    unchunked = unchunked_errors(job, stylizer, count)
    print(
        json.dumps(
            {
                "overlap": overlap_differences(job, *planned[:2]),
                **seam_errors(job, planned, count, args.overlap, unchunked),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
