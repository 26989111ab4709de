"""Video: probe, decode/encode round trip, resume after kill -9, scene cuts, flicker ordering."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.video_io import encode, ffmpeg_binary, probe
from pipeline.video_job import stylize_video, temporal_errors
from tests.conftest import stylize_command, data_file, run_ffmpeg

FAST = dict(size=64, iterations=4, tolerance=0.0, device="cpu")


def stream_facts(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for packet in container.demux(video) if packet.size)
        audio = [(a.codec_context.name, a.codec_context.channels) for a in container.streams.audio]
        return {
            "fps": Fraction(video.average_rate),
            "frames": frames,
            "audio": audio,
            "duration": frames / Fraction(video.average_rate),
        }


@pytest.mark.parametrize(
    ("name", "fps", "frames", "audio"),
    [
        ("car-detection.mp4", Fraction(25, 2), 377, ("aac",)),
        ("bottle-detection.mp4", Fraction(179, 6), 1189, ()),
        ("thanks.mkv", Fraction(30), 51, ()),
    ],
)
def test_probe_reads_exact_rates_and_counts(name, fps, frames, audio):
    info = probe(data_file(f"videos/{name}"))
    assert (info.fps, info.frames, info.audio) == (fps, frames, audio)


def test_probe_rejects_non_videos(tmp_path):
    text = tmp_path / "clip.mp4"
    text.write_text("not a video")
    with pytest.raises(InputError, match="clip.mp4: not a readable video"):
        probe(text)
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(data_file("videos/car-detection.mp4").read_bytes()[:2000])
    with pytest.raises(InputError, match="cut.mp4"):
        probe(truncated)
    sound = tmp_path / "sound.m4a"
    run_ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac", str(sound))
    with pytest.raises(InputError, match="sound.m4a: an audio-only file"):
        probe(sound)


@pytest.mark.parametrize(
    ("name", "seconds"),
    [
        ("car-detection.mp4", 2.0),
        ("bottle-detection.mp4", 1.0),
        ("car-detection.mp4", 1.0),
        ("thanks.mkv", None),
    ],
)
def test_output_keeps_frames_rate_duration_and_audio(tmp_path, starry_night, name, seconds):
    source = data_file(f"videos/{name}")
    output = tmp_path / f"out{source.suffix}"
    video = VideoSettings(iterations_next=2, duration=seconds)
    result = stylize_video(
        source, [starry_night], output, style_settings=StyleSettings(**FAST), video=video
    )
    facts = stream_facts(output)
    info = probe(source)
    expected = math.ceil(seconds * info.fps) if seconds else info.frames
    assert facts["fps"] == info.fps
    assert facts["frames"] == result.frames == expected
    assert abs(facts["duration"] - expected / info.fps) < 1 / info.fps
    if info.audio:
        assert facts["audio"] == [("aac", 2)]
        with av.open(str(output)) as container:
            audio_seconds = float(
                container.streams.audio[0].duration * container.streams.audio[0].time_base
            )
        assert abs(audio_seconds - seconds) < 0.1
    else:
        assert facts["audio"] == []
    assert not result.work_dir.exists()  # removed after a successful encode


def synthetic_cut_video(path: Path, cut_at: int = 10, frames: int = 20) -> None:
    """A drifting gradient, then a hard cut to a different drifting pattern."""
    y, x = np.mgrid[0:48, 0:64].astype(np.float32)

    def frame(i: int) -> np.ndarray:
        if i < cut_at:
            image = np.stack([x * 4 + i * 2, y * 5, 128 + 0 * x], axis=2)
        else:
            image = np.stack([255 - y * 5, 60 + 0 * x, (x + i * 2) % 64 * 4], axis=2)
        return np.clip(image, 0, 255).astype(np.uint8)

    encode(lambda: (frame(i) for i in range(frames)), path, (64, 48), Fraction(10))


def test_hard_cut_is_detected_at_the_right_frame(tmp_path, starry_night):
    clip = tmp_path / "cut.mp4"
    synthetic_cut_video(clip)
    result = stylize_video(
        clip,
        [starry_night],
        tmp_path / "out.mp4",
        style_settings=StyleSettings(**{**FAST, "size": 48}),
        video=VideoSettings(iterations_next=1),
    )
    assert result.cuts == [10]
    assert "scene cut before frame 10" in result.log


def test_size_too_small_for_the_network_is_refused_before_decoding(tmp_path, starry_night):
    clip = tmp_path / "cut.mp4"
    synthetic_cut_video(clip, frames=12)
    with pytest.raises(InputError, match=r"cut.mp4: 20x14 px is too small to stylize"):
        stylize_video(
            clip,
            [starry_night],
            tmp_path / "out.mp4",
            style_settings=StyleSettings(**{**FAST, "size": 20}),
        )
    assert not list(tmp_path.glob(".out.mp4*"))


def test_existing_output_and_same_path_are_refused(tmp_path, starry_night):
    from pipeline.errors import OutputError

    source = data_file("videos/thanks.mkv")
    with pytest.raises(OutputError, match="would overwrite an input"):
        stylize_video(source, [starry_night], source, style_settings=StyleSettings(**FAST))
    existing = tmp_path / "o.mp4"
    existing.write_bytes(b"x")
    with pytest.raises(OutputError, match="exists already"):
        stylize_video(source, [starry_night], existing, style_settings=StyleSettings(**FAST))


@pytest.mark.slow
def test_kill_during_stylization_then_resume(tmp_path, starry_night):
    source = data_file("videos/car-detection.mp4")
    output = tmp_path / "out.mp4"
    command = stylize_command(
        "video",
        str(source),
        "-s",
        str(starry_night),
        "-o",
        str(output),
        "--size",
        "96",
        "--iterations",
        "20",
        "--iterations-next",
        "10",
        "--tolerance",
        "0",
        "--duration",
        "1.6",
        "--keep-frames",
    )
    process = subprocess.Popen(
        command, cwd=Path(__file__).parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    done: list[Path] = []
    while time.time() < deadline and len(done) < 4:
        time.sleep(0.2)
        done = sorted(tmp_path.glob(".out.mp4.frames-*/0*.png"))
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert len(done) >= 4 and not output.exists()
    before = {
        p.name: p.stat().st_mtime_ns for p in sorted(tmp_path.glob(".out.mp4.frames-*/0*.png"))
    }
    # nothing half-written survives as a frame
    assert not list(tmp_path.glob(".out.mp4.frames-*/.*tmp*"))
    rerun = subprocess.run(command, cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    frames = sorted(tmp_path.glob(".out.mp4.frames-*/0*.png"))
    assert len(frames) == stream_facts(output)["frames"] == 20
    assert all(frames[i].stat().st_mtime_ns == before[frames[i].name] for i in range(len(before)))

    # the same frames as a run that was never interrupted
    clean = tmp_path / "clean"
    clean.mkdir()
    subprocess.run(
        [
            *command[:-1][: command.index("-o") + 1],
            str(clean / "out.mp4"),
            *command[command.index("-o") + 2 :],
        ],
        cwd=Path(__file__).parents[1],
        check=True,
        capture_output=True,
    )
    reference = sorted(clean.glob(".out.mp4.frames-*/0*.png"))
    assert len(reference) == 20
    for a, b in zip(frames, reference):
        assert a.read_bytes() == b.read_bytes(), a.name


@pytest.mark.slow
def test_flow_warm_start_flickers_least(tmp_path, starry_night):
    """Warping error on a real clip: flow < prev < content, and flow at most half of content."""
    source = data_file("videos/car-detection.mp4")
    style = StyleSettings(size=128, iterations=40, tolerance=0.0, device="cpu")
    errors = {}
    for mode in ("flow", "prev", "content"):
        output = tmp_path / f"{mode}.mp4"
        stylize_video(
            source,
            [starry_night],
            output,
            style_settings=style,
            video=VideoSettings(warm_start=mode, iterations_next=15, max_frames=6),
        )
        errors[mode] = temporal_errors(source, output, max_frames=6)["output"]
    assert errors["flow"] < errors["prev"] < errors["content"], errors
    assert errors["flow"] <= 0.5 * errors["content"], errors


def test_first_frame_of_a_shot_is_stylized_as_a_photo(embedded_weights, tubingen, starry_night):
    """A shot's first frame has no warm start: the same pixels as `stylize image` at the same
    settings."""
    from pipeline.engine import Stylizer
    from pipeline.image_io import load_rgb, to_array, to_tensor
    from pipeline.temporal import Frame, to_float
    from pipeline.frames import FrameStylizer

    frame = np.round(to_array(load_rgb(tubingen, 64)) * 255).astype(np.uint8)
    stylizer = Stylizer(
        StyleSettings(**{**FAST, "iterations": 6}, precision="fp32"),
        [load_rgb(starry_night)],
        embedded_weights,
    )
    out, info = FrameStylizer(stylizer, VideoSettings())(Frame(frame), None)
    photo = stylizer.stylize(to_tensor(to_float(frame)))
    assert info["evaluations"] == photo.evaluations
    assert np.array_equal(out, np.round(to_array(photo.image) * 255).astype(np.uint8))


def test_work_folder_keys_stay_those_of_finished_runs(tmp_path):
    """A sequential run's key is pinned: a change makes every unfinished run start over, so it
    changes only when frames written earlier would not match new ones: with `work_folder.SCHEMA`,
    or with a default that makes other frames (the fill, `--fill patches`)."""
    from pipeline.work_folder import work_folder

    source, style = tmp_path / "in.mp4", tmp_path / "style.jpg"
    source.write_bytes(b"source-bytes")
    style.write_bytes(b"style-bytes")
    folder = work_folder(tmp_path / "out.mp4", source, [style], StyleSettings(), VideoSettings())
    assert folder == tmp_path / ".out.mp4.frames-093ef7738c1ced09"
    assert (
        work_folder(
            tmp_path / "out.mp4",
            source,
            [style],
            StyleSettings(),
            VideoSettings(temporal_frames=(1,)),
        )
        != folder
    )


def test_a_run_with_other_settings_starts_over_and_says_which_folder_it_leaves(tmp_path):
    from pipeline.work_folder import other_work_folders, work_folder

    source, style = tmp_path / "in.mp4", tmp_path / "style.jpg"
    source.write_bytes(b"source-bytes")
    style.write_bytes(b"style-bytes")
    older = work_folder(
        tmp_path / "out.mp4", source, [style], StyleSettings(), VideoSettings(temporal_frames=(1,))
    )
    older.mkdir()
    (
        tmp_path / ".other.mp4.frames-0123456789abcdef"
    ).mkdir()  # another output's: not this run's business
    current = work_folder(tmp_path / "out.mp4", source, [style], StyleSettings(), VideoSettings())
    assert other_work_folders(current) == [older]


def test_a_chunked_run_is_keyed_by_its_chunks_not_by_where_it_runs(tmp_path, starry_night):
    from pipeline.chunks import chunk_layout
    from pipeline.settings import ClusterSettings
    from pipeline.work_folder import work_folder

    source = tmp_path / "in.mp4"
    source.write_bytes(b"not decoded here")

    def key(cluster):
        layout = chunk_layout(cluster) if cluster else None
        return work_folder(
            tmp_path / "out.mp4", source, [starry_night], StyleSettings(), VideoSettings(), layout
        )

    here = ClusterSettings(
        address="local", workers=2, cpus_per_worker=1, chunk_frames=60, overlap_frames=8
    )
    elsewhere = ClusterSettings(
        address="ray://head:10001", workers=16, cpus_per_worker=4, chunk_frames=60, overlap_frames=8
    )
    assert key(here) == key(elsewhere)
    assert (
        len(
            {
                key(None),
                key(here),
                key(replace(here, chunk_frames=61)),
                key(replace(here, overlap_frames=9)),
            }
        )
        == 4
    )


def test_odd_frame_size_is_cropped_by_one_pixel_and_said(tmp_path, starry_night):
    from pipeline.video_io import EncodeSettings

    clip = tmp_path / "odd.mkv"
    frames = [np.full((49, 65, 3), 40 * i, np.uint8) for i in range(4)]
    encode(
        lambda: iter(frames),
        clip,
        (65, 49),
        Fraction(10),
        settings=EncodeSettings(pix_fmt="yuv444p"),
    )
    assert (probe(clip).width, probe(clip).height) == (65, 49)
    result = stylize_video(
        clip,
        [starry_night],
        tmp_path / "out.mp4",
        style_settings=StyleSettings(**{**FAST, "size": 65}),
        video=VideoSettings(iterations_next=1),
    )
    out = probe(tmp_path / "out.mp4")
    assert (out.width, out.height, out.frames) == (64, 48, 4)
    assert any("odd frame size 65x49 cropped to 64x48" in line for line in result.log)


def test_rotated_input_is_stylized_and_written_upright(tmp_path, starry_night):
    flat, rotated = tmp_path / "flat.mp4", tmp_path / "rotated.mp4"
    run = [ffmpeg_binary(), "-v", "error", "-y"]
    subprocess.run(
        [
            *run,
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=10:duration=0.5",
            "-pix_fmt",
            "yuv420p",
            str(flat),
        ],
        check=True,
    )
    subprocess.run(
        [*run, "-display_rotation", "90", "-i", str(flat), "-c", "copy", str(rotated)], check=True
    )
    info = probe(rotated)
    assert (info.width, info.height) == (
        48,
        64,
    ) and info.rotation % 180 == 90  # as a player shows it
    result = stylize_video(
        rotated,
        [starry_night],
        tmp_path / "out.mp4",
        style_settings=StyleSettings(**FAST),
        video=VideoSettings(iterations_next=1),
    )
    out = probe(tmp_path / "out.mp4")
    assert (out.width, out.height, out.rotation, out.frames) == (48, 64, 0, 5)
    assert any("rotated by" in line for line in result.log)
