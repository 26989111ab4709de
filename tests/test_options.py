"""Every option is checked before any work starts: a bad value gives one line naming the
option and what is allowed, exit code 2, no traceback, and neither the network nor any input is
loaded. The library's settings refuse the same values when called from Python."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.main import OneLineErrors, app
from pipeline.errors import SettingsError
from pipeline.settings import (
    LAYER_NAMES,
    ClusterSettings,
    FolderSettings,
    StyleSettings,
    VideoSettings,
    check_style_count,
)
from tests.conftest import stylize_command, data_file

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]

# (arguments, the option the error must name): the StyleSettings options every command shares
STYLE_CASES = [
    (["--optimizer", "sgd"], "--optimizer"),
    (["--pooling", "foo"], "--pooling"),
    (["--precision", "fp16"], "--precision"),
    (["--device", "tpu"], "--device"),
    (["--device", "cuda:x"], "--device"),
    (["--coarse-to-fine", "maybe"], "--coarse-to-fine"),
    (["--size", "-5"], "--size"),
    (["--size", "0"], "--size"),
    (["--size", "big"], "--size"),
    (["--iterations", "-1"], "--iterations"),
    (["--content-weight", "-1"], "--content-weight"),
    (["--style-weight", "-1"], "--style-weight"),
    (["--tv-weight", "-0.5"], "--tv-weight"),
    (["--content-layer", "conv6_1"], "--content-layer"),
    (["--style-layers", "conv9_9"], "--style-layers"),
    (["--style-layers", "conv1_1,conv9_9"], "--style-layers"),
    (["--style-layers", ","], "--style-layers"),
    (["--style-layer-weights", "1,2"], "--style-layer-weights"),
    (["--style-layer-weights", "1,1,1,1,-1"], "--style-layer-weights"),
    (["--style-layer-weights", "1,a"], "--style-layer-weights"),
    (["--style-blend", "0.5,0.3,0.2"], "--style-blend"),  # three weights, two -s
    (["--style-blend", "1,x"], "--style-blend"),
    (["--style-blend", "0,0"], "--style-blend"),
    (["--style-scale", "0"], "--style-scale"),
    (["--lr", "0"], "--lr"),
    (["--init", ""], "--init"),
    (["--tolerance", "-1"], "--tolerance"),
    (["--patience", "0"], "--patience"),
]
IMAGE_CASES = [
    (["--quality", "0"], "--quality"),
    (["--quality", "101"], "--quality"),
    (["--save-every", "-1"], "--save-every"),
]
VIDEO_CASES = [
    (["--fill", "contnet"], "--fill"),
    (["--video-init", "flwo"], "--video-init"),
    (["--codec", "nope"], "--codec"),
    (["--codec", "aac"], "--codec"),  # an audio encoder
    (["--crf", "99"], "--crf"),
    (["--crf", "-1"], "--crf"),
    (["--crf", "55"], "--crf"),  # libx264 (the default) ends at 51
    (["--codec", "libx265", "--crf", "52"], "--crf"),
    (["--scene-threshold", "2"], "--scene-threshold"),
    (["--scene-threshold", "-0.1"], "--scene-threshold"),
    (["--evaluations-next", "0"], "--evaluations-next"),
    (["--iterations-next", "-1"], "--iterations-next"),
    (["--patience-next", "0"], "--patience-next"),
    (["--temporal-weight", "-1"], "--temporal-weight"),
    (["--start", "-1"], "--start"),
    (["--duration", "0"], "--duration"),
    (["--max-frames", "0"], "--max-frames"),
    (["--ray-workers", "0"], "--ray-workers"),
    (["--ray-cpus-per-worker", "0"], "--ray-cpus-per-worker"),
    (["--chunk-frames", "30"], "--chunk-frames"),  # not above twice the default overlap (15)
    (["--overlap-frames", "-1"], "--overlap-frames"),
    (["--keep-frames", "--no-such-option"], "--no-such-option"),
]
FOLDER_CASES = [
    (["--quality", "0"], "--quality"),
    (["--quality", "101"], "--quality"),
    (["--ray-workers", "0"], "--ray-workers"),
    (["--ray-cpus-per-worker", "0"], "--ray-cpus-per-worker"),
    (["--style-blend", "0.5,0.5"], "--style-blend"),  # a folder run applies each style alone
]


def _fail(*args, **kwargs):
    raise AssertionError("work started")


@pytest.fixture
def no_work(monkeypatch):
    """Loading the network, probing or decoding a video, or calling a job fails the test: the option
    check must come before all of them."""
    import pipeline.batch
    import pipeline.engine
    import pipeline.image_job
    import pipeline.video_io
    import pipeline.video_job
    import pipeline.weights

    for module, name in [
        (pipeline.weights, "load_weights"),
        (pipeline.engine, "load_weights"),
        (pipeline.video_io, "probe"),
        (pipeline.video_io, "Reader"),
        (pipeline.image_job, "stylize_file"),
        (pipeline.video_job, "stylize_video"),
        (pipeline.batch, "stylize_folder"),
        (pipeline.batch, "plan"),
    ]:
        monkeypatch.setattr(module, name, _fail)
    for module, name in [
        (pipeline.batch, "load_weights"),
        (pipeline.video_job, "probe"),
        (pipeline.video_job, "Reader"),
    ]:
        if hasattr(module, name):  # the names each module took with `from ... import`
            monkeypatch.setattr(module, name, _fail)


@pytest.fixture
def command_args(tmp_path, tubingen, starry_night):
    """The arguments of a valid run of each command, with two styles."""
    photos = tmp_path / "photos"
    photos.mkdir()
    styles = ["-s", str(starry_night), "-s", str(starry_night)]
    return {
        "image": ["image", str(tubingen), "-o", str(tmp_path / "out.jpg"), *styles],
        "video": [
            "video",
            str(data_file("videos/car-detection.mp4")),
            "-o",
            str(tmp_path / "out.mp4"),
            *styles,
        ],
        "folder": ["folder", str(photos), "-o", str(tmp_path / "out"), *styles],
    }


def one_line_error(result, option: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:") and option in lines[0], result.output
    assert "Traceback" not in result.output
    return lines[0]


CASES = (
    [("image", *case) for case in STYLE_CASES + IMAGE_CASES]
    + [("video", *case) for case in STYLE_CASES + VIDEO_CASES]
    + [("folder", *case) for case in STYLE_CASES + FOLDER_CASES]
)


@pytest.mark.parametrize(
    ("command", "args", "option"), CASES, ids=[f"{c}{' '.join(a)}" for c, a, _ in CASES]
)
def test_bad_option_fails_before_any_work(no_work, command_args, command, args, option):
    one_line_error(runner.invoke(app, [*command_args[command], *args]), option)


@pytest.mark.parametrize("command", ["image", "video", "folder"])
def test_good_options_reach_the_work(no_work, command_args, command):
    """The control: valid options get past every check to the trapped work, so the cases above
    would catch a check that came too late."""
    result = runner.invoke(
        app,
        [
            *command_args[command],
            "--style-blend",
            "1,2" if command != "folder" else "1",
            "--device",
            "cpu",
            "--coarse-to-fine",
            "on",
            "--optimizer",
            "adam",
            "--precision",
            "fp32",
        ],
    )
    assert isinstance(result.exception, AssertionError) and "work started" in str(
        result.exception
    ), result.output


def test_choices_in_messages(no_work, command_args):
    line = one_line_error(
        runner.invoke(app, [*command_args["video"], "--fill", "contnet"]), "--fill"
    )
    assert "contnet" in line and all(choice in line for choice in ("content", "warp", "blend"))
    line = one_line_error(
        runner.invoke(app, [*command_args["video"], "--codec", "nope"]), "--codec"
    )
    assert (
        line == "error: --codec nope: not a video encoder of this ffmpeg (e.g. libx264, libx265, "
        "libvpx-vp9)"
    )
    line = one_line_error(
        runner.invoke(app, [*command_args["image"], "--style-blend", "0.5,0.3,0.2"]),
        "--style-blend",
    )
    assert "3 weights for 2 style images" in line
    line = one_line_error(
        runner.invoke(app, [*command_args["image"], "--style-layers", "conv9_9"]), "--style-layers"
    )
    assert "conv9_9" in line and "conv5_4" in line  # a long line stays one line


def test_usage_errors_are_one_line():
    for args, expected in (
        [["nosuch"], "No such command 'nosuch'"],
        [["image"], "Missing argument"],
    ):
        assert one_line_error(runner.invoke(app, args), expected)


def test_help_still_works():
    assert runner.invoke(app, ["--help"]).exit_code == 0
    shown = runner.invoke(app, ["video", "--help"])
    assert shown.exit_code == 0 and "--fill" in shown.output
    bare = runner.invoke(app, [])  # no_args_is_help: the help, with click's exit code for it
    assert bare.exit_code == 2 and "Usage" in bare.output and "error:" not in bare.output


def test_exit_codes_of_commands_pass_through():
    tiny = typer.Typer(cls=OneLineErrors)

    @tiny.callback()
    def group() -> None:
        pass

    @tiny.command()
    def stop(code: int) -> None:
        raise typer.Exit(code)

    @tiny.command()
    def bad() -> None:
        raise typer.BadParameter("use a or b", param_hint="'--thing'")

    assert runner.invoke(tiny, ["stop", "3"]).exit_code == 3
    assert runner.invoke(tiny, ["stop", "0"]).exit_code == 0
    one_line_error(runner.invoke(tiny, ["bad"]), "--thing")


def test_real_process_prints_one_line_on_stderr(tmp_path, tubingen, starry_night):
    base = stylize_command(
        "image", str(tubingen), "-s", str(starry_night), "-o", str(tmp_path / "o.jpg")
    )
    for extra, option in (
        (["--optimizer", "sgd"], "--optimizer"),
        (["--style-layers", "conv9_9"], "--style-layers"),
    ):
        done = subprocess.run([*base, *extra], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stdout == "", done
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and option in lines[0], done.stderr


# The library refuses the same values from Python.
LIBRARY_CASES = [
    (StyleSettings, {"size": -5}, "--size"),
    (StyleSettings, {"size": 0}, "--size"),
    (StyleSettings, {"size": 2.5}, "--size"),
    (StyleSettings, {"iterations": -1}, "--iterations"),
    (StyleSettings, {"content_weight": -1.0}, "--content-weight"),
    (StyleSettings, {"style_weight": float("nan")}, "--style-weight"),
    (StyleSettings, {"tv_weight": -1.0}, "--tv-weight"),
    (StyleSettings, {"content_layer": "conv6_1"}, "--content-layer"),
    (StyleSettings, {"style_layers": ("conv9_9",)}, "--style-layers"),
    (StyleSettings, {"style_layers": ()}, "--style-layers"),
    (StyleSettings, {"style_layers": "conv1_1"}, "--style-layers"),
    (StyleSettings, {"style_layer_weights": (1.0,)}, "--style-layer-weights"),
    (StyleSettings, {"style_layer_weights": (-1.0, 1.0, 1.0, 1.0, 1.0)}, "--style-layer-weights"),
    (StyleSettings, {"style_blend": (-1.0, 2.0)}, "--style-blend"),
    (StyleSettings, {"style_blend": (0.0, 0.0)}, "--style-blend"),
    (StyleSettings, {"style_blend": ()}, "--style-blend"),
    (StyleSettings, {"style_scale": 0}, "--style-scale"),
    (StyleSettings, {"learning_rate": 0}, "--lr"),
    (StyleSettings, {"tolerance": -0.1}, "--tolerance"),
    (StyleSettings, {"patience": 0}, "--patience"),
    (StyleSettings, {"pooling": "foo"}, "--pooling"),
    (StyleSettings, {"optimizer": "sgd"}, "--optimizer"),
    (StyleSettings, {"precision": "fp16"}, "--precision"),
    (StyleSettings, {"device": "tpu"}, "--device"),
    (StyleSettings, {"device": "cuda:"}, "--device"),
    (StyleSettings, {"init": ""}, "--init"),
    (StyleSettings, {"coarse_to_fine": "maybe"}, "--coarse-to-fine"),
    (StyleSettings, {"coarse_min_size": 0}, "coarse_min_size"),
    (StyleSettings, {"save_every": -1}, "--save-every"),
    (VideoSettings, {"fill": "contnet"}, "--fill"),
    (VideoSettings, {"warm_start": "flwo"}, "--video-init"),
    (VideoSettings, {"evaluations_next": 0}, "--evaluations-next"),
    (VideoSettings, {"iterations_next": -1}, "--iterations-next"),
    (VideoSettings, {"patience_next": 0}, "--patience-next"),
    (VideoSettings, {"temporal_weight": -1.0}, "--temporal-weight"),
    (VideoSettings, {"scene_threshold": 2.0}, "--scene-threshold"),
    (VideoSettings, {"scene_threshold": -0.1}, "--scene-threshold"),
    (VideoSettings, {"start": -1.0}, "--start"),
    (VideoSettings, {"duration": 0.0}, "--duration"),
    (VideoSettings, {"max_frames": 0}, "--max-frames"),
    (VideoSettings, {"codec": ""}, "--codec"),
    (VideoSettings, {"crf": 99}, "--crf"),
    (VideoSettings, {"crf": -1}, "--crf"),
    (VideoSettings, {"crf": 55, "codec": "libx264"}, "--crf"),
    (VideoSettings, {"codec": "libx265", "crf": 52}, "--crf"),
    (VideoSettings, {"codec": "libvpx-vp9", "crf": 64}, "--crf"),
    (FolderSettings, {"quality": 0}, "--quality"),
    (FolderSettings, {"quality": 101}, "--quality"),
    (ClusterSettings, {"workers": 0}, "--ray-workers"),
    (ClusterSettings, {"cpus_per_worker": 0}, "--ray-cpus-per-worker"),
    (
        ClusterSettings,
        {"chunk_frames": 30},
        "--chunk-frames",
    ),  # not above twice the default overlap (15)
    (ClusterSettings, {"overlap_frames": -1}, "--overlap-frames"),
]


@pytest.mark.parametrize(
    ("kind", "values", "option"),
    LIBRARY_CASES,
    ids=[f"{k.__name__}-{v}" for k, v, _ in LIBRARY_CASES],
)
def test_settings_refuse_bad_values(kind, values, option):
    with pytest.raises(SettingsError) as caught:
        kind(**values)
    message = str(caught.value)
    assert message.startswith(f"{option} ") and ": " in message and "\n" not in message, message


def test_settings_accept_the_edges():
    StyleSettings(), VideoSettings(), FolderSettings(), ClusterSettings()
    StyleSettings(
        iterations=0,
        tv_weight=0,
        tolerance=0,
        device="cuda:1",
        init="some/photo.jpg",
        style_blend=(0.0, 1.0),
        style_layers=("conv1_1", "relu2_1", "pool3"),
        style_layer_weights=(1, 0, 2),
        coarse_to_fine=False,
    )
    VideoSettings(
        warm_start="content",
        fill="blend",
        scene_threshold=1.0,
        crf=51,
        temporal_weight=0,
        iterations_next=0,
        max_frames=1,
    )
    VideoSettings(codec="libvpx-vp9", crf=63)
    FolderSettings(quality=1), FolderSettings(quality=100)
    ClusterSettings(chunk_frames=31, workers=1), ClusterSettings(chunk_frames=1, overlap_frames=0)


def test_settings_are_frozen_and_replace_checks_again():
    settings = StyleSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.size = 64
    assert dataclasses.replace(settings, save_every=5).save_every == 5
    with pytest.raises(SettingsError, match="--save-every"):
        dataclasses.replace(settings, save_every=-1)


def test_style_count():
    check_style_count(StyleSettings(), 3)
    check_style_count(StyleSettings(style_blend=(0.7, 0.3)), 2)
    with pytest.raises(SettingsError, match="--style-blend 0.7,0.3: 2 weights for 3 style images"):
        check_style_count(StyleSettings(style_blend=(0.7, 0.3)), 3)
    with pytest.raises(SettingsError, match="at least one style image"):
        check_style_count(StyleSettings(), 0)


def test_layer_names_without_torch_match_the_network():
    from pipeline import vgg

    assert list(LAYER_NAMES) == vgg.layer_names() and tuple(vgg.LAYER_NAMES) == LAYER_NAMES


def test_check_encoder():
    from pipeline.video_io import check_encoder

    check_encoder("libx264")
    check_encoder("h264")  # a codec name: ffmpeg takes its default encoder
    for name in ("nope", "aac", ""):
        with pytest.raises(SettingsError, match=f"--codec {name}: not a video encoder"):
            check_encoder(name)
