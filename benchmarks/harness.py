"""What the benchmarks share: where the data is, a measurement in a child process of its own (its
JSON result, wall time and peak RSS), timing, command lines, the standard clips decoded or
stylized in memory, and markdown tables under a heading that names the machine and the date.

A child runs `python -m benchmarks.harness MODULE FUNCTION ARGS RESULT`: it imports MODULE, calls
FUNCTION with the JSON list ARGS and writes the return value, with the process's peak RSS, to the
file RESULT. Its stdout goes to the parent's stderr, so that the parent's stdout is the report.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
IMAGES = ROOT / "docs" / "images"
STYLE = DATA / "styles" / "starry_night.jpg"
TUBINGEN = DATA / "contents" / "tubingen.jpg"
GOLDEN_GATE = DATA / "contents" / "golden_gate.jpg"
CLIPS = {
    "car": DATA / "videos" / "car-detection.mp4",
    "bottle": DATA / "videos" / "bottle-detection.mp4",
}


def require(*paths: Path) -> None:
    """Stop with a message when the shared benchmark data is not beside the repository."""
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        sys.exit(f"{', '.join(missing)}: benchmark data not found (../shared/data)")


@dataclass(frozen=True)
class ChildRun:
    result: Any  # what the function returned, through JSON
    wall_s: float  # the whole child process, interpreter start included
    peak_rss_mib: float  # the child's own peak (VmHWM), read as the function returns


class ChildFailed(RuntimeError):
    pass


def module_name(function: Callable) -> str:
    """The importable name of `function`'s module, also when it runs as `python -m`."""
    name = function.__module__
    if name == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is None:
            raise ChildFailed(f"run as `python -m benchmarks.<name>` to run {function.__name__}")
        name = spec.name
    return name


def run_child(function: Callable, *args: object) -> ChildRun:
    """`function(*args)` in a fresh Python process; `function` is a module-level function of an
    importable module, `args` and its result JSON values (paths are passed as strings)."""
    call = f"{function.__name__}{args}"
    with tempfile.TemporaryDirectory(prefix="bench-child-") as folder:
        answer = Path(folder) / "result.json"
        command = [sys.executable, "-m", "benchmarks.harness", module_name(function)]
        command += [function.__name__, json.dumps(args, default=str), str(answer)]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=sys.stderr)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise ChildFailed(f"{call}: exit {done.returncode}")
        out = json.loads(answer.read_text())
    return ChildRun(out["result"], wall, out["peak_rss_mib"])


# Forks the command from this small process and reports the command's own peak RSS: a child forked
# straight from a large process (a benchmark that imported torch) inherits that process's peak.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(f"peak-rss-kib {usage.ru_maxrss}", file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass
class CommandRun:
    returncode: int
    output: str  # stdout and stderr
    wall_s: float
    peak_rss_mib: float


def run_command(command: list[str], env: dict[str, str] | None = None) -> CommandRun:
    """`command` (e.g. a `stylize` command line) with its wall time and its own peak RSS; `env`:
    variables set for it alone."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *command],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    *rest, last = done.stderr.rstrip().splitlines() or [""]
    peak = int(last.split()[-1]) / 1024 if last.startswith("peak-rss-kib") else float("nan")
    return CommandRun(done.returncode, done.stdout + "\n".join(rest), wall, peak)


def child_main(module: str, function: str, args: str, answer: str) -> None:
    from pipeline.device import peak_rss_bytes

    result = getattr(importlib.import_module(module), function)(*json.loads(args))
    peak = peak_rss_bytes() / 2**20
    Path(answer).write_text(json.dumps({"result": result, "peak_rss_mib": peak}))


def timed(function: Callable, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """`function`'s return value and the seconds it took."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


class Stamps:
    """A callback that notes the time of each call: seconds between events (frames, items,
    evaluations) of a run that reports them."""

    def __init__(self, start: bool = False) -> None:
        self.times: list[float] = [time.perf_counter()] if start else []

    def __call__(self, *_: object) -> None:
        self.times.append(time.perf_counter())

    def gaps(self, skip: int = 0) -> list[float]:
        """Seconds between consecutive stamps, from stamp `skip` on."""
        times = self.times[skip:]
        return [b - a for a, b in zip(times, times[1:])]


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark's command line, its module docstring as the help text."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def flags(**options: object) -> list[str]:
    """Command-line options: size=256 gives --size 256, no_verbose=True --no-verbose; None and
    False leave the option out."""
    words: list[str] = []
    for name, value in options.items():
        if value is None or value is False:
            continue
        words.append(f"--{name.replace('_', '-')}")
        if value is not True:
            words.append(str(value))
    return words


def machine(device: str = "cpu") -> str:
    """The GPU's name where `device` resolves to CUDA, else the CPU's description."""
    from pipeline.device import cpu_description, resolve_device

    if resolve_device(device).type == "cuda":
        import torch

        return torch.cuda.get_device_name(resolve_device(device))
    return cpu_description()


def heading(title: str, *details: str, device: str = "cpu") -> str:
    """A docs/benchmarks.md section heading: the title, today's date, the machine, `details`."""
    return f"## {title} — {date.today()}, {', '.join([machine(device), *details])}\n"


def row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def table(columns: Sequence[str], rows: Iterable[Iterable[object]] = ()) -> str:
    """A markdown table; with no rows, its head (print `row(...)` lines under it as they come)."""
    return "\n".join([row(columns), "|" + " --- |" * len(columns), *map(row, rows)])


def decode(clip: Path, count: int, size: int) -> list:
    """The first `count` frames of `clip` at `size` (long side), RGB uint8: with ffmpeg, or PyAV
    where no ffmpeg is found."""
    from pipeline.video_io import Reader, even_size, ffmpeg_binary, probe

    info = probe(clip)
    width, height = even_size(info.width, info.height, size)
    try:
        ffmpeg_binary()
    except Exception:  # noqa: BLE001 - a machine with only PyAV
        import av
        import cv2

        with av.open(str(clip)) as container:
            frames = (f.to_ndarray(format="rgb24") for f in container.decode(video=0))
            return [
                cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA)
                for _, f in zip(range(count), frames)
            ]
    with Reader(info, (width, height)) as reader:
        return list(reader.frames(count))


def stylize_in_memory(
    frames: list,
    frame_stylizer,
    folder: Path,
    video,
    on_frame: Callable | None = None,
    on_refined: Callable | None = None,
) -> Path:
    """`frames` stylized into `folder` as `stylize video` does, from frames in memory rather than
    a file: the sequential pass, then passes 2 to `video.passes` in alternating directions. The
    folder of the last pass; `on_frame(report)` per sequential frame, `on_refined(position,
    index, skipped, stats)` per refined one."""
    from pipeline.frames import stylize_frames
    from pipeline.passes import pass_folder, refine_pass

    done = stylize_frames(frames, frame_stylizer, folder, video, len(frames), on_frame)
    order = list(enumerate(frames))
    for number in range(2, video.passes + 1):
        direction = order[::-1] if number % 2 == 0 else order
        refine_pass(direction, frame_stylizer, folder, number, done.cuts, on_refined)
    return pass_folder(folder, video.passes)


def host_reads():
    """A context counting the reads of a tensor's value by the host (.item(), float(), bool(),
    a tensor passed as `alpha=`): on a GPU, each one waits for the device to drain. Its `reads`
    is the count."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    read = torch.ops.aten._local_scalar_dense.default

    class HostReads(TorchDispatchMode):
        reads = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.reads += func is read
            return func(*args, **(kwargs or {}))

    return HostReads()


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: python -m benchmarks.harness MODULE FUNCTION ARGS RESULT (see run_child)")
    child_main(*sys.argv[1:])
