"""Shared fixtures: the real data in ../shared/data and the real embedded weights, loaded once."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

# the tests' own user cache (precision probe, style targets), set before anything reads it
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="stylize-tests-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)

import pytest  # noqa: E402
import torch  # noqa: E402
from torchvision.models import vgg19  # noqa: E402

from pipeline.device import bf16_is_native, cpu_description  # noqa: E402
from pipeline.weights import IMAGENET, VGGWeights, load_embedded  # noqa: E402

# Tests that run bf16 through the whole network: on a CPU that emulates bf16 (AVX2 only) one
# 128 px test took more than 15 minutes. The bf16 maths itself is tested on tiny tensors everywhere.
needs_native_bf16 = pytest.mark.skipif(
    not bf16_is_native("cpu"), reason=f"bf16 is emulated on this CPU: {cpu_description()}"
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_file(relative: str) -> Path:
    path = DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} not present (the shared test data lies beside the repository)")
    return path


@pytest.fixture(autouse=True)
def checkpoint_every_frame(monkeypatch):
    """In-process runs write a checkpoint with every frame, so that a resume test's count of the
    frames made again does not hang on timing; test_checkpoints tests the spaced ones."""
    monkeypatch.setattr("pipeline.carried_state.STATE_WRITE_SHARE", float("inf"))


@pytest.fixture(scope="session")
def embedded_weights() -> VGGWeights:
    return load_embedded()


@pytest.fixture(scope="session")
def random_weights() -> VGGWeights:
    torch.manual_seed(0)
    return VGGWeights(vgg19(weights=None).features.state_dict(), IMAGENET, "random init")


PANNED_FRAMES = 6


class Killed(Exception):
    """A run killed after a frame (a resume test's stand-in for SIGKILL)."""


def killed_after(index: int | None):
    """A frames run's on_frame that kills it once frame `index` is done (None: never)."""

    def on_frame(report) -> None:
        if report.index == index:
            raise Killed

    return on_frame


@pytest.fixture(scope="session")
def panning_frames() -> list:
    """tubingen.jpg through a 64x48 window panning 3 px a frame: every later frame needs its
    flows."""
    import cv2
    import numpy as np

    photo = cv2.imread(str(data_file("contents/tubingen.jpg")))[..., ::-1]
    photo = cv2.resize(photo, (96, 48), interpolation=cv2.INTER_AREA)
    return [np.ascontiguousarray(photo[:, 3 * i : 3 * i + 64]) for i in range(PANNED_FRAMES)]


def small_stylizer(size: int, weights: VGGWeights):
    """`size` px, 4 iterations, fp32 on the CPU, starry_night.jpg."""
    from pipeline.engine import Stylizer
    from pipeline.image_io import load_rgb
    from pipeline.settings import StyleSettings

    settings = StyleSettings(size=size, iterations=4, precision="fp32", device="cpu")
    return Stylizer(settings, [load_rgb(data_file("styles/starry_night.jpg"))], weights)


@pytest.fixture(scope="session")
def tiny_stylizer(embedded_weights):
    """64 px: frames in a fraction of a second."""
    return small_stylizer(64, embedded_weights)


@pytest.fixture
def tubingen() -> Path:
    return data_file("contents/tubingen.jpg")


@pytest.fixture
def starry_night() -> Path:
    return data_file("styles/starry_night.jpg")


def folder_command(
    tmp_path: Path, style: Path, photos: int, *options: str
) -> tuple[Path, list[str]]:
    """A folder of `photos` copies of tubingen.jpg and the `stylize folder` command line over it."""
    source, output = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for index in range(photos):
        shutil.copy(data_file("contents/tubingen.jpg"), source / f"p{index}.jpg")
    return output, stylize_command("folder", source, "-s", style, "-o", output, *options)


def stylize_command(*args: object) -> list[str]:
    """The `stylize` command line with `args`, run from this checkout's interpreter."""
    return [sys.executable, "-m", "cli.main", *map(str, args)]


def run_ffmpeg(*args: str) -> None:
    """ffmpeg (the one the tool uses) with `args`, quiet unless it fails: test clips from lavfi."""
    import subprocess

    from pipeline.video_io import ffmpeg_binary

    subprocess.run([ffmpeg_binary(), "-v", "error", *args], check=True)
