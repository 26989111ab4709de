"""Soak benchmark: real runs that last longer than 15 minutes, as a user's overnight run.

Each case runs the `stylize` command line in a child process, its output to a log file (never an
unread pipe), samples the resident memory of the process and its ffmpeg children every minute,
and checks the result: frame count, frame rate, duration and audio of a video equal the input's;
every photo of a folder done and linked from a valid gallery.

  car      the whole car-detection.mp4 (377 frames, AAC audio)
  bottle   the whole bottle-detection.mp4 (1189 frames, a fixed camera) with --hold-still 0.03
  phone    car-detection.mp4 made into a phone's clip: HEVC 10-bit HLG (bt2020), variable frame
           rate, rotated 90 degrees, two audio tracks and a creation time
  lavfi    a ten-minute clip made with ffmpeg's lavfi sources (moving testsrc2, sine audio)
  folder   500 generated photos of assorted sizes in a tree

Run: make bench-long [ARGS="car lavfi folder --car-size 320 --devices cpu,cpu"]; `--kill-after 5`
kills each run with SIGKILL after 5 minutes and starts it again. Prints markdown for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import html.parser
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from benchmarks.harness import CLIPS, ROOT, STYLE, argument_parser, flags, heading
from pipeline.video_io import ffmpeg_binary, probe
from pipeline.work_folder import read_checkpoint

SAMPLE_EVERY = 60.0


@dataclass
class Soak:
    name: str
    command: list[str]
    wall: float = 0.0
    returncode: int | None = None
    # (minute, MiB of the process tree)
    rss_mib: list[tuple[float, float]] = field(default_factory=list)
    # the video work folders' size at each sample
    work_mib: list[float] = field(default_factory=list)
    checks: dict[str, object] = field(default_factory=dict)

    def sample(self, minute: float, pid: int, work: Path) -> None:
        self.rss_mib.append((minute, tree_rss_mib(pid)))
        self.work_mib.append(folder_mib(work.glob(".*.frames-*")))
        print(f"  {self.name}: {minute:.1f} min, {self.rss_mib[-1][1]:.0f} MiB", file=sys.stderr)


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants (ffmpeg children included)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        child = int(entry.name)
        children.setdefault(int(fields["PPid"]), []).append(child)
        rss[child] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo += children.get(current, [])
    return total / 1024


def folder_mib(folders) -> float:
    return sum(f.stat().st_size for d in folders for f in d.rglob("*") if f.is_file()) / 2**20


def soak(name: str, args: list[str], work: Path, kill_after: float | None = None) -> Soak:
    """Run `stylize ARGS` to the end, sampling memory each minute. `kill_after`: minutes after
    which the run is killed with SIGKILL (a power cut) and started again, once."""
    run = Soak(name, [sys.executable, "-m", "cli.main", *args])
    log = work / f"{name}.log"
    start = time.monotonic()
    with open(log, "wb") as sink:
        for deadline in ([start + kill_after * 60] if kill_after else []) + [None]:
            process = subprocess.Popen(
                run.command,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
            next_sample = time.monotonic() + 10.0  # once the network is loaded, then each minute
            while process.poll() is None:
                time.sleep(1.0)
                now = time.monotonic()
                if now >= next_sample:
                    run.sample((now - start) / 60, process.pid, work)
                    next_sample = now + SAMPLE_EVERY
                if deadline and now >= deadline:
                    process.kill()
                    process.wait()
                    run.checks["at the kill"] = work_folder_state(work)
    run.wall, run.returncode = time.monotonic() - start, process.returncode
    tail = log.read_text(errors="replace").strip().splitlines()[-2:]
    run.checks["log tail"] = " / ".join(tail)[-300:]
    return run


def work_folder_state(work: Path) -> str:
    """The frames a killed video run left, and the frame of its last checkpoint."""
    states = []
    for folder in work.glob(".*.frames-*"):
        checkpoint = read_checkpoint(folder)
        frame = checkpoint.frame if checkpoint else None
        states.append(f"{len(list(folder.glob('0*.png')))} frames, checkpoint at frame {frame}")
    return "; ".join(states) or "no work folder"


def video_checks(source: Path, output: Path) -> dict[str, object]:
    if not output.is_file():
        return {"output": "missing"}
    into, out = probe(source), probe(output)
    return {
        "frames": f"{out.frames} / {into.frames}",
        "fps": f"{out.fps} / {into.fps}",
        "duration s": f"{out.duration:.3f} / {into.duration:.3f}",
        "audio": f"{out.audio} / {into.audio}",
        "equal": (out.frames, out.fps, out.audio) == (into.frames, into.fps, into.audio)
        and abs(out.duration - into.duration) < 1 / float(into.fps),
    }


def ffmpeg(*args: str) -> None:
    quiet = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
    }
    subprocess.run([ffmpeg_binary(), "-v", "error", "-y", *args], check=True, **quiet)


def lavfi_clip(path: Path, seconds: int, fps: int, size: str) -> Path:
    video, audio = f"testsrc2=size={size}:rate={fps}", "sine=frequency=440:sample_rate=44100"
    encode = "-c:v libx264 -pix_fmt yuv420p -c:a aac -shortest".split()
    sources = ["-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio]
    ffmpeg(*sources, "-t", str(seconds), *encode, str(path))
    return path


# HEVC 10-bit HLG in bt2020, the input's frame times kept, the clip's audio and a second track
PHONE_ENCODE = (
    "-map 0:v -map 0:a -map 1:a -fps_mode passthrough -c:v libx265 -crf 20 -x265-params "
    "log-level=error -colorspace bt2020nc -color_primaries bt2020 -color_trc arib-std-b67 "
    "-color_range tv -c:a aac -shortest"
).split()


def phone_clip(source: Path, path: Path) -> Path:
    """`source` as a phone writes it: HEVC 10-bit HLG, every 8th frame held twice as long,
    rotated, two audio tracks."""
    frame = f"1/{float(probe(source).fps)}"
    hlg = (
        "zscale=transferin=709:primariesin=709:matrixin=709:rangein=limited:"
        "transfer=arib-std-b67:primaries=2020:matrix=2020_ncl:range=limited:npl=100,"
        "format=yuv420p10le,"
        f"setpts='(N+floor(N/8))*{frame}/TB'"
    )
    rotated = ["-noautorotate", "-display_rotation", "90", "-i", str(source)]
    sine = ["-f", "lavfi", "-i", "sine=frequency=660"]
    created = ["-metadata", "creation_time=2026-07-14T18:30:00Z"]
    ffmpeg(*rotated, *sine, "-vf", hlg, *PHONE_ENCODE, *created, str(path))
    return path


def phone_checks(source: Path, output: Path) -> dict[str, object]:
    """A phone clip's output: every frame at its input time, both audio tracks, upright, the
    creation time kept."""
    if not output.is_file():
        return {"output": "missing"}
    into, out = probe(source), probe(output)
    offset = out.times[0] - into.times[0]
    drift = max((abs(a - b - offset) for a, b in zip(out.times, into.times)), default=float("inf"))
    created = [container_tag(path, "creation_time") for path in (source, output)]
    return {
        "frames": f"{out.frames} / {into.frames}",
        "variable rate": f"{out.variable_rate} / {into.variable_rate}",
        "largest time error ms": round(drift * 1000, 3),
        "audio": f"{out.audio} / {into.audio}",
        "size": f"{out.width}x{out.height} (input {into.width}x{into.height}, rotation "
        f"{into.rotation})",
        "creation time": " / ".join(created),
        "equal": out.frames == into.frames
        and drift <= 1e-3
        and len(out.audio) == len(into.audio) == 2
        and (out.width < out.height) == (into.width < into.height)
        and created[0] == created[1],
    }


def container_tag(path: Path, tag: str) -> str:
    with av.open(str(path)) as container:
        return str(container.metadata.get(tag, ""))


def make_photos(folder: Path, count: int) -> Path:
    """`count` photos in a tree of ten folders: sizes 160-800 px, JPEG and PNG, smooth shapes and
    noise."""
    rng = np.random.default_rng(0)
    for index in range(count):
        width, height = (int(v) for v in rng.integers(160, 800, 2))
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        base = np.stack(
            [
                np.sin(xx / rng.uniform(10, 80) + c) * np.cos(yy / rng.uniform(10, 80) - c)
                for c in range(3)
            ],
            -1,
        )
        image = np.clip((base * 0.4 + 0.5) * 255 + rng.normal(0, 8, base.shape), 0, 255).astype(
            np.uint8
        )
        cv2.circle(
            image,
            (int(rng.integers(0, width)), int(rng.integers(0, height))),
            int(rng.integers(10, 80)),
            tuple(int(v) for v in rng.integers(0, 255, 3)),
            -1,
        )
        path = (
            folder / f"set{index % 10}" / f"photo{index:03d}.{'png' if index % 5 == 0 else 'jpg'}"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image)
    return folder


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.figures = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.figures += tag == "figure" and attrs.get("class") == "done"
        self.links += [value for key, value in attrs.items() if key in ("href", "src") and value]


def folder_checks(output: Path, count: int) -> dict[str, object]:
    report = json.loads((output / "report.json").read_text())
    parser = _Links()
    parser.feed((output / "index.html").read_text())
    broken = [link for link in parser.links if not (output / link).resolve().is_file()]
    return {
        "report counts": report["counts"],
        "gallery figures": parser.figures,
        "broken gallery links": len(broken),
        "equal": report["counts"].get("done", 0) + report["counts"].get("skipped", 0) == count
        and parser.figures == count
        and not broken,
    }


def markdown(run: Soak) -> str:
    first, last = run.rss_mib[0][1] if run.rss_mib else 0, run.rss_mib[-1][1] if run.rss_mib else 0
    peak = max((mib for _, mib in run.rss_mib), default=0)
    samples = ", ".join(f"{mib:.0f}" for _, mib in run.rss_mib)
    lines = [
        f"### {run.name}",
        "",
        f"`stylize {' '.join(run.command[3:])}`",
        "",
        "| wall | exit | RSS at start | RSS at end | peak sampled | growth start to end |",
        "|---|---|---|---|---|---|",
        f"| {run.wall / 60:.1f} min | {run.returncode} | {first:.0f} MiB | {last:.0f} MiB | "
        f"{peak:.0f} MiB | "
        f"{(last - first) / first * 100 if first else 0:+.1f} % |",
        "",
        f"RSS each minute (MiB): {samples}",
        "",
    ]
    if any(run.work_mib):
        lines += [
            f"Work folder each minute (MiB): {', '.join(f'{mib:.1f}' for mib in run.work_mib)}",
            "",
        ]
    lines += [f"- {key}: {value}" for key, value in run.checks.items()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Case:
    label: str
    arguments: list[str]  # of `stylize`
    check: Callable[[], dict[str, object]]  # of the result, once the run is over


def video_case(
    label: str, source: Path, output: Path, size: int, check=None, **options: object
) -> Case:
    """`stylize video` of `source` at `size`, with `options`; its output checked against the
    source with `check` (default: video_checks)."""
    options = flags(size=size, **options, overwrite=True)
    arguments = ["video", str(source), "-s", str(STYLE), "-o", str(output), *options]
    return Case(label, arguments, lambda: (check or video_checks)(source, output))


def folder_case(args: argparse.Namespace, work: Path) -> Case:
    source, output = make_photos(work / "photos", args.photos), work / "photos-styled"
    options = flags(size=args.photo_size, iterations=args.photo_iterations)
    arguments = ["folder", str(source), "-s", str(STYLE), "-o", str(output), *options]
    return Case(
        f"folder of {args.photos} photos", arguments, lambda: folder_checks(output, args.photos)
    )


CASES: dict[str, Callable[[argparse.Namespace, Path], Case]] = {
    "car": lambda args, work: video_case(
        "car-detection, whole clip", CLIPS["car"], work / "car-styled.mp4", args.car_size
    ),
    "bottle": lambda args, work: video_case(
        "bottle-detection, whole clip, --hold-still 0.03",
        CLIPS["bottle"],
        work / "bottle-styled.mp4",
        args.bottle_size,
        hold_still=0.03,
    ),
    "phone": lambda args, work: video_case(
        "car-detection as a phone's clip (HEVC 10-bit HLG, VFR, rotated, two audio tracks)",
        phone_clip(CLIPS["car"], work / "phone.mov"),
        work / "phone-styled.mp4",
        args.phone_size,
        phone_checks,
    ),
    "lavfi": lambda args, work: video_case(
        f"ten-minute lavfi clip ({600 * args.lavfi_fps} frames)",
        lavfi_clip(work / "lavfi-10min.mp4", 600, args.lavfi_fps, "320x180"),
        work / "lavfi-styled.mp4",
        args.lavfi_size,
    ),
    "folder": folder_case,
}


def parse_args() -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument(
        "cases", nargs="*", help="car, bottle, phone, lavfi, folder (default: car, lavfi, folder)"
    )
    parser.add_argument("--car-size", type=int, default=320)
    parser.add_argument("--phone-size", type=int, default=256)
    parser.add_argument("--bottle-size", type=int, default=192)
    parser.add_argument("--lavfi-fps", type=int, default=2)
    parser.add_argument("--lavfi-size", type=int, default=160)
    parser.add_argument("--photos", type=int, default=500)
    parser.add_argument("--photo-size", type=int, default=128)
    parser.add_argument("--photo-iterations", type=int, default=15)
    parser.add_argument(
        "--work", type=Path, help="where inputs and outputs go (default: a temporary folder)"
    )
    parser.add_argument(
        "--devices", help="every case with --devices (cpu,cpu: two worker processes here)"
    )
    parser.add_argument(
        "--kill-after", type=float, help="minutes: each run killed (SIGKILL) then and rerun, once"
    )
    parser.add_argument(
        "--keep-frames", action="store_true", help="video cases keep their work folders"
    )
    args = parser.parse_args()
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case {', '.join(sorted(unknown))}: use {', '.join(CASES)}")
    return args


def main() -> None:
    args = parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-long-"))
    work.mkdir(parents=True, exist_ok=True)
    print(heading("make bench-long"), flush=True)
    for name in args.cases or ["car", "lavfi", "folder"]:
        case = CASES[name](args, work)
        if args.devices:
            case.arguments.extend(["--devices", args.devices])
        if args.keep_frames and case.arguments[0] == "video":
            case.arguments.append("--keep-frames")
        run = soak(case.label, case.arguments, work, args.kill_after)
        run.checks.update(case.check())
        print(markdown(run), flush=True)


if __name__ == "__main__":
    main()
