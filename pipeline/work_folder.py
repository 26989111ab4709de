"""The work folder of a video run: where it is (keyed by what changes the frames), one atomic PNG
per stylized frame, and frames.jsonl, the run's log. What a killed run leaves here, a rerun resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import OutputError
from pipeline.image_io import atomic_path
from pipeline.settings import StyleSettings, VideoSettings


def file_digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def source_digest(source: Path, files: tuple[Path, ...] = ()) -> str:
    """A video file's digest, or an image sequence's: over its frames' names and contents, in
    order."""
    if not files:
        return file_digest(source)
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{file_digest(path)}\0".encode())
    return digest.hexdigest()


# Part of the key, raised whenever the same settings would make different frames (a new decode, a
# new temporal term, a camera verdict per frame pair, a new flow; a new name of a file kept there):
# a run of another version then works in its own folder instead of mixing frames.
SCHEMA = 6


def work_folder(
    output: Path,
    source: Path,
    style_images: list[Path],
    style_settings: StyleSettings,
    video: VideoSettings,
    layout: dict | None = None,
    files: tuple[Path, ...] = (),
) -> Path:
    """Keyed by the input's and styles' content and every setting that changes the frames. `files`:
    an image sequence's frames. Beside the output file, or inside an output folder of frames."""
    # passes: each pass has its own subfolder and depends only on the passes before it, so adding
    # one reuses them
    frames_only = {
        k: v for k, v in asdict(video).items() if k not in ("codec", "crf", "keep_frames", "passes")
    }
    if video.fps is None or (video.start == 0 and video.duration is None):
        # a rate changes when frames are shown, and which ones only where a range is timed
        del frames_only["fps"]
    style_only = {
        k: v for k, v in asdict(style_settings).items() if k != "max_memory"
    }  # tiling changes no frame
    key = json.dumps(
        [
            SCHEMA,
            source_digest(source, files),
            [file_digest(p) for p in style_images],
            style_only,
            frames_only,
            layout,
        ],
        sort_keys=True,
        default=str,
    )
    name = f"frames-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    if output.suffix and "%" not in output.name:
        return output.parent / f".{output.name}.{name}"
    # a folder or a pattern of frames: its folder holds the work
    folder = output.parent if "%" in output.name else output
    return folder / f".{name}"


def other_work_folders(work_dir: Path) -> list[Path]:
    """Work folders beside this one for the same output, left by a run with other settings or an
    older version."""
    pattern = work_dir.name.rsplit("frames-", 1)[0] + "frames-*"
    return sorted(p for p in work_dir.parent.glob(pattern) if p.is_dir() and p != work_dir)


def frame_path(work_dir: Path, index: int) -> Path:
    return work_dir / f"{index:06d}.png"


def read_frame(path: Path) -> np.ndarray:
    """A frame as written: 8 or 16 bits (a deep source's frames keep their depth)."""
    return cv2.cvtColor(
        cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )


def write_frame(path: Path, frame: np.ndarray) -> None:
    """Atomically; a full disk or a lost folder names the frame and the cause (cv2.imwrite only
    says False)."""
    encoded, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if not encoded:
        raise OutputError(f"{path}: cannot encode frame")
    write_atomically(path, data.tobytes(), "frame")


def write_atomically(path: Path, data: bytes, what: str = "") -> None:
    """`data` into `path` through a temporary file; a full disk or a lost folder is one line naming
    the file and the cause (the work folder's frames, flows and curvature all go through here)."""
    with atomic_path(path) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as err:
            raise OutputError(
                f"{path}: cannot write {what + ' ' if what else ''}({err.strerror or err}); "
                "the frames before it are kept, a rerun resumes"
            ) from None


class FrameLog:
    """frames.jsonl in the work folder: one JSON line per run and per frame (iterations, losses,
    warnings)."""

    def __init__(self, folder: Path):
        self.path = folder / "frames.jsonl"

    def __enter__(self) -> FrameLog:
        try:
            self.file = open(self.path, "a")
        except OSError as err:
            raise OutputError(f"{self.path}: cannot write ({err.strerror or err})") from None
        return self

    def write(self, record: dict) -> None:
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as err:
            raise OutputError(
                f"{self.path}: cannot write ({err.strerror or err}); a rerun resumes"
            ) from None

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(OSError):  # a full disk must not hide the error that ended the run
            self.file.close()


# names the frame of the last checkpoint (carried_state)
CHECKPOINT = "checkpoint.json"


def curvature_path(work_dir: Path, index: int) -> Path:
    return work_dir / f"curvature-{index:06d}.pt"


@dataclass(frozen=True)
class Checkpoint:
    frame: int  # the last frame a resumed run keeps (-1: none)
    state: tuple[str, ...] = ()  # the files of the state frame `frame` hands on, in the folder


def read_checkpoint(work_dir: Path) -> Checkpoint | None:
    """The work folder's last checkpoint (frame -1 where it is damaged: every frame is made
    again; None: a folder from before checkpoints, whose frames are all kept)."""
    path = work_dir / CHECKPOINT
    try:
        data = json.loads(path.read_text())
        return Checkpoint(int(data["frame"]), tuple(str(name) for name in data["state"]))
    except FileNotFoundError:
        return None
    except OSError as err:
        raise OutputError(f"{path}: cannot read ({err.strerror or err})") from None
    except (ValueError, KeyError, TypeError):
        return Checkpoint(-1)


def resume_checkpoint(work_dir: Path) -> Checkpoint | None:
    """The checkpoint a run over `work_dir` resumes from: the folder's own; frame -1 (nothing
    kept) for a new folder, one with neither a checkpoint nor frame 0; None for a folder from
    before checkpoints, whose frames on disk are all kept. The run and its dry run both ask here."""
    checkpoint = read_checkpoint(work_dir)
    if checkpoint is None and not frame_path(work_dir, 0).is_file():
        return Checkpoint(-1)
    return checkpoint


def vouched_for(work_dir: Path, checkpoint: Checkpoint) -> bool:
    """Every frame up to the checkpoint and every state file it names is on disk: else a rerun
    makes every frame again (a file deleted, or lost to a power cut)."""
    frames = [frame_path(work_dir, i) for i in range(checkpoint.frame + 1)]
    state = [work_dir / name for name in checkpoint.state]
    return checkpoint.frame >= 0 and all(path.is_file() for path in frames + state)


def write_checkpoint(work_dir: Path, checkpoint: Checkpoint) -> None:
    data = {"frame": checkpoint.frame, "state": list(checkpoint.state)}
    write_atomically(work_dir / CHECKPOINT, json.dumps(data).encode())


def hold_path(work_dir: Path, index: int) -> Path:
    """Frame `index`'s hold reference (--hold-still)."""
    return work_dir / f"hold-{index:06d}.npz"
