"""The inputs people have: frame sequences, phone video (variable rate, 10-bit, HDR), every stream.

Clips are made with ffmpeg's lavfi sources from a known RGB picture; the output is decoded as a
player decodes it (zscale reading the file's own colour tags) and compared with that picture.
No stylization (`iterations 0`): what comes out should be what went in.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.settings import StyleSettings, VideoSettings
from pipeline.video_io import ffmpeg_binary, probe
from pipeline.video_job import stylize_video
from tests.conftest import stylize_command, data_file, run_ffmpeg

REPO = Path(__file__).parents[1]
# frame 0 as decoded
IDENTITY = StyleSettings(
    size=None, iterations=0, coarse_to_fine=False, style_scale=0.25, device="cpu"
)
COPY = VideoSettings(iterations_next=0)


def ffmpeg(*args: str) -> None:
    run_ffmpeg("-y", *args)


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    """A real photo, softened as a camera's picture is: 1280 x 720 RGB."""
    photo = cv2.imread(str(data_file("contents/tubingen.jpg")))
    photo = cv2.GaussianBlur(
        cv2.resize(photo, (1280, 720), interpolation=cv2.INTER_AREA), (0, 0), 2
    )
    path = tmp_path_factory.mktemp("picture") / "picture.png"
    cv2.imwrite(str(path), photo)
    return path


def rgb(path: Path) -> np.ndarray:
    return cv2.imread(str(path))[..., ::-1].astype(np.float64) / 255


def smaller(picture: Path, folder: Path) -> Path:
    path = folder / "picture-360.png"
    small = cv2.resize(cv2.imread(str(picture)), (640, 360), interpolation=cv2.INTER_AREA)
    # as soft per pixel as the 720p picture
    cv2.imwrite(str(path), cv2.GaussianBlur(small, (0, 0), 1))
    return path


def player_frame(path: Path, tonemap: bool = False) -> np.ndarray:
    """Frame 0 as a colour-managed player shows it: converted by zimg from the tags in the file
    (an untagged file fails here), HDR tone-mapped to SDR bt709 (hable). RGB in [0, 1]."""
    chain = (
        "zscale=transfer=linear:npl=100,format=gbrpf32le,"
        "zscale=primaries=709,tonemap=hable:desat=0,"
        "zscale=transfer=709:matrix=gbr:range=full:dither=none"
        if tonemap
        else "zscale=matrix=gbr:range=full:primaries=709:transfer=709:filter=bicubic:dither=none"
    )
    info = probe(path)
    raw = subprocess.run(
        [
            ffmpeg_binary(),
            "-v",
            "error",
            "-i",
            str(path),
            "-frames:v",
            "1",
            "-vf",
            f"{chain},format=gbrpf32le",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gbrpf32le",
            "pipe:",
        ],
        capture_output=True,
        check=True,
    ).stdout
    planes = np.frombuffer(raw, "<f4").reshape(3, info.height, info.width)
    return np.clip(planes[[2, 0, 1]].transpose(1, 2, 0).astype(np.float64), 0, 1)  # g, b, r planes


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((a - b) ** 2)))


def assert_same_picture(decoded: np.ndarray, reference: np.ndarray) -> None:
    shift = np.abs((decoded - reference).mean(axis=(0, 1))) * 255
    assert psnr(decoded, reference) >= 38, psnr(decoded, reference)
    assert shift.max() <= 1.0, shift  # mean colour within 1/255 in each channel


TV = [
    "-colorspace",
    "bt709",
    "-color_primaries",
    "bt709",
    "-color_trc",
    "bt709",
    "-color_range",
    "tv",
]
H264_AAC = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]
X265 = ["-c:v", "libx265", "-crf", "12", "-x265-params", "log-level=error"]
CASES = {
    "h264-bt709-720p": [
        "scale=out_color_matrix=bt709:out_range=tv:flags=accurate_rnd+full_chroma_int,"
        "format=yuv420p",
        "-c:v",
        "libx264",
        "-crf",
        "12",
        *TV,
    ],
    "h264-bt601-full": [
        "scale=out_color_matrix=bt601:out_range=pc:flags=accurate_rnd+full_chroma_int,"
        "format=yuvj420p",
        "-c:v",
        "libx264",
        "-crf",
        "12",
        "-colorspace",
        "smpte170m",
        "-color_range",
        "pc",
    ],
    "hevc-10bit-bt709": [
        "scale=out_color_matrix=bt709:out_range=tv:flags=accurate_rnd+full_chroma_int,"
        "format=yuv420p10le",
        *X265,
        *TV,
    ],
    "hevc-10bit-hlg": [
        "zscale=transferin=709:primariesin=709:matrixin=gbr:rangein=full:transfer=arib-std-b67:"
        "primaries=2020:matrix=2020_ncl:range=limited:npl=100,format=yuv420p10le",
        *X265,
        "-colorspace",
        "bt2020nc",
        "-color_primaries",
        "bt2020",
        "-color_trc",
        "arib-std-b67",
        "-color_range",
        "tv",
    ],
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_video_round_trip_keeps_its_colours(tmp_path, picture, starry_night, case):
    vf, *codec = CASES[case]
    clip = tmp_path / "clip.mkv"
    # the other cases at a quarter of the pixels: one VGG evaluation each costs less
    if "720p" not in case:
        picture = smaller(picture, tmp_path)
    ffmpeg(
        "-loop", "1", "-i", str(picture), "-frames:v", "2", "-r", "25", "-vf", vf, *codec, str(clip)
    )
    output = tmp_path / "out.mp4"
    result = stylize_video(
        clip,
        [starry_night],
        output,
        style_settings=IDENTITY,
        video=VideoSettings(iterations_next=0, max_frames=1),
    )
    hdr = "hlg" in case
    reference = player_frame(clip, tonemap=True) if hdr else rgb(picture)
    assert_same_picture(player_frame(output), reference)
    colour = probe(output).colour
    assert (colour.matrix, colour.range, colour.primaries, colour.transfer) == (
        "709",
        "limited",
        "709",
        "709",
    )
    assert any("tone-mapped" in line for line in result.log) == hdr


def test_a_sequence_round_trip_keeps_its_colours_and_16_bits(tmp_path, picture, starry_night):
    # yuv420p halves the chroma: a camera-soft picture keeps it
    image = cv2.imread(str(smaller(picture, tmp_path)))
    eight, deep = tmp_path / "eight", tmp_path / "deep"
    eight.mkdir(), deep.mkdir()
    # values no 8-bit frame holds
    ramp = np.linspace(0, 65535, 320 * 180 * 3).reshape(180, 320, 3).astype(np.uint16)
    for index in range(2):
        cv2.imwrite(str(eight / f"f{index:03d}.png"), image)
        cv2.imwrite(str(deep / f"f{index:03d}.png"), ramp)

    stylize_video(
        eight,
        [starry_night],
        tmp_path / "eight.mp4",
        style_settings=IDENTITY,
        video=VideoSettings(iterations_next=0, max_frames=1),
    )
    assert_same_picture(player_frame(tmp_path / "eight.mp4"), image[..., ::-1] / 255.0)

    stylize_video(deep, [starry_night], tmp_path / "out", style_settings=IDENTITY, video=COPY)
    written = cv2.imread(str(tmp_path / "out" / "f000.png"), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16
    # 16 bits in, 16 bits out: not rounded to 8 (257 apart)
    assert np.abs(written.astype(int) - ramp).max() <= 2


def vfr_clip(path: Path) -> Path:
    """40 frames shown for 1/30 s, then 10 for 1/15 s, then 1/30 s again, with a 440 Hz tone."""
    pts = "if(lt(N,10),N,if(lt(N,20),10+(N-10)*2,N+10))/30/TB"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x64:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-frames:v",
        "40",
        "-t",
        "1.67",
        "-vf",
        f"setpts='{pts}'",
        "-fps_mode",
        "passthrough",
        *H264_AAC,
        "-shortest",
        str(path),
    )
    return path


def audio_facts(path: Path) -> tuple[list[bytes], float]:
    """The audio packets' bytes, and when the audio ends (seconds, to the millisecond)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        packets = [p for p in container.demux(stream) if p.size]
        end = max(float((p.pts + p.duration) * stream.time_base) for p in packets)
        return [bytes(p) for p in packets], round(end, 3)


def test_a_variable_frame_rate_is_kept_frame_by_frame(tmp_path, starry_night):
    clip = vfr_clip(tmp_path / "vfr.mp4")
    source = probe(clip)
    assert source.variable_rate and len(source.times) == 40
    output = tmp_path / "out.mp4"
    result = stylize_video(
        clip,
        [starry_night],
        output,
        style_settings=StyleSettings(size=64, iterations=0, device="cpu"),
        video=COPY,
    )
    written = probe(output)
    assert len(written.times) == 40
    start = written.times[0] - source.times[0]
    assert max(abs(a - b - start) for a, b in zip(written.times, source.times)) <= 1e-3
    assert abs(start) <= 1e-3
    assert audio_facts(output) == audio_facts(clip)  # copied: every packet, at its time
    assert abs(written.end_time(0, 40) - source.end_time(0, 40)) <= 1e-3  # the same duration
    assert any("variable frame rate" in line for line in result.log)


def test_a_folder_of_frames_in_and_out_warm_started_and_resumed_after_kill(tmp_path, starry_night):
    frames = tmp_path / "render"
    frames.mkdir()
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x64:rate=24",
        "-frames:v",
        "30",
        "-start_number",
        "1",
        str(frames / "shot_%04d.png"),
    )
    output = tmp_path / "styled"
    command = stylize_command(
        "video",
        str(frames),
        "-s",
        str(starry_night),
        "-o",
        f"{output}/",
        "--size",
        "96",
        "--iterations",
        "2",
        "--iterations-next",
        "1",
        "--tolerance",
        "0",
        "--keep-frames",
    )
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline, done = time.time() + 120, []
    while time.time() < deadline and len(done) < 6 and process.poll() is None:
        time.sleep(0.1)
        done = list(output.glob(".frames-*/0*.png"))
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert len(done) >= 6 and not list(output.glob("shot_*.png"))

    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    names = sorted(p.name for p in output.glob("shot_*.png"))
    assert names == sorted(p.name for p in frames.iterdir())
    said = " ".join(rerun.stdout.split())  # rich wraps long lines
    computed = int(said.split("(30 frames, ")[1].split()[0])
    assert computed <= 30 - 6  # the frames made before the kill were resumed
    log = [
        json.loads(line)
        for line in next(output.glob(".frames-*")).joinpath("frames.jsonl").read_text().splitlines()
    ]
    cold = {entry["frame"]: entry["cold"] for entry in log if "frame" in entry}
    assert len(cold) == 30 and cold[0] and not any(cold[i] for i in range(1, 30))


def test_every_stream_and_the_creation_time_are_kept(tmp_path, starry_night):
    subtitles = tmp_path / "words.srt"
    subtitles.write_text("1\n00:00:00,100 --> 00:00:00,800\nhello\n")
    clip = tmp_path / "phone.mkv"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x64:rate=10",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=880",
        "-i",
        str(subtitles),
        "-map",
        "0",
        "-map",
        "1",
        "-map",
        "2",
        "-map",
        "3",
        "-t",
        "1",
        *H264_AAC,
        "-c:s",
        "srt",
        "-metadata",
        "creation_time=2026-06-01T12:00:00.000000Z",
        "-metadata",
        "location=+48.52+009.05/",
        str(clip),
    )
    for output in (tmp_path / "out.mp4", tmp_path / "out.mkv"):
        stylize_video(
            clip,
            [starry_night],
            output,
            style_settings=StyleSettings(size=64, iterations=0, device="cpu"),
            video=COPY,
        )
        with av.open(str(output)) as container:
            assert len(container.streams.audio) == 2 and len(container.streams.subtitles) == 1, (
                output
            )
            assert container.metadata.get("creation_time", "").startswith("2026-06-01T12:00:00"), (
                container.metadata
            )
            assert (
                "location" in {key.lower() for key in container.metadata} or output.suffix == ".mkv"
            )


def test_webm_is_written_with_vp9_and_opus(tmp_path, starry_night):
    clip = tmp_path / "clip.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=10",
        "-f",
        "lavfi",
        "-i",
        "sine",
        "-t",
        "0.4",
        *H264_AAC,
        str(clip),
    )
    result = stylize_video(
        clip,
        [starry_night],
        tmp_path / "out.webm",
        style_settings=StyleSettings(size=64, iterations=0, device="cpu"),
        video=COPY,
    )
    with av.open(str(tmp_path / "out.webm")) as container:
        assert [s.codec_context.name for s in container.streams] == ["vp9", "opus"]
    assert any("re-encoded with libopus" in line for line in result.log)


def clis(*commands: tuple[str, ...]) -> list[tuple[int, str]]:
    """Each `stylize video` command's exit status and standard error; the commands run side by
    side, as most of each is Python and torch starting."""
    runs = [
        subprocess.Popen(
            stylize_command("video", *args),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    try:
        errors = [run.communicate(timeout=300)[1] for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:  # a command that hung, or one not read when another failed
                run.kill()
    return [(run.returncode, error) for run, error in zip(runs, errors)]


def test_bad_inputs_get_one_line_each(tmp_path, starry_night):
    empty, odd, even = tmp_path / "empty", tmp_path / "odd", tmp_path / "even"
    for folder in (empty, odd, even):
        folder.mkdir()
    for index, width in enumerate((64, 64, 48, 64)):
        cv2.imwrite(str(odd / f"{index:04d}.png"), np.zeros((32, width, 3), np.uint8))
        cv2.imwrite(str(even / f"{index:04d}.png"), np.zeros((32, 64, 3), np.uint8))
    audio = tmp_path / "voice.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine", "-t", "0.3", str(audio))
    style = ("-s", str(starry_night))
    cases = {
        (str(empty), *style, "-o", str(tmp_path / "a.mp4")): "no frames",
        (str(odd), *style, "-o", str(tmp_path / "b.mp4")): "0002.png: 48x32",
        (str(audio), *style, "-o", str(tmp_path / "c.mp4")): "audio-only",
        (str(odd / "x_%03d.png"), *style, "-o", str(tmp_path / "d.mp4")): "matches",
        # the output would overwrite the frames it is made from
        (str(even / "%04d.png"), *style, "-o", str(even / "%04d.png")): "overwrite an input",
        (str(audio), "--fps", "30", *style, "-o", str(tmp_path / "e.mp4")): "keeps its own timing",
    }
    for (returncode, stderr), (args, words) in zip(clis(*cases), cases.items()):
        lines = stderr.strip().splitlines()
        assert returncode != 0 and "Traceback" not in stderr, (args, stderr)
        assert len(lines) == 1 and words in lines[0], (args, stderr)


def test_a_pattern_names_the_frames_and_a_gap_is_reported(tmp_path, starry_night):
    frames = tmp_path / "dump"
    frames.mkdir()
    picture = np.full((32, 48, 3), 90, np.uint8)
    for number in (1, 2, 3, 5, 10):  # frame 10 after frame 5: natural order, and a gap
        cv2.imwrite(str(frames / f"img{number}.jpg"), picture)
    result = stylize_video(
        frames / "img%d.jpg",
        [starry_night],
        tmp_path / "out" / "%04d.jpg",
        style_settings=StyleSettings(size=48, iterations=0, device="cpu"),
        video=VideoSettings(iterations_next=0, fps=Fraction(12)),
    )
    assert sorted(p.name for p in (tmp_path / "out").glob("*.jpg")) == [
        "0001.jpg",
        "0002.jpg",
        "0003.jpg",
        "0005.jpg",
        "0010.jpg",
    ]
    assert any("4 missing before img5.jpg" in line for line in result.log)
    assert any("6-9 missing before img10.jpg" in line for line in result.log)


def test_exr_frames_come_out_as_16_bit_png(tmp_path, starry_night):
    OpenEXR = pytest.importorskip("OpenEXR")
    frames = tmp_path / "exr"
    frames.mkdir()
    linear = np.linspace(0, 1, 32 * 48 * 3, dtype=np.float32).reshape(32, 48, 3)
    for index in range(2):
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        with OpenEXR.File(header, {"RGB": linear}) as exr:
            exr.write(str(frames / f"beauty.{index:04d}.exr"))
    stylize_video(
        frames,
        [starry_night],
        tmp_path / "out",
        style_settings=StyleSettings(size=48, iterations=0, device="cpu"),
        video=COPY,
    )
    written = cv2.imread(str(tmp_path / "out" / "beauty.0001.png"), cv2.IMREAD_UNCHANGED)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    assert written.dtype == np.uint16  # scene-linear shown as sRGB, at 16 bits
    assert np.abs(written[..., ::-1] / 65535 - srgb).max() < 2e-4
