"""The image and folder paths give the same bytes as a reference commit of main (REFERENCE, run
from `git archive` in the same venv, on the same machine). Video frames are not compared: the
decode has changed since (colour tags read exactly), and the work folder's `SCHEMA` says so."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import stylize_command, data_file

ROOT = Path(__file__).resolve().parents[1]
# main before the image and folder paths were restructured
REFERENCE = "f4a7c7a011740ddec58ca6600a8cac34006da27c"
TINY = ["--precision", "fp32", "--device", "cpu"]


def archived_tree(tmp_path_factory, commit: str) -> Path:
    """The files of `commit`, from `git archive`, in a folder of their own."""
    tree = tmp_path_factory.mktemp(commit[:10])
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(
            f"commit {commit[:10]} is not in this clone ({archive.stderr.decode().strip()[:100]})"
        )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


@pytest.fixture(scope="module")
def reference_tree(tmp_path_factory) -> Path:
    return archived_tree(tmp_path_factory, REFERENCE)


def run_both(
    reference: Path, work: Path, *args: str, after: tuple[str, ...] = ()
) -> tuple[Path, Path]:
    """The same command line from the reference tree and from this one (plus `after`: options that
    restore an old default), each writing under its own folder."""
    outputs = []
    for name, tree in (("before", reference), ("after", ROOT)):
        folder = work / name
        folder.mkdir(parents=True)
        extra = after if name == "after" else ()
        command = stylize_command(
            *(arg.replace("{out}", str(folder)) for arg in args), *extra, *TINY
        )
        done = subprocess.run(
            command, cwd=tree, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        assert done.returncode == 0, f"{name}: {done.stderr[-600:]}"
        outputs.append(folder)
    return outputs[0], outputs[1]


def same_files(before: Path, after: Path, pattern: str) -> int:
    names = sorted(p.relative_to(before) for p in before.glob(pattern))
    assert names and names == sorted(p.relative_to(after) for p in after.glob(pattern))
    for name in names:
        assert (before / name).read_bytes() == (after / name).read_bytes(), f"{name} differs"
    return len(names)


@pytest.mark.slow
def test_image_and_folder_give_the_same_bytes(reference_tree, tmp_path, tubingen, starry_night):
    before, after = run_both(
        reference_tree,
        tmp_path,
        "image",
        str(tubingen),
        "-s",
        str(starry_night),
        "-o",
        "{out}/t.png",
        "--size",
        "64",
        "--iterations",
        "12",
    )
    assert same_files(before, after, "t.png") == 1
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    shutil.copy(tubingen, photos / "a.jpg")
    shutil.copy(data_file("contents/golden_gate.jpg"), photos / "sub" / "b.jpg")
    before, after = run_both(
        reference_tree,
        tmp_path / "folder",
        "folder",
        str(photos),
        "-s",
        str(starry_night),
        "-o",
        "{out}/styled",
        "--size",
        "48",
        "--iterations",
        "6",
    )
    # two photos, and each one's two gallery thumbnails
    assert same_files(before, after, "styled/**/*.jpg") == 6


# main when what the flow cannot carry began to start from the result's own painted patches
FRAMES_REFERENCE = "fcfc48c14278fe27e5b4e1927777c9d21073c948"


@pytest.fixture(scope="module")
def frames_reference_tree(tmp_path_factory) -> Path:
    return archived_tree(tmp_path_factory, FRAMES_REFERENCE)


@pytest.mark.parametrize(
    "extra",
    [(), pytest.param(("--hold-still", "0.03"), marks=pytest.mark.slow)],
    ids=["defaults", "hold-still"],
)
def test_video_frames_are_the_same_bits_as_the_reference(
    frames_reference_tree, tmp_path, starry_night, extra
):
    """car-detection where a car enters the still car park: warm starts along the still-aware flow,
    the photo check, restores, disocclusions and the long-term frames (t-1, t-2, t-4), at the
    default settings but a short first frame; each frame as lossless PNG."""
    clip = data_file("videos/car-detection.mp4")
    before, after = run_both(
        frames_reference_tree,
        tmp_path,
        "video",
        str(clip),
        "-s",
        str(starry_night),
        "-o",
        "{out}/frames/",
        "--size",
        "96",
        "--iterations",
        "20",
        "--start",
        "4.8",
        "--max-frames",
        "7",
        *extra,
    )
    assert same_files(before, after, "frames/*.png") == 7
