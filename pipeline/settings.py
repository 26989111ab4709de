"""The one source of truth for defaults: the library uses these, the CLI reads its defaults from
them.

Every settings class checks itself when built (`__post_init__`) and raises `SettingsError` naming
the CLI option, the bad value and what is allowed, so a bad value fails before any work starts,
whether it came from the command line or from Python.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, get_args

from pipeline.errors import SettingsError


def _vgg19_layer_names() -> tuple[str, ...]:
    """Names of the modules of torchvision's vgg19().features: conv1_1, relu1_1, ..., pool5.
    Pure Python (no torch): `pipeline.vgg` checks it against the real network."""
    names: list[str] = []
    for block, convs in enumerate((2, 2, 4, 4, 4), start=1):
        for index in range(1, convs + 1):
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
        names.append(f"pool{block}")
    return tuple(names)


JPEG_QUALITY = 95  # of JPEG/WebP outputs
VIDEO_CODEC = "libx264"
VIDEO_CRF = 18

LAYER_NAMES = _vgg19_layer_names()
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")

Optimizer = Literal["lbfgs", "adam"]
Precision = Literal["auto", "fp32", "bf16"]
Pooling = Literal["max", "avg"]

DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
WORKER_DEVICE = re.compile(r"cpu|cuda(:\d+)?")
WORKER_DEVICES = "use all (every GPU) or a comma-separated list such as cuda:0,cuda:1 (or cpu)"
# Encoders (and the codec names ffmpeg maps to them) whose CRF scale ends at 51; others (VP9, AV1)
# at 63.
CRF_51 = frozenset({"libx264", "libx264rgb", "libx265", "h264", "hevc"})


def _show(value: object) -> str:
    """A value as it would be typed on the command line."""
    if isinstance(value, (tuple, list)):
        return ",".join(_show(v) for v in value) or "''"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value if value and not any(c.isspace() for c in value) else repr(value)
    return str(value)


def _words(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]


def _fail(option: str, value: object, allowed: str) -> SettingsError:
    return SettingsError(f"{option} {_show(value)}: {allowed}")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _range(
    option: str, value: object, low: float, high: float | None, integer: bool, note: str = ""
) -> None:
    whole = not integer or (_number(value) and float(value).is_integer())
    if _number(value) and whole and low <= value and (high is None or value <= high):
        return
    span = f"{low:g} or more" if high is None else f"{low:g} to {high:g}"
    raise _fail(
        option, value, f"use {'a whole number, ' if integer and not whole else ''}{span}{note}"
    )


def _at_least(option: str, value: object, low: float, integer: bool = False) -> None:
    _range(option, value, low, None, integer)


def _between(
    option: str, value: object, low: float, high: float, integer: bool = False, note: str = ""
) -> None:
    _range(option, value, low, high, integer, note)


def _above(option: str, value: object, low: float) -> None:
    if not _number(value) or value <= low:
        raise _fail(option, value, f"use a number above {low:g}")


def _choice(option: str, value: object, kind: object) -> None:
    choices = get_args(kind)
    if value not in choices:
        raise _fail(option, value, f"use {_words(choices)}")


def _weights(option: str, values: tuple[float, ...]) -> None:
    if not all(_number(v) and v >= 0 for v in values) or sum(values) <= 0:
        raise _fail(option, values, "use non-negative weights, not all zero")


def _layer(option: str, name: object) -> None:
    if name not in LAYER_NAMES:
        convs = [n for n in LAYER_NAMES if n.startswith("conv")]
        raise _fail(
            option, name, f"not a VGG-19 layer; use {', '.join(convs)} (or a relu/pool name)"
        )


@dataclass(frozen=True)
class StyleSettings:
    """How one image is stylized.

    Losses are the talk's (content: 1/2 sum (F-P)^2; style: E_l = 1/(4 N^2 M^2) sum (G-A)^2),
    each divided by its value for an all-zero feature map. That makes them dimensionless, so
    the same weights work at any image size and with either weights' input scale.
    """

    # long side of the output, in pixels; None: the input's own ("--size full")
    size: int | None = 512
    # L-BFGS iterations (Adam steps) a scale; scales above coarse_threshold get fewer
    iterations: int = 300
    content_weight: float = 1.0
    style_weight: float = 1e2
    tv_weight: float = 0.0
    content_layer: str = "conv4_2"
    style_layers: tuple[str, ...] = STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None  # None: equal weights
    style_blend: tuple[float, ...] | None = None  # one weight per style image; None: equal
    style_scale: float = 1.0  # style image long side relative to the output's
    preserve_colors: bool = False
    pooling: Pooling = "max"
    optimizer: Optimizer = "lbfgs"
    learning_rate: float = 0.02  # Adam only; pixels are in [0, 1]
    # "content", "palette" (the content in the styles' colours), "noise", or a path to an image
    init: str = "content"
    seed: int = 0
    tolerance: float = 1e-3  # early stop: relative loss improvement over `patience` iterations
    patience: int = 20
    coarse_to_fine: bool | None = None  # None: on when size > coarse_threshold
    coarse_threshold: int = 512
    coarse_min_size: int = 256
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Precision = "auto"
    save_every: int = 0  # write an intermediate image every N iterations (0: never)
    # bytes the process may hold on a CPU, or a GPU's work may take (None: device.memory_budget)
    max_memory: int | None = None

    def __post_init__(self) -> None:
        if self.size is not None:
            _at_least("--size", self.size, 1, integer=True)
        _at_least("--iterations", self.iterations, 0, integer=True)
        _at_least("--content-weight", self.content_weight, 0)
        _at_least("--style-weight", self.style_weight, 0)
        _at_least("--tv-weight", self.tv_weight, 0)
        self._check_layers()
        if self.style_blend is not None:
            if not self.style_blend:
                raise _fail(
                    "--style-blend",
                    self.style_blend,
                    "give one weight per style image, or None for equal weights",
                )
            _weights("--style-blend", self.style_blend)
        _above("--style-scale", self.style_scale, 0)
        _choice("--pooling", self.pooling, Pooling)
        _choice("--optimizer", self.optimizer, Optimizer)
        _above("--lr", self.learning_rate, 0)
        if not isinstance(self.init, str) or not self.init:
            raise _fail("--init", self.init, "use content, palette, noise or the path of an image")
        _at_least("--tolerance", self.tolerance, 0)
        _at_least("--patience", self.patience, 1, integer=True)
        self._check_scales()
        if not isinstance(self.device, str) or not DEVICE.fullmatch(self.device):
            raise _fail("--device", self.device, "use auto, cpu, cuda or cuda:N")
        _choice("--precision", self.precision, Precision)
        _at_least("--save-every", self.save_every, 0, integer=True)
        if self.max_memory is not None:
            _at_least("--max-memory", self.max_memory, 2**20, integer=True)

    def _check_layers(self) -> None:
        """The content layer, the style layers and their weights, one per style layer."""
        _layer("--content-layer", self.content_layer)
        if isinstance(self.style_layers, str) or not self.style_layers:
            raise _fail(
                "--style-layers",
                self.style_layers,
                "give one or more comma-separated VGG-19 layers, e.g. conv1_1,conv2_1",
            )
        for name in self.style_layers:
            _layer("--style-layers", name)
        if self.style_layer_weights is not None:
            if len(self.style_layer_weights) != len(self.style_layers):
                raise _fail(
                    "--style-layer-weights",
                    self.style_layer_weights,
                    f"{len(self.style_layer_weights)} weights for {len(self.style_layers)} style "
                    "layers (one per --style-layers entry)",
                )
            _weights("--style-layer-weights", self.style_layer_weights)

    def _check_scales(self) -> None:
        """Coarse-to-fine: the switch and the sizes that decide its scales."""
        if self.coarse_to_fine not in (None, True, False):
            raise _fail(
                "--coarse-to-fine",
                self.coarse_to_fine,
                "use None (auto: on above coarse_threshold), True or False",
            )
        _at_least("coarse_threshold", self.coarse_threshold, 0, integer=True)
        _at_least("coarse_min_size", self.coarse_min_size, 1, integer=True)


def parse_size(text: str) -> int | None:
    """--size: a long side in pixels, or "full" (None: each input's own)."""
    if text.strip().lower() == "full":
        return None
    try:
        return int(text)
    except ValueError:
        raise _fail("--size", text, "give a long side in pixels, e.g. 512, or full") from None


def parse_offsets(text: str, option: str) -> tuple[int, ...]:
    """Frame distances, comma-separated ("1,10,30"), each at least 1; sorted, without repeats."""
    try:
        values = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise _fail(option, text, "give frame distances, comma-separated, e.g. 1,10,30") from None
    if not values or values[0] < 1:
        raise _fail(
            option, text, "give frame distances of at least 1, comma-separated, e.g. 1,10,30"
        )
    return values


def parse_bytes(text: str) -> int | None:
    """--max-memory: "auto" (None), or a number of bytes with an optional K, M, G or T suffix
    (powers of 1024)."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text == "AUTO":
        return None
    factor = 1024 ** ("KMGT".index(text[-1]) + 1) if text and text[-1] in "KMGT" else 1
    try:
        return int(float(text[:-1] if factor > 1 else text) * factor)
    except ValueError:
        raise _fail("--max-memory", text, "give a size such as 4G or 500M, or auto") from None


def check_style_count(settings: StyleSettings, count: int, note: str = "one per --style") -> None:
    """What StyleSettings cannot check alone: one --style-blend weight per style image. Loads
    nothing, so a caller can run it before any work; `Stylizer` runs it too."""
    if count < 1:
        raise SettingsError("at least one style image is needed (--style)")
    if settings.style_blend is not None and len(settings.style_blend) != count:
        raise _fail(
            "--style-blend",
            settings.style_blend,
            f"{len(settings.style_blend)} weights for {count} style "
            f"image{'s' if count != 1 else ''} ({note})",
        )


WarmStart = Literal["flow", "prev", "content"]
Fill = Literal["content", "warp", "blend", "patches"]


@dataclass(frozen=True)
class VideoSettings:
    """How a video is stylized, on top of the per-frame StyleSettings."""

    warm_start: WarmStart = "flow"  # of frame t: flow-warped / unwarped result of t-1, or cold
    # L-BFGS budget of frames after the first of a shot: a warm start needs few
    iterations_next: int = 12
    patience_next: int = 5  # early-stop window (iterations) of those frames
    # lambda of the temporal loss (0: off); only with warm_start "flow"
    temporal_weight: float = 1e4
    # earlier results the temporal loss warps onto a frame, in frames back
    temporal_frames: tuple[int, ...] = (1, 2, 4)
    # loss evaluations a later frame may take: its budget, line searches included
    evaluations_next: int = 8
    # fast motion: a later frame takes up to this many times evaluations_next, one more budget per
    # DAMAGE_SHARE of its pixels the warm start cannot vouch for (1: a fixed budget)
    catch_up: float = 1.0
    # fast motion: loss evaluations spent first on each wide region a later frame's warm start
    # cannot vouch for (what enters a fast pan, what a large object uncovers), on a crop around it
    # (0: off; hole_paint)
    paint_holes: int = 16
    # a later frame's L-BFGS starts from frame t-1's curvature (never across a cut)
    carry_curvature: bool = True
    # a fixed camera: pixels whose content differs by less than this (mean RGB, 0-1) from when their
    # result was made keep it, in the new light (0: off)
    hold_still: float = 0.0
    # a still camera: pixels the flow cannot vouch for start from the shot's first result where the
    # input looks as then (not the raw content)
    restore_still: bool = True
    # a pixel is vouched for only where the input warped along the flow looks alike too
    photo_check: bool = True
    # more: refinement passes over the video after the sequential one, alternating direction
    passes: int = 1
    fill: Fill = "patches"  # what the warm start takes where the flow cannot vouch for a pixel
    scene_threshold: float = 0.15  # mean grey difference in [0, 1] above which a new shot starts
    start: float = 0.0  # seconds into the input
    duration: float | None = None  # seconds to take (None: to the end)
    max_frames: int | None = None
    # frame rate of an image sequence (None: sequence_io.DEFAULT_FPS); a video keeps its own
    fps: Fraction | None = None
    # any video encoder of the ffmpeg in use (None: the container's default,
    # `video_io.default_codec`)
    codec: str | None = None
    crf: int = VIDEO_CRF
    keep_frames: bool = False

    def __post_init__(self) -> None:
        _choice("--video-init", self.warm_start, WarmStart)
        _at_least("--iterations-next", self.iterations_next, 0, integer=True)
        _at_least("--patience-next", self.patience_next, 1, integer=True)
        _at_least("--temporal-weight", self.temporal_weight, 0)
        if (
            not self.temporal_frames
            or 1 not in self.temporal_frames
            or any(not isinstance(k, int) or k < 1 for k in self.temporal_frames)
        ):
            raise _fail(
                "--temporal-frames",
                ",".join(map(str, self.temporal_frames)),
                "give frame distances that include 1, e.g. 1,2,4",
            )
        _at_least("--evaluations-next", self.evaluations_next, 1, integer=True)
        _at_least("--catch-up", self.catch_up, 1)
        _at_least("--paint-holes", self.paint_holes, 0, integer=True)
        _at_least("--passes", self.passes, 1, integer=True)
        _between("--hold-still", self.hold_still, 0, 1)
        _choice("--fill", self.fill, Fill)
        _between("--scene-threshold", self.scene_threshold, 0, 1)
        _at_least("--start", self.start, 0)
        if self.duration is not None:
            _above("--duration", self.duration, 0)
        if self.max_frames is not None:
            _at_least("--max-frames", self.max_frames, 1, integer=True)
        if self.fps is not None and not (isinstance(self.fps, Fraction) and self.fps > 0):
            raise _fail("--fps", self.fps, "give a positive rate, e.g. 24, 29.97 or 30000/1001")
        if self.codec is not None and (not isinstance(self.codec, str) or not self.codec.strip()):
            raise _fail(
                "--codec",
                self.codec,
                "name an ffmpeg video encoder, e.g. libx264, libx265 or libvpx-vp9",
            )
        check_crf(self.codec, self.crf)


Preset = Literal["draft", "standard", "best"]
# What each --preset changes from the defaults, by StyleSettings and VideoSettings field; an option
# given on the command line wins. Seconds per frame and losses of each: make bench-presets.
PRESETS: dict[str, dict[str, object]] = {
    "draft": {"size": 256, "iterations": 100, "iterations_next": 6, "evaluations_next": 6},
    "standard": {},
    "best": {"iterations": 500, "iterations_next": 24, "evaluations_next": 24, "passes": 2},
}


def check_crf(codec: str | None, crf: int) -> None:
    """x264 and x265 take 0-51, VP9 and AV1 0-63 (an unresolved codec: the wider range)."""
    if codec in CRF_51:
        _between("--crf", crf, 0, 51, integer=True, note=f" with {codec}")
    else:
        _between("--crf", crf, 0, 63, integer=True)


def parse_fps(text: str) -> Fraction:
    """`24`, `29.97` (read as 30000/1001, as NTSC rates are meant) or `30000/1001`."""
    try:
        rate = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise _fail("--fps", text, "give a rate such as 24, 29.97 or 30000/1001") from None
    ntsc = Fraction(round(rate * Fraction(1001, 1000)) * 1000, 1001)
    if "/" not in text and rate.denominator != 1 and abs(rate - ntsc) < Fraction(1, 200):
        rate = ntsc
    if rate <= 0:
        raise _fail("--fps", text, "give a positive rate")
    return rate


@dataclass(frozen=True)
class FolderSettings:
    """How a folder of photos is processed, on top of the per-photo StyleSettings."""

    keep_size: bool = False  # upscale each result back to its photo's size
    quality: int = JPEG_QUALITY
    style_folders: bool = False  # several styles: OUT/<style>/... instead of name.<style>.ext
    overwrite: bool = False  # redo photos whose output exists

    def __post_init__(self) -> None:
        _between("--quality", self.quality, 1, 100, integer=True)


@dataclass(frozen=True)
class ClusterSettings:
    """Where and how wide work items run beside this process: on several devices of this machine
    (`--devices`), or on Ray (`--ray`)."""

    # auto ($RAY_ADDRESS or a running local cluster) | local | host:port | ray://host:port
    address: str = "auto"
    workers: int | None = None  # default: one per `cpus_per_worker` CPUs of the cluster
    cpus_per_worker: int = 1
    gpus_per_worker: float = 0.0  # Ray: each worker sees this share of a GPU (or GPUs)
    # this machine's devices, one worker process each, without Ray: ("all",) is every GPU;
    # () runs on Ray
    devices: tuple[str, ...] = ()
    chunk_frames: int = 150  # video: frames per chunk
    # video: frames two neighbouring chunks share, ramped across: 10 % extra work at 150 frames
    # (make bench-cluster)
    overlap_frames: int = 15
    # video: a chunk inside a shot starts from the shot's first result carried onto it (False: cold,
    # which make bench-cluster measures against it)
    shot_heads: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.address, str) or not self.address.strip():
            raise _fail("--ray", self.address, "use auto, local, host:port or ray://host:port")
        if self.workers is not None:
            _at_least("--ray-workers", self.workers, 1, integer=True)
        _at_least("--ray-cpus-per-worker", self.cpus_per_worker, 1, integer=True)
        _at_least("--ray-gpus-per-worker", self.gpus_per_worker, 0)
        if self.devices != ("all",) and not all(
            isinstance(d, str) and WORKER_DEVICE.fullmatch(d) for d in self.devices
        ):
            raise _fail("--devices", ",".join(map(str, self.devices)), WORKER_DEVICES)
        _at_least("--overlap-frames", self.overlap_frames, 0, integer=True)
        _at_least("--chunk-frames", self.chunk_frames, 1, integer=True)
        if self.chunk_frames <= 2 * self.overlap_frames:
            raise _fail(
                "--chunk-frames",
                self.chunk_frames,
                f"must exceed twice --overlap-frames ({self.overlap_frames}), or a frame could "
                "lie in three chunks",
            )
