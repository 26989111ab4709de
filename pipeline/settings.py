"""The one source of truth for defaults: the library uses these, the CLI reads its defaults from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")

Optimizer = Literal["lbfgs", "adam"]
Precision = Literal["auto", "fp32", "bf16"]
Pooling = Literal["max", "avg"]


@dataclass
class StyleSettings:
    """How one image is stylized.

    Losses are the talk's (content: 1/2 sum (F-P)^2; style: E_l = 1/(4 N^2 M^2) sum (G-A)^2),
    each divided by its value for an all-zero feature map. That makes them dimensionless, so
    the same weights work at any image size and with either weights' input scale.
    """

    size: int = 512  # long side of the output, in pixels
    iterations: int = 300  # L-BFGS iterations (Adam steps) at the final scale
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
    init: str = "content"  # "content", "noise", or a path to an image
    seed: int = 0
    tolerance: float = 1e-3  # early stop: relative loss improvement over `patience` iterations
    patience: int = 20
    coarse_to_fine: bool | None = None  # None: on when size > coarse_threshold
    coarse_threshold: int = 512
    coarse_min_size: int = 256
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Precision = "auto"
    save_every: int = 0  # write an intermediate image every N iterations (0: never)


VideoInit = Literal["flow", "prev", "content"]
Fill = Literal["content", "warp", "blend"]


@dataclass
class VideoSettings:
    """How a video is stylized, on top of the per-frame StyleSettings."""

    init: VideoInit = "flow"  # warm start of frame t: flow-warped / unwarped result of t-1, or cold
    first_frame_scales: int = 2  # cold frames: at least this many coarse-to-fine sizes, sharing the budget where the photo ladder has fewer
    iterations_next: int = 12  # L-BFGS budget of frames after the first of a shot: a warm start needs few
    patience_next: int = 5  # early-stop window (iterations) of those frames
    temporal_weight: float = 1e3  # lambda of the temporal loss (0: off); only with init "flow"
    fill: Fill = "content"  # what disoccluded pixels of the warm start take
    scene_threshold: float = 0.15  # mean grey difference in [0, 1] above which a new shot starts
    start: float = 0.0  # seconds into the input
    duration: float | None = None  # seconds to take (None: to the end)
    max_frames: int | None = None
    codec: str = "libx264"
    crf: int = 18
    keep_frames: bool = False


@dataclass(frozen=True)
class FolderSettings:
    """How a folder of photos is processed, on top of the per-photo StyleSettings."""

    keep_size: bool = False  # upscale each result back to its photo's size
    quality: int = 95  # JPEG/WebP quality
    style_folders: bool = False  # several styles: OUT/<style>/... instead of name.<style>.ext
    overwrite: bool = False  # redo photos whose output exists


@dataclass(frozen=True)
class ClusterSettings:
    """Where and how wide to run on Ray (`--ray`)."""

    address: str = "auto"  # auto ($RAY_ADDRESS or a running local cluster) | local | host:port | ray://host:port
    workers: int | None = None  # default: one per `cpus_per_worker` CPUs of the cluster
    cpus_per_worker: int = 1
    chunk_frames: int = 150  # video: frames per chunk
    overlap_frames: int = 36  # video: frames two neighbouring chunks share, ramped across (long: see docs/scale-out.md)
