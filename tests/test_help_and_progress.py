"""What a person meets first: --help in panels with the common options on the first screen, presets
that an explicit option beats, removed options refused with what to use instead, and progress as
plain lines with an ETA when the output goes to a log file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import REMOVED, app
from pipeline.settings import PRESETS
from tests.conftest import stylize_command, data_file
from tests.test_video_io import lavfi_clip

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
COMMON = ("--output", "--style", "--style-weight", "--size", "--preset")


def help_text(command: str) -> str:
    result = runner.invoke(
        app, [command, "--help"], env={"COLUMNS": "80", "TERM": "dumb"}, terminal_width=80
    )
    assert result.exit_code == 0, result.output
    return result.output


def panels(text: str) -> list[str]:
    return re.findall(r"╭─ (.+?) ─", text)


@pytest.mark.parametrize("command", ["image", "video", "folder"])
def test_help_is_grouped_and_the_common_options_come_first(command):
    text = help_text(command)
    names = panels(text)
    assert names[names.index("Input and output") : names.index("Input and output") + 3] == [
        "Input and output",
        "Style",
        "Quality and speed",
    ]
    assert names[-1] == "Advanced"
    first_screen = "\n".join(text.splitlines()[:70])
    assert all(option in first_screen for option in COMMON), first_screen
    advanced = text[text.index("╭─ Advanced") :]
    assert "--style-layers" in advanced and "--style-weight" not in advanced
    assert max(len(line) for line in text.splitlines()) <= 80


def test_video_help_has_its_own_panels():
    names = panels(help_text("video"))
    assert {"Video consistency", "Cluster"} <= set(names)
    consistency = help_text("video").split("╭─ Video consistency")[1].split("╰")[0]
    assert "--temporal-weight" in consistency and "--hold-still" in consistency


@pytest.fixture
def captured(monkeypatch):
    """The settings the library receives from `stylize image`, without running it."""
    import pipeline.image_job

    seen = {}

    def record(content, style, output, *, settings, **rest):
        seen["settings"] = settings
        raise SystemExit(0)

    monkeypatch.setattr(pipeline.image_job, "stylize_file", record)
    return seen


def test_a_preset_sets_its_values_and_an_explicit_option_beats_it(
    captured, tubingen, starry_night, tmp_path
):
    base = ["image", str(tubingen), "-s", str(starry_night), "-o", str(tmp_path / "out.jpg")]
    runner.invoke(app, [*base, "--preset", "draft"])
    draft = captured["settings"]
    assert (draft.size, draft.iterations) == (
        PRESETS["draft"]["size"],
        PRESETS["draft"]["iterations"],
    )
    runner.invoke(app, [*base, "--preset", "draft", "--size", "300"])
    assert (captured["settings"].size, captured["settings"].iterations) == (
        300,
        PRESETS["draft"]["iterations"],
    )
    # the default's value, given: still wins
    runner.invoke(app, [*base, "--preset", "draft", "--size", "512"])
    assert captured["settings"].size == 512
    runner.invoke(app, base)
    assert (captured["settings"].size, captured["settings"].iterations) == (512, 300)


def test_the_video_preset_reaches_the_later_frames(monkeypatch, tmp_path, starry_night):
    import pipeline.video_job

    seen = {}

    def record(source, style, output, *, video, **rest):
        seen["video"] = video
        raise SystemExit(0)

    monkeypatch.setattr(pipeline.video_job, "stylize_video", record)
    args = [
        "video",
        str(data_file("videos/car-detection.mp4")),
        "-s",
        str(starry_night),
        "-o",
        str(tmp_path / "o.mp4"),
    ]
    runner.invoke(app, [*args, "--preset", "best", "--passes", "1"])
    assert (
        seen["video"].iterations_next == PRESETS["best"]["iterations_next"]
        and seen["video"].passes == 1
    )


@pytest.mark.parametrize("option", sorted(REMOVED))
def test_removed_options_are_refused_with_a_hint(option, tmp_path, starry_night):
    args = [
        "video",
        str(tmp_path / "in.mp4"),
        "-s",
        str(starry_night),
        "-o",
        str(tmp_path / "o.mp4"),
        option,
    ]
    result = runner.invoke(
        app, args if option.startswith("--no-") or option == "--still-flow" else [*args, "1"]
    )
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1
    assert (
        lines[0].startswith(f"error: {option} was removed: ") and len(lines[0]) > len(option) + 30
    )


def test_progress_goes_to_a_log_as_plain_lines_with_an_eta(tmp_path, starry_night):
    clip = lavfi_clip(tmp_path / "clip.mp4", frames=5)
    log = tmp_path / "run.log"
    with open(log, "w") as sink:
        done = subprocess.run(
            stylize_command(
                "video",
                str(clip),
                "-s",
                str(starry_night),
                "-o",
                str(tmp_path / "o.mp4"),
                "--size",
                "48",
                "--iterations",
                "3",
                "--iterations-next",
                "1",
                "--evaluations-next",
                "1",
            ),
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    text = log.read_text()
    assert done.returncode == 0, text
    lines = [line for line in text.splitlines() if line.startswith("clip.mp4: ")]
    assert [line.split()[1] for line in lines] == [
        f"{n}/5" for n in range(1, 6)
    ]  # each fifth is a tenth or more
    assert all("eta " in line and "elapsed " in line for line in lines[1:])
    assert not re.search(r"[\x1b\r]", text)  # no terminal control codes in a log
    assert re.search(
        r"wrote .*o\.mp4 +\(5 frames, 5 stylized by this run in \d+ s, 0 scene cuts\)", text
    )


@pytest.fixture
def short_clip(tmp_path):
    (tmp_path / "in").mkdir()
    return lavfi_clip(tmp_path / "in" / "clip.mp4", frames=8)


def test_a_video_dry_run_counts_and_estimates_and_writes_nothing(
    tmp_path, short_clip, starry_night
):
    before = sorted(tmp_path.rglob("*"))
    done = subprocess.run(
        stylize_command(
            "video",
            str(short_clip),
            "-s",
            str(starry_night),
            "-o",
            str(tmp_path / "out" / "o.mp4"),
            "--size",
            "48",
            "--iterations",
            "4",
            "--dry-run",
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert "8 frames at 48x36, 1 shot" in said
    estimate = re.search(r"estimated (\d+) (s|min)", said)
    assert estimate and int(estimate.group(1)) > 0
    assert (
        re.search(r"work folder: about [\d.]+ (bytes|KiB)", said) and "nothing was written" in said
    )
    assert sorted(tmp_path.rglob("*")) == before


def test_the_preview_writes_one_sheet_with_a_tile_per_input_and_weight(
    tmp_path, short_clip, starry_night
):
    import cv2
    from pipeline.preview import LABEL

    sheet = tmp_path / "sheet.png"
    done = subprocess.run(
        stylize_command(
            "preview",
            str(short_clip),
            "-s",
            str(starry_night),
            "-o",
            str(sheet),
            "--size",
            "48",
            "--iterations",
            "15",
            "--style-weights",
            "30,3000",
            "--samples",
            "2",
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "sheet.png"]
    image = cv2.imread(str(sheet))
    tile_w, tile_h = 48, 36
    # header; input row, two weight rows
    assert image.shape[:2] == (LABEL + 3 * (LABEL + tile_h), 2 * tile_w + 3 * 4)
    rows = [image[LABEL + r * (LABEL + tile_h) + LABEL :][:tile_h] for r in range(3)]
    tiles = [
        row[:, 4 + c * (tile_w + 4) :][:, :tile_w].astype(int) for row in rows for c in range(2)
    ]
    # every tile holds a picture, not the sheet's white
    assert all(tile.std() > 5 for tile in tiles)
    assert np.abs(tiles[2] - tiles[0]).mean() > 5  # a stylized tile differs from its input
    assert "2 inputs x 2 style weights" in " ".join(done.stdout.split())


def test_plain_progress_prints_each_tenth_once_and_never_past_the_end(capsys):
    from cli.main import PlainProgress

    progress = PlainProgress("photo.jpg", every=3600)
    try:
        for done in (
            0,
            1,
            2,
            3,
            3,
            3,
            3,
            4,
        ):  # tiles of the last iteration report at the end; a budget can run one over
            progress.show(done, 3, "tile")
    finally:
        progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[1] for line in lines] == ["0/3", "1/3", "2/3", "3/3"]
    assert "eta 0 s" in lines[-1] and "-" not in lines[-1].split("eta")[1]
