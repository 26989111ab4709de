"""`stylize`: the command line. It parses arguments and calls the library; nothing else."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
import functools
import inspect
import logging
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional

import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cli import signals
from pipeline.errors import SettingsError, StylizeError
from pipeline.report import BatchReport, format_duration
from pipeline.settings import (
    JPEG_QUALITY,
    parse_bytes,
    parse_fps,
    parse_offsets,
    parse_size,
    ClusterSettings,
    Fill,
    FolderSettings,
    StyleSettings,
    WarmStart,
    VideoSettings,
    check_style_count,
)
from pipeline.settings import (
    PRESETS,
    Optimizer as OptimizerName,
    Pooling as PoolingName,
    Precision as PrecisionName,
    Preset as PresetName,
)

if TYPE_CHECKING:  # the jobs (and torch) load only when a command runs them
    from pipeline.frames import FrameReport
    from pipeline.video_job import VideoResult


def _click_errors() -> tuple[type[Exception], ...]:
    """typer 0.2x carries its own click, whose errors derive from typer.TyperException; older
    typer raised click's."""
    kinds = [getattr(typer, "TyperException", None)]
    try:
        import click

        kinds.append(click.ClickException)
    except ImportError:
        pass
    return tuple(kind for kind in kinds if kind is not None)


# options that measurements rejected, with what to do instead
# (docs/benchmarks.md, make bench-temporal)
REMOVED = {
    "--anchor-weight": "it held a still background at the price of flicker; for a fixed camera "
    "use --hold-still 0.03",
    "--flow-snap": "it flickered more than it saved; the flow is already taken as zero where the "
    "camera is still",
    "--still-flow": "the still-aware flow is always on",
    "--no-still-flow": "the still-aware flow is always on",
    "--first-frame-scales": "a shot's first frame runs as a photo does; use --coarse-to-fine "
    "on|off",
}


def usage_message(error: Exception) -> str:
    """click's message in one line; for an option that was removed, what to do instead."""
    name = getattr(error, "option_name", None)
    if type(error).__name__ == "NoSuchOption" and name in REMOVED:
        return f"{name} was removed: {REMOVED[name]}"
    message = " ".join(line.strip() for line in error.format_message().splitlines() if line.strip())
    return message.replace("Value error, ", "")


class OneLineErrors(TyperGroup):
    """Usage errors (unknown option, bad choice, number out of range) as one line `error: ...` on
    stderr and exit code 2, as the library's errors, instead of click's usage box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            # not standalone: click raises its errors instead of printing them, and returns exit
            # codes
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Exit as stop:
            code = stop.exit_code
        except _click_errors() as error:
            # click >= 8.2: no arguments, the help is the message
            if type(error).__name__ == "NoArgsIsHelpError":
                if error.format_message():  # empty where rich printed the help already
                    typer.echo(error.format_message(), err=True)
            else:
                err.print(
                    f"[bold red]error:[/] {escape(usage_message(error))}",
                    highlight=False,
                    soft_wrap=True,
                )
            code = error.exit_code
        except typer.Abort as abort:
            # a signal outside a command's own handling
            if isinstance(abort.__cause__, KeyboardInterrupt):
                err.print(signals.exit_line(abort.__cause__), highlight=False)
                code = signals.exit_code(abort.__cause__)
            else:
                err.print("Aborted!", highlight=False)
                code = 1
        # a command's return value is None (success) unless typer.Exit gave a code
        sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    help="Neural style transfer (Gatys et al.) for images, photo folders and videos.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)
err = Console(stderr=True)
out = Console()
DEFAULTS = StyleSettings()


class ConsoleLog(logging.Handler):
    """What the library logs (the precision it chose, warnings): one plain line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "[yellow]warning:[/] " if record.levelno >= logging.WARNING else ""
        err.print(prefix + escape(record.getMessage()), highlight=False, soft_wrap=True)


@app.callback()
def setup() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(message)s", handlers=[ConsoleLog()], force=True
    )
    if threading.current_thread() is threading.main_thread():
        signals.install()


@contextmanager
def user_errors() -> Iterator[None]:
    """Library errors become one line on stderr and exit code 2; Ctrl-C exits 130, SIGTERM 143."""
    try:
        yield
    except StylizeError as error:
        err.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt as stop:
        err.print(signals.exit_line(stop), highlight=False)
        raise typer.Exit(signals.exit_code(stop)) from None


def floats(text: str | None, what: str) -> tuple[float, ...] | None:
    """ "0.7,0.3" as numbers; raises SettingsError (one line via `user_errors`) if it is not."""
    if not text:
        return None
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise SettingsError(f"{what} {text}: use comma-separated numbers, e.g. 0.7,0.3") from None


def on_off_auto(value: str, what: str) -> bool | None:
    choices = {"auto": None, "on": True, "off": False}
    if value not in choices:
        raise SettingsError(f"{what} {value}: use auto, on or off")
    return choices[value]


class PlainProgress:
    """Progress for a log file (stderr not a terminal): one plain line at the first update, at each
    tenth of the work, at the end, and at least every `every` seconds while work goes on."""

    def __init__(self, label: str, every: float = 30.0):
        self.label, self.every = label, every
        self.state: tuple[int, int | None, str] | None = None
        # elapsed counts from here, as the bar's does; the rate from the first update
        self.created = time.monotonic()
        self.started = self.printed = 0.0
        # units already done at the first update (resumed): not counted in the rate
        self.first_done = 0
        self.tenth = -1
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.ticker = threading.Thread(target=self._tick, daemon=True)

    def show(self, completed: int, total: int | None, info: str = "") -> None:
        # an engine's budget can run one over
        completed = min(completed, total) if total else completed
        with self.lock:
            now = time.monotonic()
            if self.state is None:
                self.started, self.first_done = now, completed
                self.ticker.start()
            self.state = (completed, total, info)
            tenth = completed * 10 // total if total else -1
            # the end is the last tenth: one line
            if tenth != self.tenth or now - self.printed >= self.every:
                self.tenth = tenth
                self._print(now)

    def _tick(self) -> None:
        while not self.stop.wait(self.every / 6):
            with self.lock:
                if time.monotonic() - self.printed >= self.every:
                    self._print(time.monotonic())

    def _print(self, now: float) -> None:
        completed, total, info = self.state
        measured, fresh = now - self.started, completed - self.first_done
        parts = [
            f"{self.label}: {completed}/{total} ({completed / total:.0%})"
            if total
            else f"{self.label}: {completed}"
        ]
        if info:
            parts.append(info)
        if fresh > 0:
            parts.append(f"{measured / fresh:.1f} s each")
        parts.append(f"elapsed {format_duration(now - self.created)}")
        if total and fresh > 0:
            parts.append(f"eta {format_duration(measured / fresh * (total - completed))}")
        err.print("  ".join(parts), highlight=False, soft_wrap=True, markup=False)
        self.printed = now

    def close(self) -> None:
        self.stop.set()


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[..., None]]:
    """A rich bar with a count, a text field, elapsed time and ETA, drawn from its first update on
    (so that an early error prints alone); plain lines instead where stderr is a log file. Yields
    `show(completed, total, info)`."""
    if not err.is_terminal:
        plain = PlainProgress(label)
        try:
            yield plain.show
        finally:
            plain.close()
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    bar = Progress(*columns, console=err)
    task = bar.add_task(label, total=None, info="")

    def show(completed: int, total: int | None, info: str = "") -> None:
        bar.start()
        bar.update(
            task, total=total, completed=min(completed, total) if total else completed, info=info
        )

    try:
        yield show
    finally:
        if bar.live.is_started:
            bar.stop()


def iteration_progress(show: Callable[..., None]) -> Callable:
    """The engine's callback: iterations over all scales, with the current losses."""

    def update(progress) -> None:
        parts = progress.losses
        info = (
            f"loss {parts['total']:.4g} "
            f"(content {parts['content']:.3g}, style {parts['style']:.3g})"
        )
        if progress.scales > 1:
            height, width = progress.image.shape[-2:]
            info = f"scale {progress.scale}/{progress.scales} {width}x{height}  {info}"
        if progress.tile is not None:
            info += f"  tile {progress.tile[0]}/{progress.tile[1]}"
        show(progress.done, progress.budget, info)

    return update


Style = Annotated[
    list[Path],
    typer.Option("--style", "-s", help="Style image; repeat for several (see --style-blend)."),
]
Size = Annotated[
    str, typer.Option(help="Long side of the output in pixels, or full (the input's own).")
]
MaxMemory = Annotated[
    str,
    typer.Option(
        "--max-memory", help="Most memory the process may hold, e.g. 4G; larger images are tiled."
    ),
]
Iterations = Annotated[
    int, typer.Option(min=0, help="Optimizer iterations per scale (a shot's first frame, a photo).")
]
ContentWeight = Annotated[float, typer.Option(min=0, help="Weight of the content loss.")]
StyleWeight = Annotated[float, typer.Option(min=0, help="Weight b of the style loss.")]
TVWeight = Annotated[float, typer.Option(min=0, help="Total-variation weight (0: off).")]
ContentLayer = Annotated[str, typer.Option(help="VGG-19 layer of the content loss.")]
StyleLayers = Annotated[str, typer.Option(help="Comma-separated VGG-19 layers of the style loss.")]
LayerWeights = Annotated[
    Optional[str], typer.Option(help="Weight per style layer, comma-separated (default: equal).")
]
Blend = Annotated[
    Optional[str], typer.Option(help="Weight per style image, e.g. 0.7,0.3 (default: equal).")
]
StyleScale = Annotated[float, typer.Option(help="Style image size relative to the output.")]
PreserveColors = Annotated[
    bool,
    typer.Option(
        "--preserve-colors", help="Keep the content's colours; transfer the style in luminance."
    ),
]
Pooling = Annotated[PoolingName, typer.Option(help="VGG pooling: max, or avg (as Gatys et al.).")]
OptimizerOpt = Annotated[OptimizerName, typer.Option("--optimizer", help="lbfgs or adam.")]
LearningRate = Annotated[float, typer.Option("--lr", help="Adam learning rate (pixels in [0, 1]).")]
Init = Annotated[
    str,
    typer.Option(
        help="Start from: content (the photo), palette (the photo in the painting's colours), "
        "noise, or an image path."
    ),
]
Seed = Annotated[int, typer.Option(help="Random seed; the same seed gives the same pixels.")]
Tolerance = Annotated[
    float,
    typer.Option(
        min=0, help="Stop when the loss improves less than this over --patience iterations."
    ),
]
Patience = Annotated[int, typer.Option(min=1, help="Iterations over which --tolerance is judged.")]
CoarseToFine = Annotated[
    Literal["auto", "on", "off"],
    typer.Option(help="Optimize at half size first: auto (above 512 px), on, off."),
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Precision = Annotated[
    PrecisionName,
    typer.Option(help="auto (bf16 where the hardware has it and it is faster), fp32, bf16."),
]
SaveEvery = Annotated[
    int, typer.Option(min=0, help="Write an intermediate image every N iterations (0: never).")
]
Weights = Annotated[
    Optional[str],
    typer.Option(help="VGG-19 weights: embedded, torchvision (downloads once) or a file."),
]
Quality = Annotated[int, typer.Option(min=1, max=100, help="JPEG/WebP quality of the output.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
Ray = Annotated[
    Optional[str],
    typer.Option(help="Ray cluster: auto, local, or an address (needs the [cluster] extra)."),
]
RayWorkers = Annotated[
    Optional[int],
    typer.Option(min=1, help="Ray workers (default: cluster CPUs / --ray-cpus-per-worker)."),
]
RayCpus = Annotated[int, typer.Option(min=1, help="CPUs (and torch threads) per Ray worker.")]
RayGpus = Annotated[
    float, typer.Option(min=0, help="GPUs per Ray worker (each worker uses its own; 0: none).")
]
Devices = Annotated[
    Optional[str],
    typer.Option(
        help="Run on several devices of this machine at once, one worker each, without Ray: all"
        " (every GPU) or a list such as cuda:0,cuda:1. Video: chunks of frames; folder: photos."
    ),
]


def cluster_settings(ray: str | None, devices: str | None, **values) -> ClusterSettings | None:
    """The --ray or --devices settings, checked even where neither is given; None: this process."""
    if devices is not None:
        given = ["--ray"] if ray else []
        for name in ("workers", "cpus_per_worker", "gpus_per_worker"):
            if values.get(name) != getattr(CLUSTER, name):
                given.append(f"--ray-{name.replace('_', '-')}")
        if given:
            raise SettingsError(f"--devices runs without Ray: {', '.join(given)} does not apply")
    names = tuple(name.strip() for name in devices.split(",")) if devices is not None else ()
    cluster = ClusterSettings(address=ray or CLUSTER.address, devices=names, **values)
    return cluster if ray or devices is not None else None


def build_settings(**values) -> StyleSettings:
    values["size"] = parse_size(values["size"])
    values["max_memory"] = parse_bytes(values["max_memory"])
    values["style_layers"] = tuple(
        part.strip() for part in values["style_layers"].split(",") if part.strip()
    )
    values["style_layer_weights"] = floats(values["style_layer_weights"], "--style-layer-weights")
    values["style_blend"] = floats(values["style_blend"], "--style-blend")
    values["coarse_to_fine"] = on_off_auto(values["coarse_to_fine"], "--coarse-to-fine")
    return StyleSettings(**values)


def _style_options(
    size: Size = str(DEFAULTS.size),
    iterations: Iterations = DEFAULTS.iterations,
    content_weight: ContentWeight = DEFAULTS.content_weight,
    style_weight: StyleWeight = DEFAULTS.style_weight,
    tv_weight: TVWeight = DEFAULTS.tv_weight,
    content_layer: ContentLayer = DEFAULTS.content_layer,
    style_layers: StyleLayers = ",".join(DEFAULTS.style_layers),
    style_layer_weights: LayerWeights = None,
    style_blend: Blend = None,
    style_scale: StyleScale = DEFAULTS.style_scale,
    preserve_colors: PreserveColors = DEFAULTS.preserve_colors,
    pooling: Pooling = DEFAULTS.pooling,
    optimizer: OptimizerOpt = DEFAULTS.optimizer,
    learning_rate: LearningRate = DEFAULTS.learning_rate,
    init: Init = DEFAULTS.init,
    seed: Seed = DEFAULTS.seed,
    tolerance: Tolerance = DEFAULTS.tolerance,
    patience: Patience = DEFAULTS.patience,
    coarse_to_fine: CoarseToFine = "auto",
    device: Device = DEFAULTS.device,
    precision: Precision = DEFAULTS.precision,
    max_memory: MaxMemory = "auto",
) -> None:
    """The StyleSettings options every command shares; `with_style_options` adds them."""


def with_settings(
    options: Callable, name: str, build: Callable[..., Any]
) -> Callable[[Callable], Callable]:
    """Give a command the options of the template function `options`; it receives them built into
    one settings object, as its argument `name` (checked, one line and exit 2 when a value is
    bad)."""

    def decorate(command: Callable) -> Callable:
        own = inspect.signature(command, eval_str=True)
        shared = inspect.signature(options, eval_str=True)
        params = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in own.parameters.values()
            if p.name != name
        ]
        params += [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in shared.parameters.values()
        ]

        @functools.wraps(command)
        def wrapper(**kwargs):
            values = {key: kwargs.pop(key) for key in shared.parameters}
            with user_errors():
                built = build(**values)
            return command(**{name: built}, **kwargs)

        wrapper.__signature__ = own.replace(parameters=params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


with_style_options = with_settings(_style_options, "settings", build_settings)

PresetOpt = Annotated[
    PresetName,
    typer.Option(help="draft (quick look), standard, or best (slower); options given win."),
]


def with_preset(command: Callable) -> Callable:
    """Give `command` the --preset option: each setting of the preset that the command line leaves
    at its default takes the preset's value."""
    own = inspect.signature(command)
    extra = [
        inspect.Parameter(
            "preset", inspect.Parameter.KEYWORD_ONLY, annotation=PresetOpt, default="standard"
        ),
        inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context),
    ]

    @functools.wraps(command)
    def wrapper(preset: str, ctx: typer.Context, **kwargs):
        for name, value in PRESETS[preset].items():
            if name in kwargs and ctx.get_parameter_source(name).name == "DEFAULT":
                kwargs[name] = (
                    ",".join(map(str, value))
                    if isinstance(value, tuple)
                    else type(kwargs[name])(value)
                )
        return command(**kwargs)

    wrapper.__signature__ = own.replace(parameters=[*own.parameters.values(), *extra])
    return wrapper


PANELS = {  # --help groups, common options first; anything not named here goes under "Advanced"
    "Input and output": (
        "output",
        "style",
        "samples",
        "overwrite",
        "fps",
        "keep_frames",
        "quality",
        "keep_size",
        "style_folders",
        "dry_run",
    ),
    "Style": (
        "style_weight",
        "style_weights",
        "content_weight",
        "preserve_colors",
        "style_blend",
        "style_scale",
    ),
    "Quality and speed": (
        "preset",
        "size",
        "iterations",
        "iterations_next",
        "max_memory",
        "device",
        "precision",
    ),
    "Video consistency": (
        "temporal_weight",
        "temporal_frames",
        "hold_still",
        "passes",
        "scene_threshold",
        "video_init",
    ),
    "Range and encoding": ("start", "duration", "max_frames", "codec", "crf"),
    "Cluster": (
        "devices",
        "ray",
        "ray_workers",
        "ray_cpus_per_worker",
        "ray_gpus_per_worker",
        "chunk_frames",
        "overlap_frames",
    ),
}
PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}
PANEL_ORDER = [*PANELS, "Advanced"]


def in_panels(command: Callable) -> Callable:
    """Put each option of `command` in its --help panel, and order them panel by panel (typer shows
    panels in the order of their first option); arguments stay first."""
    signature = inspect.signature(command)

    def rank(parameter: inspect.Parameter) -> tuple[int, int]:
        info = next(
            (
                m
                for m in getattr(parameter.annotation, "__metadata__", ())
                if isinstance(m, typer.models.OptionInfo)
            ),
            None,
        )
        if info is None:
            return -1, 0
        panel = PANEL_OF.get(parameter.name, "Advanced")
        info.rich_help_panel = panel
        names = PANELS.get(panel, ())
        return PANEL_ORDER.index(panel), names.index(
            parameter.name
        ) if parameter.name in names else 0

    ordered = sorted(signature.parameters.values(), key=rank)
    command.__signature__ = signature.replace(parameters=ordered)
    return command


@app.command()
@in_panels
@with_preset
@with_style_options
def image(
    content: Annotated[Path, typer.Argument(help="The photo to stylize.", show_default=False)],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output image (format from the extension).")
    ],
    style: Style,
    settings: StyleSettings,
    save_every: SaveEvery = DEFAULTS.save_every,
    weights: Weights = None,
    quality: Quality = JPEG_QUALITY,
    overwrite: Overwrite = False,
) -> None:
    """Stylize one image."""
    with user_errors():  # every option is checked before any work
        settings = replace(settings, save_every=save_every)
        check_style_count(settings, len(style))
    from pipeline.image_job import stylize_file

    with user_errors(), progress_bar(content.name) as show:
        result = stylize_file(
            content,
            style,
            output,
            settings=settings,
            weights=weights,
            callback=iteration_progress(show),
            quality=quality,
            overwrite=overwrite,
        )
    losses = result.losses
    out.print(
        f"wrote {output}  ({result.iterations} iterations, {result.evaluations} evaluations, "
        f"{result.seconds:.1f} s; "
        f"content {losses['content']:.4g}, style {losses['style']:.4g})",
        highlight=False,
    )


VIDEO = VideoSettings()
FOLDER = FolderSettings()
CLUSTER = ClusterSettings()


def option(kind: Any, *names: str, **settings: Any) -> Any:
    """A typer option of `kind`: its flag names (default: from the parameter) and settings."""
    return Annotated[kind, typer.Option(*names, **settings)]


VideoInitOption = option(
    WarmStart,
    "--video-init",
    help="Start of each later frame: flow (warped), prev (as is), content (cold).",
)
IterationsNextOption = option(int, min=0, help="Iterations of each later frame of a shot.")
PatienceNextOption = option(
    int, min=1, help="Early-stop window of each later frame, in iterations."
)
TemporalWeightOption = option(float, min=0, help="Weight of the temporal loss (0: off).")
TemporalFramesOption = option(
    str, help="Earlier frames the temporal loss looks back at, e.g. 1,2,4."
)
EvaluationsNextOption = option(int, min=1, help="Loss evaluations each later frame may take.")
CatchUpOption = option(
    float,
    min=1,
    help="Fast motion: a later frame the flow cannot fully vouch for takes up to this many times"
    " its evaluations (try 3).",
)
PaintHolesOption = option(
    int,
    min=0,
    help="Fast motion: evaluations spent first on each wide region the flow cannot carry (what"
    " enters a fast pan), on a crop around it (0: off).",
)
CarryCurvatureOption = option(
    bool,
    "--carry-curvature/--no-carry-curvature",
    help="Start each later frame's L-BFGS from the previous frame's curvature.",
)
RestoreStillOption = option(
    bool, help="Still camera: refill uncovered pixels from the shot's first result."
)
PhotoCheckOption = option(bool, help="Trust the warp only where the warped input matches too.")
HoldStillOption = option(
    float, min=0, max=1, help="Fixed camera: keep results where the input changed less (try 0.03)."
)
PassesOption = option(
    int, min=1, help="Passes over the video; more refine each frame toward its neighbours."
)
FillOption = option(
    Fill,
    help="What the warm start takes where the flow cannot carry the result: patches (painted,"
    " from where the input looks alike), content, warp or blend.",
)
SceneThresholdOption = option(
    float, min=0, max=1, help="Mean grey difference (0-1) between frames that starts a new shot."
)
StartOption = option(float, min=0, help="Seconds into the input to start at.")
DurationOption = option(Optional[float], help="Seconds to stylize (default: to the end).")
MaxFramesOption = option(Optional[int], min=1, help="Stop after this many frames.")
FpsOption = option(
    Optional[str], help="Frame rate of a sequence of frames (default: 24); a video keeps its own."
)
CodecOption = option(
    Optional[str], help="ffmpeg video encoder (default: libx264; libvpx-vp9 for .webm)."
)
CrfOption = option(int, min=0, max=63, help="Encoder quality, lower is better (x264/x265: 0-51).")
KeepFramesOption = option(
    bool, "--keep-frames", help="Keep the work folder of stylized frames after encoding."
)


def _video_options(
    video_init: VideoInitOption = VIDEO.warm_start,
    iterations_next: IterationsNextOption = VIDEO.iterations_next,
    patience_next: PatienceNextOption = VIDEO.patience_next,
    temporal_weight: TemporalWeightOption = VIDEO.temporal_weight,
    temporal_frames: TemporalFramesOption = ",".join(map(str, VIDEO.temporal_frames)),
    evaluations_next: EvaluationsNextOption = VIDEO.evaluations_next,
    catch_up: CatchUpOption = VIDEO.catch_up,
    paint_holes: PaintHolesOption = VIDEO.paint_holes,
    carry_curvature: CarryCurvatureOption = VIDEO.carry_curvature,
    restore_still: RestoreStillOption = VIDEO.restore_still,
    photo_check: PhotoCheckOption = VIDEO.photo_check,
    hold_still: HoldStillOption = VIDEO.hold_still,
    passes: PassesOption = VIDEO.passes,
    fill: FillOption = VIDEO.fill,
    scene_threshold: SceneThresholdOption = VIDEO.scene_threshold,
    start: StartOption = VIDEO.start,
    duration: DurationOption = None,
    max_frames: MaxFramesOption = None,
    fps: FpsOption = None,
    codec: CodecOption = None,
    crf: CrfOption = VIDEO.crf,
    keep_frames: KeepFramesOption = False,
) -> None:
    """The VideoSettings options of the `video` command."""


def build_video_settings(
    video_init: str, temporal_frames: str, fps: str | None, **values
) -> VideoSettings:
    return VideoSettings(
        warm_start=video_init,
        temporal_frames=parse_offsets(temporal_frames, "--temporal-frames"),
        fps=None if fps is None else parse_fps(fps),
        **values,
    )


@app.command()
@in_panels
@with_preset
@with_style_options
@with_settings(_video_options, "video_settings", build_video_settings)
def video(
    source: Annotated[
        Path,
        typer.Argument(
            help="A video, or its frames: a folder, shot/%04d.png or 'shot/*.png'.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="A video file, or frames: a folder (out/) or a pattern (out/%04d.png).",
        ),
    ],
    style: Style,
    settings: StyleSettings,
    video_settings: VideoSettings,
    weights: Weights = None,
    overwrite: Overwrite = False,
    devices: Devices = None,
    ray: Ray = None,
    ray_workers: RayWorkers = None,
    ray_cpus_per_worker: RayCpus = CLUSTER.cpus_per_worker,
    ray_gpus_per_worker: RayGpus = CLUSTER.gpus_per_worker,
    chunk_frames: Annotated[
        int, typer.Option(min=1, help="Frames per chunk (--devices, --ray).")
    ] = CLUSTER.chunk_frames,
    overlap_frames: Annotated[
        int, typer.Option(min=0, help="Frames neighbouring chunks share, blended across the seam.")
    ] = CLUSTER.overlap_frames,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Count frames and shots, estimate time and disk; write nothing."
        ),
    ] = False,
) -> None:
    """Stylize a video or a sequence of frames: every frame shown when its input was, colour, audio,
    subtitles and tags kept; resumable after a crash."""
    # every option is checked before any work (the --ray ones even without --ray)
    with user_errors():
        cluster = cluster_settings(
            ray,
            devices,
            workers=ray_workers,
            cpus_per_worker=ray_cpus_per_worker,
            gpus_per_worker=ray_gpus_per_worker,
            chunk_frames=chunk_frames,
            overlap_frames=overlap_frames,
        )
        check_style_count(settings, len(style))
        from pipeline.video_io import encode_settings

        encode_settings(output, video_settings.codec, video_settings.crf)
    job = {"style_settings": settings, "video": video_settings, "weights": weights}
    if dry_run:
        print_video_estimate(source, style, output, job, cluster)
        return
    started = time.monotonic()
    result = stylize_video_with_progress(
        source, style, output, job, overwrite=overwrite, cluster=cluster
    )
    print_video_result(result, video_settings.keep_frames, time.monotonic() - started)


def stylize_video_with_progress(
    source: Path,
    style: list[Path],
    output: Path,
    job: dict[str, Any],
    *,
    overwrite: bool,
    cluster: ClusterSettings | None,
) -> VideoResult:
    """`stylize_video` under one bar of frames (with --devices or --ray, the frames the workers
    have written, and the chunks done). `job`: the settings and weights, as `stylize_video` and
    `estimate_video` take them."""
    from pipeline.video_job import stylize_video

    with user_errors(), progress_bar(source.name) as show:
        return stylize_video(
            source,
            style,
            output,
            **job,
            overwrite=overwrite,
            on_frame=frame_progress(show),
            cluster=cluster,
            on_chunk=chunk_progress(show),
        )


def frame_progress(show: Callable[..., None]) -> Callable[[FrameReport], None]:
    """The video job's callback: frames done, each with how it started and what it cost."""

    def update(report: FrameReport) -> None:
        info = (
            "resumed"
            if report.skipped
            else f"{'cold' if report.cold else 'warm'} {report.evaluations} evals "
            f"{report.seconds:.1f} s"
        )
        show(report.index + 1, report.total, info)

    return update


def chunk_progress(show: Callable[..., None]) -> Callable[[int, int, int, int, int], None]:
    """The chunked video job's callback: the frames the workers have written (an overlap's in
    each of its chunks), the chunks done, and how many workers run them."""

    def update(done: int, total: int, workers: int, frames: int, all_frames: int) -> None:
        named = f"{workers} worker{'s' if workers != 1 else ''}"
        show(frames, all_frames, f"{done}/{total} chunks, {named}")

    return update


def print_video_result(result: VideoResult, keep_frames: bool, seconds: float) -> None:
    for line in result.log:
        err.print(line, highlight=False)
    kept = f"; frames and per-frame log kept in {result.work_dir}" if keep_frames else ""
    out.print(
        f"wrote {result.output}  ({result.frames} frames, {result.computed} stylized by this run "
        f"in {format_duration(seconds)}, {len(result.cuts)} scene cuts{kept})",
        highlight=False,
        soft_wrap=True,
    )


def print_video_estimate(
    source: Path,
    style: list[Path],
    output: Path,
    job: dict[str, Any],
    cluster: ClusterSettings | None = None,
) -> None:
    from pipeline.video_estimate import estimate_video

    video_settings = job["video"]
    with user_errors():
        guess = estimate_video(source, style, output, **job)
    cuts = (
        " (cuts before frames "
        f"{', '.join(map(str, guess.cuts[:12]))}{', ...' if len(guess.cuts) > 12 else ''})"
        if guess.cuts
        else ""
    )
    resumed = f"; {guess.resumed} frames are done and would be resumed" if guess.resumed else ""
    passes = f" per pass, {video_settings.passes} passes" if video_settings.passes > 1 else ""
    out.print(
        f"{source}: {guess.frames} frames at {guess.size[0]}x{guess.size[1]}, {guess.shots} "
        f"shot{'s' * (guess.shots > 1)}{cuts}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"estimated {format_duration(guess.seconds)} on this machine: a shot's first frame "
        f"{guess.first_frame_seconds:.0f} s, "
        f"each later frame {guess.later_frame_seconds:.1f} s{passes}{resumed}",
        highlight=False,
        soft_wrap=True,
    )
    if cluster is not None and cluster.devices:
        print_spread(guess, cluster)
    # a chunked run's folder is keyed by its chunks as well: not the one the estimate looked in
    where = f"in {guess.work_dir}" if cluster is None else f"beside {output.name}"
    out.print(
        f"work folder: about {_size(guess.work_bytes)} {where}; nothing was written",
        highlight=False,
        soft_wrap=True,
    )


def print_spread(guess, cluster: ClusterSettings) -> None:
    """The --devices run's time: the estimate's work in chunks over the workers."""
    from pipeline.device_pool import resolve_devices
    from pipeline.video_estimate import spread_over

    with user_errors():
        workers = len(resolve_devices(cluster.devices))
    seconds = spread_over(guess, workers, cluster)
    out.print(
        f"with --devices {','.join(cluster.devices)}: about {format_duration(seconds)} in chunks"
        f" of {cluster.chunk_frames} frames over {workers} worker{'s' * (workers > 1)}, if each"
        " device runs as fast as the one timed",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
@in_panels
@with_preset
@with_style_options
def preview(
    source: Annotated[
        Path,
        typer.Argument(
            help="A video (or a pattern of frames), or a folder of photos.", show_default=False
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The contact sheet to write, e.g. sheet.jpg.")
    ],
    style: Style,
    settings: StyleSettings,
    style_weights: Annotated[
        Optional[str],
        typer.Option(help="Style weights to compare, e.g. 30,100,300 (default: --style-weight)."),
    ] = None,
    samples: Annotated[
        int, typer.Option(min=1, max=12, help="Frames (or photos) spread over the input.")
    ] = 3,
    weights: Weights = None,
    overwrite: Overwrite = False,
) -> None:
    """Before the overnight run: a few frames spread over the input, stylized small for each style
    weight, in one contact sheet with the whole run's estimated time."""
    with user_errors():
        check_style_count(settings, len(style))
        tries = floats(style_weights, "--style-weights") or ()
        if any(w < 0 for w in tries):
            raise SettingsError(f"--style-weights {style_weights}: give weights of 0 or more")
    from pipeline.preview import make_preview

    with user_errors(), progress_bar(f"{source.name} preview") as show:
        sheet = make_preview(
            source,
            style,
            output,
            settings=settings,
            style_weights=tries,
            samples=samples,
            weights=weights,
            overwrite=overwrite,
            on_tile=lambda done, total: show(done, total),
        )
    out.print(
        f"wrote {sheet.path}  ({sheet.samples} inputs x {len(sheet.style_weights)} style weights; "
        f"the whole run: about {format_duration(sheet.run_seconds)})",
        highlight=False,
        soft_wrap=True,
    )


@app.command("eval-temporal")
def eval_temporal(
    source: Annotated[Path, typer.Argument(help="The input video.", show_default=False)],
    output: Annotated[Path, typer.Argument(help="Its stylized version.", show_default=False)],
    max_frames: Annotated[
        Optional[int], typer.Option(min=1, help="Only the first N frames.")
    ] = None,
    offsets: Annotated[
        str,
        typer.Option("--k", help="Frame distances k of the long-term figures, comma-separated."),
    ] = "1,10,30",
    flow: Annotated[
        Literal["dis", "dis-raw", "farneback", "raft"],
        typer.Option(
            help="Flow to judge with: the tool's (dis), DIS uncorrected, Farneback's, or RAFT's"
            " (torchvision's learned flow; its weights are downloaded once)."
        ),
    ] = "dis",
) -> None:
    """Warping error of OUTPUT against frames t-k (flow and occlusions from SOURCE), beside SOURCE's
    own (a ratio near 1 flickers no more than the input); the static background's drift and its
    change over k frames."""
    from pipeline.temporal_eval import temporal_figures

    with user_errors():
        distances = parse_offsets(offsets, "--k")
        figures = temporal_figures(source, output, max_frames, distances, flow)
    out.print(
        f"{figures.frames} frames; static background: {figures.static_share:.0%} of the pixels; "
        f"flow: {flow}"
    )
    for k in distances:
        (error, own), (static, static_own) = figures.warping[k], figures.static_difference[k]
        out.print(
            f"k={k:<3} warping error  output {error:.6f}   input {own:.6f}   ratio "
            f"{figures.ratio(k):.2f}   "
            f"static t vs t-{k}: {static:.6f} vs {static_own:.6f}"
        )
    out.print(
        f"drift of the static background's mean colour: output {figures.drift[0]:.2f} %   input "
        f"{figures.drift[1]:.2f} %"
    )


@app.command()
@in_panels
@with_preset
@with_style_options
def folder(
    source: Annotated[
        Path, typer.Argument(help="Folder of photos (walked recursively).", show_default=False)
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output folder; mirrors the input's tree.")
    ],
    style: Style,
    settings: StyleSettings,
    keep_size: Annotated[
        bool, typer.Option("--keep-size", help="Upscale each result back to its photo's size.")
    ] = FOLDER.keep_size,
    style_folders: Annotated[
        bool,
        typer.Option(
            "--style-folders", help="Several styles: OUT/<style>/... instead of name.<style>.ext."
        ),
    ] = FOLDER.style_folders,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List the work and estimate the time; stylize nothing."),
    ] = False,
    weights: Weights = None,
    quality: Quality = FOLDER.quality,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Redo photos whose output exists.")
    ] = FOLDER.overwrite,
    devices: Devices = None,
    ray: Ray = None,
    ray_workers: RayWorkers = None,
    ray_cpus_per_worker: RayCpus = CLUSTER.cpus_per_worker,
    ray_gpus_per_worker: RayGpus = CLUSTER.gpus_per_worker,
) -> None:
    """Stylize every photo in a folder: resumable, one bad file never stops the run, report and
    gallery at the end."""
    # every option is checked before any work (the --ray ones even without --ray)
    with user_errors():
        folder_settings = FolderSettings(keep_size, quality, style_folders, overwrite)
        cluster = cluster_settings(
            ray,
            devices,
            workers=ray_workers,
            cpus_per_worker=ray_cpus_per_worker,
            gpus_per_worker=ray_gpus_per_worker,
        )
        check_style_count(settings, 1, "a folder run applies each --style on its own")
    job = FolderJob(source, output, style, settings, folder_settings, weights)
    if dry_run:
        print_folder_estimate(job)
        return
    started = time.monotonic()
    label = f"photos on Ray ({ray})" if ray else f"photos on {devices}" if devices else "photos"
    report = stylize_folder_with_progress(job, cluster=cluster, label=label)
    print_summary(report, time.monotonic() - started)
    if report.new_failures:
        raise typer.Exit(1)


@dataclass(frozen=True)
class FolderJob:
    """What a folder run is asked to do, for its dry run and for the run itself."""

    source: Path
    output: Path
    style: list[Path]
    settings: StyleSettings
    folder_settings: FolderSettings
    weights: str | None


def print_folder_estimate(job: FolderJob) -> None:
    """A folder's dry run: each photo still to do, and the estimated time of them all."""
    from pipeline.batch import estimate_seconds, plan, triage

    source, output, style, settings = job.source, job.output, job.style, job.settings
    folder_settings, weights = job.folder_settings, job.weights
    with user_errors():
        items = plan(source, output, style, folder_settings)
        settled, todo = triage(items, output, folder_settings.overwrite)
        for item in todo:
            out.print(f"{item.source} -> {item.output}", highlight=False)
        seconds = estimate_seconds(todo, settings, weights)
    failed = sum(r.status == "failed" for r in settled)
    out.print(
        f"{len(todo)} to do, {len(settled) - failed} done before, {failed} failed before (not "
        f"retried); estimated {format_duration(seconds)} at "
        f"{f'{settings.size} px' if settings.size else 'full size'}, "
        f"{settings.iterations} iterations",
        highlight=False,
    )


def stylize_folder_with_progress(
    job: FolderJob, *, cluster: ClusterSettings | None, label: str
) -> BatchReport:
    """`stylize_folder` under a bar of photos that names each one and, on Ray, the workers."""
    from pipeline.batch import stylize_folder

    with user_errors(), progress_bar(label) as show:
        workers = []

        def on_item(index, total, item, result) -> None:
            status = f": {result.status}" if result is not None else ""
            pool = f"{workers[0]} workers, " if workers else ""
            show(index + (result is not None), total, f"{pool}{item.source.name}{status}")

        return stylize_folder(
            job.source,
            job.output,
            job.style,
            style_settings=job.settings,
            folder_settings=job.folder_settings,
            weights=job.weights,
            on_item=on_item,
            cluster=cluster,
            on_workers=workers.append,
        )


def _size(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024


def print_summary(report, seconds: float) -> None:
    from rich.table import Table

    table = Table(title=f"{report.input} -> {report.output}")
    for column in (
        "done",
        "skipped (done before)",
        "failed",
        "failed before (unchanged, not retried)",
    ):
        table.add_column(column, justify="right")
    counts = (report.of("done"), report.of("skipped"), report.new_failures, report.old_failures)
    table.add_row(*(str(len(results)) for results in counts))
    out.print(table)
    if not report.of("done") and not report.new_failures:
        out.print("nothing to do: every photo was done or failed before (--overwrite redoes all)")
    for result in report.of("failed"):
        note = " (before)" if result.before else ""
        out.print(
            f"failed{note}: {result.item.source}: {result.reason}", highlight=False, soft_wrap=True
        )
    out.print(
        f"took {format_duration(seconds)}   report: {report.output / 'report.json'}   "
        f"gallery: {report.output / 'index.html'}",
        highlight=False,
        soft_wrap=True,
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
