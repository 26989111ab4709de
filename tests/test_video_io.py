"""ffmpeg children: no pipe left unread, failures reported with ffmpeg's own last words."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import pytest

from tests.conftest import run_ffmpeg
from pipeline import video_io
from pipeline.errors import OutputError
from pipeline.video_io import EncodeSettings, Reader, encode, ffmpeg_binary, probe


def lavfi_clip(path: Path, frames: int = 20, size: str = "64x48") -> Path:
    run_ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate=10",
        "-frames:v",
        str(frames),
        "-pix_fmt",
        "yuv420p",
        str(path),
    )
    return path


def chatty_ffmpeg(folder: Path, chatter: int = 300_000) -> Path:
    """ffmpeg behind a script that first writes far more to stderr than a pipe holds (64 KiB), as
    ffmpeg's stats line does over about five minutes of a long run."""
    script = folder / "chatty-ffmpeg"
    script.write_text(
        f'#!/bin/sh\nhead -c {chatter} /dev/zero | tr "\\000" "x" >&2\nexec "{ffmpeg_binary()}" '
        '"$@"\n'
    )
    script.chmod(0o755)
    return script


def finishes(work, seconds: float) -> bool:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()


def test_a_chatty_ffmpeg_never_blocks_decoding_or_encoding(tmp_path, monkeypatch):
    clip = lavfi_clip(tmp_path / "clip.mp4")
    info = probe(clip)
    monkeypatch.setattr(video_io, "ffmpeg_binary", lambda: str(chatty_ffmpeg(tmp_path)))
    decoded: list = []

    def decode_then_encode() -> None:
        with Reader(info, (64, 48)) as reader:
            decoded.extend(reader.frames())
        encode(lambda: iter(decoded), tmp_path / "out.mp4", (64, 48), Fraction(10))

    # an unread stderr pipe blocks the script before ffmpeg even starts: decoding never ends
    assert finishes(decode_then_encode, 30), "ffmpeg blocked writing to an unread stderr pipe"
    video_io.kill_children()
    assert len(decoded) == 20
    assert probe(tmp_path / "out.mp4").frames == 20


def test_encoder_failure_names_the_file_and_quotes_ffmpeg(tmp_path):
    frame = lavfi_clip(tmp_path / "clip.mp4")
    with Reader(probe(frame), (64, 48)) as reader:
        frames = list(reader.frames())
    output = tmp_path / "out.mp4"
    with pytest.raises(OutputError) as error:
        encode(
            lambda: iter(frames),
            output,
            (64, 48),
            Fraction(10),
            settings=EncodeSettings(crf=18, preset="no-such-preset"),
        )
    message = str(error.value)
    assert "out.mp4: ffmpeg failed to encode" in message and "preset" in message.lower()
    assert "\n" not in message
    assert not output.exists() and not list(tmp_path.glob("*.tmp"))
