"""What `stylize video` reads: a video file or an image sequence, behind one interface, so that
warm starts, cuts, passes, resume and chunks never ask which of the two it is."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from pipeline.errors import SettingsError
from pipeline.sequence_io import SequenceReader, is_sequence, probe_sequence
from pipeline.video_io import Reader, VideoInfo, probe as probe_video

__all__ = ["open_reader", "probe"]


def probe(path: Path, fps: Fraction | None = None) -> VideoInfo:
    """A video's own description, or a sequence's at `fps` (a video keeps its own timing)."""
    if is_sequence(Path(path)):
        return probe_sequence(Path(path), fps)
    if fps is not None:
        raise SettingsError(
            f"--fps {fps}: for a folder or pattern of frames; {path} is a video and keeps its own "
            "timing"
        )
    return probe_video(Path(path))


def open_reader(
    info: VideoInfo,
    size: tuple[int, int],
    start: float = 0.0,
    duration: float | None = None,
    index: int = 0,
) -> Reader | SequenceReader:
    """Frames of the range at `size` from frame `index` of it on, decoded one at a time."""
    reader = SequenceReader if info.files else Reader
    return reader(info, size, start, duration, index)
