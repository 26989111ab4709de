"""`stylize eval-temporal`: how much a stylized video flickers, as the warping error of its frames
(flow and occlusions from the input), beside the input's own."""

from __future__ import annotations

from pathlib import Path

from pipeline.temporal import WarpingError
from pipeline.video_io import Reader, probe


def temporal_errors(source: Path, output: Path, max_frames: int | None = None) -> dict[str, float]:
    """Warping error of `output` (flow and occlusions from `source`) and of `source` itself."""
    source_info, output_info = probe(Path(source)), probe(Path(output))
    size = (output_info.width, output_info.height)
    of_output, of_input = WarpingError(), WarpingError()
    count = 0
    with Reader(source_info, size) as frames_in, Reader(output_info, size) as frames_out:
        for frame_in, frame_out in zip(frames_in.frames(max_frames), frames_out.frames(max_frames)):
            of_output.add(frame_in, frame_out)
            of_input.add(frame_in, frame_in)
            count += 1
    return {"output": of_output.value, "input": of_input.value, "frames": count}
