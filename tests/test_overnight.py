"""Overnight-proof: a truncated input, a full disk, a bad output path, Ctrl-C and SIGTERM
each end with one clear line and the right exit code; nothing half-written; a rerun resumes."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from pipeline.video_io import probe
from tests.conftest import stylize_command, data_file, folder_command
from tests.test_video_io import lavfi_clip

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--size", "64", "--iterations", "4", "--iterations-next", "3", "--precision", "fp32"]
runner = CliRunner()


def one_line_error(result, code: int, *expected: str) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(text in errors[0] for text in expected), result.output
    return errors[0]


def stylize_video(*args) -> object:
    return runner.invoke(app, ["video", *map(str, args), *FAST])


def test_truncated_video_is_refused_before_any_work(tmp_path, starry_night):
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data_file("videos/thanks.mkv").read_bytes()[:30_000])
    output = tmp_path / "out.mp4"
    one_line_error(
        stylize_video(cut, "-s", starry_night, "-o", output),
        2,
        "cut.mkv",
        "only 4 of the 51 frames",
    )
    assert not output.exists() and not list(tmp_path.glob(".out.mp4.*"))


def test_start_past_the_end_is_refused(tmp_path, starry_night):
    clip = lavfi_clip(tmp_path / "clip.mp4", frames=10)
    one_line_error(
        stylize_video(clip, "-s", starry_night, "-o", tmp_path / "out.mp4", "--start", "5"),
        2,
        "--start 5",
        "past the end",
    )


def test_video_output_that_is_a_folder_or_cannot_be_written(tmp_path, starry_night):
    clip = lavfi_clip(tmp_path / "clip.mp4", frames=10)
    folder = tmp_path / "out.mp4"
    folder.mkdir()
    one_line_error(
        stylize_video(clip, "-s", starry_night, "-o", folder, "--overwrite"),
        2,
        "out.mp4: is a folder",
    )
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    one_line_error(
        stylize_video(clip, "-s", starry_night, "-o", blocker / "out.mp4"),
        2,
        "cannot write into this folder",
    )


@contextlib.contextmanager
def small_disk(path: Path, kib: int):
    """A tmpfs of `kib` KiB at `path` (the machines run as root); skips where mounting is not
    allowed."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, leave_kib: int) -> Path:
    """A ballast file that leaves about `leave_kib` KiB free on `disk`."""
    free = shutil.disk_usage(disk).free // 1024
    ballast = disk / "ballast"
    subprocess.run(["fallocate", "-l", f"{max(0, free - leave_kib)}k", str(ballast)], check=True)
    return ballast


def frames_in(disk: Path) -> list[Path]:
    return sorted(disk.glob(".out.mp4.frames-*/0*.png"))


@pytest.mark.slow
def test_full_disk_during_frames_and_during_the_encode(tmp_path, starry_night):
    clip = lavfi_clip(tmp_path / "clip.mp4", frames=30)
    with small_disk(tmp_path / "disk", 4096) as disk:
        output = disk / "out.mp4"
        args = (clip, "-s", starry_night, "-o", output)
        # frames: the disk fills after a few of them
        # frame 0 and its carried curvature (a 64-px frame: 55 KiB a history pair) fit
        ballast = fill(disk, 160)
        one_line_error(stylize_video(*args), 2, "No space left on device")
        kept = frames_in(disk)
        assert 0 < len(kept) < 30 and not output.exists()
        assert not list(disk.rglob("*.tmp*")), "a temporary file was left behind"
        # the encode: every frame is there, the disk fills while ffmpeg writes the video
        ballast.unlink()
        result = stylize_video(*args, "--keep-frames")
        assert result.exit_code == 0, result.output
        output.unlink()
        ballast = fill(disk, 8)
        error = one_line_error(
            stylize_video(*args, "--keep-frames"), 2, "out.mp4", "ffmpeg failed to encode"
        )
        assert "No space left" in error
        assert not output.exists() and not list(disk.rglob("*.tmp*")) and len(frames_in(disk)) == 30
        # space again: the rerun resumes every frame and only encodes
        ballast.unlink()
        result = stylize_video(*args)
        assert result.exit_code == 0, result.output
        assert "0 stylized by this run" in result.output
        assert probe(output).frames == 30


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if (
                entry.name.isdigit()
                and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid
            ):
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def interrupt_midway(
    command: list[str], started, signum: int
) -> tuple[subprocess.CompletedProcess, float, list[int]]:
    """Run `command`, send `signum` once `started()` is true; return the result, seconds to exit,
    children seen."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while not started() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    children = children_of(process.pid)
    process.send_signal(signum)
    sent = time.monotonic()
    out, err = process.communicate(timeout=30)
    return (
        subprocess.CompletedProcess(command, process.returncode, out, err),
        time.monotonic() - sent,
        children,
    )


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_a_video_run_at_once_and_the_rerun_resumes(tmp_path, starry_night, signum):
    clip = lavfi_clip(tmp_path / "clip.mp4", frames=60)
    output = tmp_path / "out.mp4"
    command = stylize_command("video", str(clip), "-s", str(starry_night), "-o", str(output), *FAST)
    result, seconds, children = interrupt_midway(
        command, lambda: len(list(tmp_path.glob(".out.mp4.frames-*/0*.png"))) >= 3, signum
    )
    assert result.returncode == 128 + signum, result.stderr
    assert seconds < 2.0
    assert "Traceback" not in result.stderr and result.stderr.strip().splitlines()[-1].startswith(
        ("interrupted", "terminated")
    )
    assert children and not any(alive(pid) for pid in children), "an ffmpeg child outlived the run"
    assert not output.exists() and not list(tmp_path.rglob("*.tmp*"))
    done = len(list(tmp_path.glob(".out.mp4.frames-*/0*.png")))
    rerun = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{60 - done} stylized by this run" in rerun.stdout
    assert probe(output).frames == 60


@pytest.mark.slow
def test_sigterm_ends_a_folder_run_at_once_and_the_rerun_resumes(tmp_path, starry_night):
    output, command = folder_command(
        tmp_path,
        starry_night,
        8,
        "--size",
        "64",
        "--iterations",
        "30",
        "--tolerance",
        "0",
        "--precision",
        "fp32",
    )
    result, seconds, _ = interrupt_midway(
        command, lambda: len(list(output.glob("p*.jpg"))) >= 2, signal.SIGTERM
    )
    assert result.returncode == 143 and seconds < 2.0, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip().splitlines()[-1].startswith(
        "terminated"
    )
    done = len(list(output.glob("p*.jpg")))
    assert 2 <= done < 8
    rerun = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads((output / "report.json").read_text())
    assert report["counts"]["skipped"] == done and report["counts"]["done"] == 8 - done
