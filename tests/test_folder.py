"""`stylize folder`: formats, orientation, bad files reported, resume, kill safety, gallery."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import data_file, folder_command

FAST = ["--size", "32", "--iterations", "3", "--tolerance", "0", "--coarse-to-fine", "off"]
GOOD = [
    "a/tubingen.jpg",
    "b/c/golden_gate.jpg",
    "alpha.png",
    "gray.png",
    "deep16.png",
    "rotated.jpg",
]
BAD = {
    "truncated.jpg": "not a readable image",
    "empty.jpg": "empty file",
    "fake.png": "not a readable image",
}


def make_tree(root: Path) -> Path:
    (root / "a").mkdir(parents=True)
    (root / "b" / "c").mkdir(parents=True)
    shutil.copy(data_file("contents/tubingen.jpg"), root / "a" / "tubingen.jpg")
    shutil.copy(data_file("contents/golden_gate.jpg"), root / "b" / "c" / "golden_gate.jpg")
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (32, 48, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(root / "alpha.png")
    Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8), "L").save(root / "gray.png")
    Image.fromarray((rng.integers(0, 65536, (24, 32))).astype(np.uint16)).save(root / "deep16.png")
    wide = Image.fromarray(rng.integers(0, 256, (20, 40, 3), dtype=np.uint8))
    exif = wide.getexif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees: tall
    wide.save(root / "rotated.jpg", exif=exif)
    (root / "truncated.jpg").write_bytes((root / "a" / "tubingen.jpg").read_bytes()[:3000])
    (root / "empty.jpg").write_bytes(b"")
    (root / "fake.png").write_text("I am text")
    (root / "notes.txt").write_text("not a photo")
    return root


def run(*args) -> object:
    return CliRunner().invoke(app, ["folder", *map(str, args)])


@pytest.fixture
def finished(tmp_path, starry_night):
    source, output = make_tree(tmp_path / "in"), tmp_path / "out"
    result = run(source, "-s", starry_night, "-o", output, *FAST)
    return source, output, starry_night, result


def test_every_good_file_is_done_and_every_bad_one_reported(finished):
    source, output, _, result = finished
    assert result.exit_code == 1, result.output
    for name in GOOD:
        assert (output / name).is_file(), name
    with Image.open(output / "a" / "tubingen.jpg") as image:
        assert image.format == "JPEG" and image.size == (32, 24)
    with Image.open(output / "rotated.jpg") as image:
        assert image.size[1] > image.size[0]  # upright, as displayed
    with Image.open(output / "alpha.png") as image:
        assert image.mode == "RGBA" and image.size == (32, 21)
        assert np.asarray(image)[..., 3].std() > 10  # the alpha came along
    with Image.open(output / "gray.png") as image:
        assert image.mode == "L"
    with Image.open(output / "deep16.png") as image:
        assert image.mode.startswith("I") and np.asarray(image).max() > 255
    report = json.loads((output / "report.json").read_text())
    failed = {
        Path(i["source"]).name: i["reason"] for i in report["items"] if i["status"] == "failed"
    }
    assert set(failed) == set(BAD)
    for name, reason in BAD.items():
        assert reason in failed[name]
    assert not any("notes.txt" in i["source"] for i in report["items"])
    assert report["counts"]["done"] == len(GOOD)
    sources = sorted(p.read_bytes() for p in source.rglob("*") if p.is_file())
    assert len(sources) == len(GOOD) + len(BAD) + 1  # inputs untouched, nothing added


def test_rerun_skips_everything_then_redoes_a_deleted_output(finished):
    source, output, style, _ = finished
    start = time.perf_counter()
    again = run(source, "-s", style, "-o", output, *FAST)
    assert again.exit_code == 0, again.output
    assert time.perf_counter() - start < 5
    assert "nothing to do" in again.output
    (output / "gray.png").unlink()
    before = (output / "alpha.png").stat().st_mtime_ns
    third = run(source, "-s", style, "-o", output, *FAST)
    assert third.exit_code == 0, third.output
    report = json.loads((output / "report.json").read_text())
    assert report["counts"]["done"] == 1 and (output / "gray.png").is_file()
    assert (output / "alpha.png").stat().st_mtime_ns == before


def test_several_styles_one_output_each(tmp_path, starry_night):
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(data_file("contents/golden_gate.jpg"), source / "gg.jpg")
    scream = data_file("styles/the_scream.jpg")
    assert (
        run(source, "-s", starry_night, "-s", scream, "-o", tmp_path / "o1", *FAST).exit_code == 0
    )
    assert {p.name for p in (tmp_path / "o1").glob("*.jpg")} == {
        "gg.starry_night.jpg",
        "gg.the_scream.jpg",
    }
    assert (
        run(
            source,
            "-s",
            starry_night,
            "-s",
            scream,
            "-o",
            tmp_path / "o2",
            "--style-folders",
            *FAST,
        ).exit_code
        == 0
    )
    assert (tmp_path / "o2" / "starry_night" / "gg.jpg").is_file() and (
        tmp_path / "o2" / "the_scream" / "gg.jpg"
    ).is_file()


class GalleryParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.images, self.failed, self._cell = [], [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self.links.append(attrs["href"])
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "td":
            self._cell = attrs.get("class")

    def handle_data(self, data):
        if self._cell:
            self.failed.append((self._cell, data))
            self._cell = None


def test_gallery_links_every_result_and_lists_failures(finished):
    _, output, _, _ = finished
    parser = GalleryParser()
    parser.feed((output / "index.html").read_text())
    targets = {(output / link).resolve() for link in parser.links}
    for name in GOOD:
        assert (output / name).resolve() in targets
    for link in parser.links + parser.images:
        assert (output / link).is_file(), link
    files = [text for cls, text in parser.failed if cls == "file"]
    reasons = [text for cls, text in parser.failed if cls == "reason"]
    for name, reason in BAD.items():
        index = next(i for i, f in enumerate(files) if f.endswith(name))
        assert reason in reasons[index]


def test_dry_run_lists_and_estimates(tmp_path, starry_night):
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(data_file("contents/golden_gate.jpg"), source / "gg.jpg")
    result = run(source, "-s", starry_night, "-o", tmp_path / "out", *FAST, "--dry-run")
    assert result.exit_code == 0, result.output
    assert (
        "gg.jpg ->" in result.output and "1 to do" in result.output and "estimated" in result.output
    )
    assert not (tmp_path / "out" / "gg.jpg").exists()


def test_dry_run_after_a_run_counts_what_it_settled(finished):
    """Neither the done photos nor the unchanged bad ones are listed or estimated again."""
    source, output, style, _ = finished
    result = run(source, "-s", style, "-o", output, *FAST, "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"0 to do, {len(GOOD)} done before, {len(BAD)} failed before" in result.output
    assert "->" not in result.output


def test_bad_arguments_exit_2(tmp_path, starry_night):
    assert run(tmp_path / "absent", "-s", starry_night, "-o", tmp_path / "o").exit_code == 2
    (tmp_path / "in").mkdir()
    same = run(tmp_path / "in", "-s", starry_night, "-o", tmp_path / "in")
    assert same.exit_code == 2 and "input folder" in same.output
    assert run(tmp_path / "in", "-s", tmp_path / "nostyle.jpg", "-o", tmp_path / "o").exit_code == 2


@pytest.mark.slow
def test_kill_mid_batch_leaves_no_partial_output(tmp_path, starry_night):
    output, command = folder_command(
        tmp_path, starry_night, 6, "--size", "96", "--iterations", "25", "--tolerance", "0"
    )
    process = subprocess.Popen(
        command, cwd=Path(__file__).parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list(output.glob("p*.jpg"))) < 2:
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = sorted(output.glob("p*.jpg"))
    assert 2 <= len(done) < 6
    for path in done:
        with Image.open(path) as image:
            image.load()  # complete, decodable files only
    rerun = subprocess.run(command, cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(output.glob("p*.jpg"))) == 6
    assert not list(output.rglob(".*.tmp*"))
    report = json.loads((output / "report.json").read_text())
    assert report["counts"]["skipped"] == len(done) and report["counts"]["done"] == 6 - len(done)


@pytest.mark.slow
def test_dry_run_estimate_counts_the_big_scales_of_a_full_size_photo(tmp_path, starry_night):
    """A 12 MP photo at --size full costs several times its 512 px run: four scales, the top ones
    tiled."""
    from pipeline.batch import estimate_seconds, plan
    from pipeline.settings import FolderSettings, StyleSettings

    source = tmp_path / "in"
    source.mkdir()
    Image.new("RGB", (4032, 3024), (90, 120, 160)).save(source / "phone.jpg")
    items = plan(source, tmp_path / "out", [starry_night], FolderSettings())
    # the whole process's bound: what it holds (about 2 GB after other tests) and tiles of 12 MP
    bound = 10 * 2**30
    small = estimate_seconds(items, StyleSettings(size=512, max_memory=bound), probe_iterations=4)
    full = estimate_seconds(items, StyleSettings(size=None, max_memory=bound), probe_iterations=4)
    assert full > 4 * small
