"""Throughput: where a later video frame's time goes, beside its limit, and what one
`stylize image` call pays before its first iteration.

Frames: car-detection decoded at each long side (1920 is 1080p), its first frame stylized cold
with a short budget, the later ones as `stylize video` does. Each later frame's seconds split into
decode, flow (both directions, the camera's shift and verdict), masks, warps (every remap, the
flow checks' included), the VGG passes (each evaluation's forward, losses and backward), the
optimizer's own work (L-BFGS between evaluations), the engine's setup per frame (content target,
terms), the PNG write, the encode (per frame, from the work folder) and the rest. The limit: a
bare VGG-19 forward and backward pass at the same size, times the frame's evaluations. The
speed-up: a default cold frame's own stylize seconds (300 iterations) over a later frame, at the
sizes `--cold-sizes` names. On a GPU every stage is synchronized where it starts and ends, so the
frame's total is an upper bound. Each size runs with each L-BFGS loop of `--loops`: torch
(torch.optim.LBFGS, a CPU's default) and device (device_lbfgs, a GPU's), with the later frames'
mean total loss over the first loop's; and each loop's reads of a value back to the host per
later frame at 256 px (on a GPU each is a wait for the device to drain).

Fixed cost: `stylize image tubingen.jpg --size 256 --iterations 20` as a command (first with an
empty user cache, then again), and the same call's phases timed in a fresh process. With the
package `neural-style` installed (neural-style-pt: `pip install --no-deps neural-style`), the same
content at 256 px by neural-style-pt with the same weights, 100 iterations, both results judged by
the same losses.

Run: make bench-throughput [ARGS="--sizes 256,512,1920 --frames 6 --loops torch,device
--part frames|fixed|both"].
Prints markdown.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import (
    CLIPS,
    STYLE,
    TUBINGEN,
    Stamps,
    argument_parser,
    decode,
    heading,
    require,
    row,
    run_child,
    run_command,
    table,
)

FRAME_COLUMNS = [
    "decode",
    "flow",
    "masks",
    "warps",
    "VGG passes",
    "optimizer",
    "setup",
    "PNG write",
    "encode",
    "rest",
]
COLD_ITERATIONS = 20  # the first frame's budget: only the later frames are measured


class Split:
    """Seconds per label over wrapped functions, each call's own: time spent in a wrapped
    function it calls counts for that function's label."""

    def __init__(self, sync: Callable[[], None]):
        self.sync, self.seconds = sync, defaultdict(float)
        self.stack: list[float] = []
        self.originals: list[tuple[object, str, Callable]] = []

    def wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            if threading.current_thread() is not threading.main_thread():
                return original(*args, **kwargs)  # flows ahead: the main thread's wait counts
            self.sync()
            start = time.perf_counter()
            self.stack.append(0.0)
            try:
                return original(*args, **kwargs)
            finally:
                self.sync()
                spent, inner = time.perf_counter() - start, self.stack.pop()
                self.seconds[label] += spent - inner
                if self.stack:
                    self.stack[-1] += spent

        setattr(owner, name, timed)
        self.originals.append((owner, name, original))

    def timed_items(self, items: Iterator, label: str) -> Iterator:
        """`items`, the time each takes to come counted under `label`."""
        while True:
            start = time.perf_counter()
            item = next(items, None)
            self.seconds[label] += time.perf_counter() - start
            if item is None:
                return
            yield item

    def restore(self) -> None:
        for owner, name, original in reversed(self.originals):
            setattr(owner, name, original)
        self.originals.clear()


def device_sync(device) -> Callable[[], None]:
    import torch

    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def frame_split(split: Split) -> None:
    """Wrap the stages of a frame (pipeline functions looked up at call time)."""
    from pipeline import device_warp, engine, flows_ahead, frames, scale_loop, temporal

    split.wrap(temporal.FlowEstimator, "pair", "flow")
    split.wrap(flows_ahead.FlowsAhead, "pair", "flow")  # beside a GPU: the wait for the threads
    for module in (temporal, device_warp):  # on the host, or on a GPU
        split.wrap(module, "consistency_mask", "masks")
        split.wrap(module, "warp", "warps")
    split.wrap(engine.Stylizer, "_evaluate", "VGG passes")
    split.wrap(scale_loop.ScaleOptimization, "__call__", "optimizer")
    split.wrap(engine.Stylizer, "stylize", "setup")
    split.wrap(frames, "write_frame", "PNG write")


def bare_pass(stylizer, height: int, width: int, repeats: int = 5) -> float:
    """Median seconds of VGG-19's forward pass to the deepest layer in use and its backward pass,
    the gradients at the layers in use handed in as they are (no loss computed)."""
    import torch

    sync = device_sync(stylizer.device)
    image = torch.rand(1, 3, height, width, device=stylizer.device)
    gradients = [torch.randn_like(f) for f in stylizer.features(image).values()]

    def once() -> float:
        sync()
        start = time.perf_counter()
        features = stylizer.features(image.clone().requires_grad_(True))
        torch.autograd.backward(list(features.values()), gradients)
        sync()
        return time.perf_counter() - start

    once(), once()
    return statistics.median(once() for _ in range(repeats))


def later_frames(size: int, count: int, device: str, loop: str = "torch") -> dict:
    """One run over `count` frames at long side `size`: the later frames' seconds and split, and
    their mean total loss. `loop`: torch (torch.optim.LBFGS) or device (device_lbfgs)."""
    from pipeline.engine import Stylizer
    from pipeline.image_io import load_rgb
    from pipeline.settings import StyleSettings
    from pipeline.video_io import even_size, probe

    info = probe(CLIPS["car"])
    width, height = even_size(info.width, info.height, size)
    settings = StyleSettings(size=size, iterations=COLD_ITERATIONS, device=device)
    stylizer = Stylizer(settings, [load_rgb(STYLE)])
    run = timed_frames(stylizer, info, (width, height), count, loop)
    later = (run.stamps.times[-1] - run.stamps.times[0]) / (count - 1)
    seconds = {label: value / (count - 1) for label, value in run.split.seconds.items()}
    seconds["encode"] = run.encode_seconds / count
    seconds["rest"] = later - sum(seconds.values()) + seconds["encode"]
    return {
        "size": f"{width}x{height}",
        "later": later + seconds["encode"],
        "evaluations": statistics.mean(run.evaluations),
        "split": seconds,
        "bare": bare_pass(stylizer, height, width),
        "loss": statistics.mean(run.losses),
    }


@dataclass
class TimedFrames:
    split: Split
    stamps: Stamps  # when each frame ended
    evaluations: list[int] = field(default_factory=list)  # of each later frame
    losses: list[float] = field(default_factory=list)  # each later frame's total
    encode_seconds: float = 0.0


def timed_frames(stylizer, info, size: tuple[int, int], count: int, loop: str) -> TimedFrames:
    """`count` frames stylized as `stylize video` does, each stage timed from the first later
    frame on, then encoded."""
    from pipeline.frames import FrameStylizer, stylize_frames
    from pipeline.settings import VideoSettings
    from pipeline.video_io import Reader

    video = VideoSettings()
    run = TimedFrames(Split(device_sync(stylizer.device)), Stamps())
    frame_stylizer = FrameStylizer(stylizer, video)
    frame_stylizer.on_device = loop == "device"

    def on_frame(report) -> None:
        if not run.stamps.times:  # the cold frame ends: the later frames are measured from here
            run.split.seconds.clear()
        else:
            run.evaluations.append(report.evaluations)
            run.losses.append(report.losses["total"])
        run.stamps()

    frame_split(run.split)
    with tempfile.TemporaryDirectory() as work, Reader(info, size) as reader:
        try:
            frames = run.split.timed_items(iter(reader.frames(count)), "decode")
            stylize_frames(frames, frame_stylizer, Path(work), video, count, on_frame)
        finally:
            run.split.restore()
        run.encode_seconds = encode_folder(Path(work), count, size, info.fps)
    return run


def encode_folder(folder: Path, count: int, size: tuple[int, int], fps) -> float:
    """Seconds to encode the folder's frames (read back from PNG) as `stylize video` does."""
    from pipeline.video_io import encode
    from pipeline.work_folder import frame_path, read_frame

    start = time.perf_counter()
    frames = lambda: (read_frame(frame_path(folder, i)) for i in range(count))
    encode(frames, folder / "out.mp4", size, fps)
    return time.perf_counter() - start


def cold_frame(size: int, device: str) -> float:
    """Seconds of a default cold frame (the settings' ladder and 300 iterations) at `size`."""
    from pipeline.engine import Stylizer
    from pipeline.image_io import load_rgb, to_tensor
    from pipeline.settings import StyleSettings
    from pipeline.temporal import to_float
    from pipeline.video_io import Reader, even_size, probe

    info = probe(CLIPS["car"])
    with Reader(info, even_size(info.width, info.height, size)) as reader:
        frame = next(iter(reader.frames(1)))
    stylizer = Stylizer(StyleSettings(size=size, device=device), [load_rgb(STYLE)])
    return stylizer.stylize(to_tensor(to_float(frame))).seconds


def frames_table(
    sizes: list[int], count: int, cold_sizes: list[int], device: str, loops: list[str]
) -> None:
    print(heading("Throughput: later frames — `make bench-throughput`", "car-detection"))
    print()
    columns = ["size", "L-BFGS", "s per later frame", "evaluations", *FRAME_COLUMNS]
    extra = ["bare pass x evaluations", "frame / bare", "frames a second", "loss / torch's"]
    print(table([*columns, *extra]))
    measured = {}
    for size in sizes:
        # torch's loop first: the other's loss is given as a ratio to it
        for loop in sorted(loops, key=lambda loop: loop != "torch"):
            found = run_child(later_frames, size, count, device, loop).result
            measured.setdefault(size, found)
            print(row(frame_row(found, loop, measured[size]["loss"])), flush=True)
    cold_table(measured, cold_sizes, device)
    reads_table(loops, device)


def frame_row(found: dict, loop: str, first_loss: float) -> list[str]:
    limit = found["bare"] * found["evaluations"]
    return [
        found["size"],
        LOOPS[loop],
        f"{found['later']:.3f}",
        f"{found['evaluations']:.1f}",
        *(f"{found['split'].get(label, 0.0):.3f}" for label in FRAME_COLUMNS),
        f"{limit:.3f}",
        f"{found['later'] / limit:.2f}",
        f"{1 / found['later']:.2f}",
        f"{found['loss'] / first_loss:.4f}",
    ]


LOOPS = {"torch": "torch.optim.LBFGS", "device": "device_lbfgs"}


def host_reads_per_frame(loop: str, device: str, count: int = 4, size: int = 256) -> float:
    """Reads of a tensor's value by the host (each a wait for a GPU) per later frame."""
    from benchmarks.harness import host_reads
    from pipeline.engine import Stylizer
    from pipeline.frames import FrameStylizer
    from pipeline.image_io import load_rgb
    from pipeline.settings import StyleSettings, VideoSettings
    from pipeline.temporal import Frame

    settings = StyleSettings(size=size, iterations=COLD_ITERATIONS, device=device)
    frame_stylizer = FrameStylizer(Stylizer(settings, [load_rgb(STYLE)]), VideoSettings())
    frame_stylizer.on_device = loop == "device"
    frames = [Frame(rgb) for rgb in decode(CLIPS["car"], count, size)]
    result, reads = frame_stylizer(frames[0], None, 0)[0], []
    for index in range(1, count):
        frame_stylizer.memory.add(index - 1, frames[index - 1], result)
        with host_reads() as counted:
            result = frame_stylizer(frames[index], (frames[index - 1], result), index)[0]
        reads.append(counted.reads)
    return statistics.mean(reads)


def reads_table(loops: list[str], device: str) -> None:
    rows = [
        [LOOPS[loop], f"{run_child(host_reads_per_frame, loop, device).result:.0f}"]
        for loop in loops
    ]
    print()
    print(table(["L-BFGS", "host reads per later frame (256 px, 8 evaluations)"], rows))


def cold_table(measured: dict, cold_sizes: list[int], device: str) -> None:
    rows = []
    for size in (size for size in cold_sizes if size in measured):
        cold = run_child(cold_frame, size, device).result
        later = measured[size]["later"] - measured[size]["split"]["encode"]
        rows.append([measured[size]["size"], f"{cold:.1f}", f"{later:.3f}", f"{cold / later:.1f}"])
    if rows:
        print()
        print(table(["size", "s cold frame (300 iterations)", "s later frame", "speed-up"], rows))


def image_phases(size: int, iterations: int) -> dict:
    """The phases of one `stylize image` call, in this fresh process."""
    marks, start = {}, time.perf_counter()

    def mark(name: str) -> None:
        nonlocal start
        marks[name] = time.perf_counter() - start
        start = time.perf_counter()

    from pipeline.engine import Stylizer
    from pipeline.image_io import load_rgb, read_photo, write_photo
    from pipeline.image_job import stylize_photo
    from pipeline.settings import StyleSettings
    from pipeline.weights import load_weights

    mark("imports (torch already imported by the harness)")
    marks["torchvision imported"] = "torchvision" in sys.modules

    weights = load_weights(None)
    mark("weights")
    settings = StyleSettings(size=size, iterations=iterations)
    stylizer = Stylizer(settings, [load_rgb(STYLE)], weights)
    mark("network, precision, style targets")
    photo = read_photo(TUBINGEN)
    mark("read photo")
    stylized, _ = stylize_photo(photo, stylizer)
    mark("iterations")
    with tempfile.TemporaryDirectory() as folder:
        write_photo(stylized, Path(folder) / "out.jpg")
    mark("write photo")
    return marks


IMAGE_COMMAND = ["--size", "256", "--iterations", "20"]


def stylize_image(
    output: Path, cache: Path, options: list[str] = IMAGE_COMMAND
) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of the `stylize image` command, user cache in `cache`."""
    stylize = Path(sys.executable).with_name("stylize")
    command = [str(stylize), "image", str(TUBINGEN), "-s", str(STYLE), "-o", str(output)]
    done = run_command([*command, *options, "--overwrite"], env={"XDG_CACHE_HOME": str(cache)})
    if done.returncode != 0:
        raise RuntimeError(done.output[-2000:])
    return done.wall_s, done.peak_rss_mib


def fixed_table() -> None:
    require(TUBINGEN, STYLE)
    print(heading("Throughput: one `stylize image` call — `make bench-throughput`", "256 px"))
    print()
    with tempfile.TemporaryDirectory() as folder:
        cache, output = Path(folder) / "cache", Path(folder) / "out.jpg"
        first = stylize_image(output, cache)
        again = stylize_image(output, cache)
        phases = run_child(image_phases, 256, 20).result
    rows = [
        ["`stylize image " + " ".join(IMAGE_COMMAND) + "`, empty user cache", *fmt(*first)],
        ["the same again", *fmt(*again)],
    ]
    for code in ("pass", "import cli.main, pipeline.image_job", "import torch, torchvision"):
        done = run_command([sys.executable, "-c", code])
        rows.append([f"`python -c '{code}'`", *fmt(done.wall_s, done.peak_rss_mib)])
    print(table(["run", "wall s", "peak RSS MiB"], rows))
    print()
    imported = phases.pop("torchvision imported")
    print(
        table(
            ["phase (a fresh process, the user cache as it is)", "s"],
            ((k, f"{v:.2f}") for k, v in phases.items()),
        )
    )
    print(f"\ntorchvision imported: {imported}")


def fmt(seconds: float, mib: float) -> list[str]:
    return [f"{seconds:.2f}", f"{mib:.0f}"]


def neural_style_table(ours: Path) -> None:
    """neural-style-pt at 256 px with the same weights beside our `stylize image`, both judged by
    this tool's losses at the default weights."""
    import importlib.util

    if importlib.util.find_spec("neural_style") is None:
        print("\nneural-style-pt not installed (pip install --no-deps neural-style): no comparison")
        return
    with tempfile.TemporaryDirectory() as folder:
        theirs, model = Path(folder) / "nspt.png", Path(folder) / "vgg19-embedded.pth"
        save_features(model)
        command = [sys.executable, "-m", "neural_style.neural_style", "-gpu", "c"]
        command += ["-content_image", str(TUBINGEN), "-style_image", str(STYLE)]
        command += ["-image_size", "256", "-num_iterations", "100", "-print_iter", "0"]
        command += ["-save_iter", "0", "-model_file", str(model), "-disable_check"]
        done = run_command([*command, "-output_image", str(theirs)])
        if done.returncode != 0:
            raise RuntimeError(done.output[-2000:])
        rows = [["neural-style-pt, 100 iterations", f"{done.wall_s:.1f}", "", *judge(theirs)]]
        stylize_image(ours, Path(folder) / "cache")  # the precision probe and targets cached
        for iterations in (12, 20):
            options = ["--size", "256", "--iterations", str(iterations)]
            wall, _ = stylize_image(ours, Path(folder) / "cache", options)
            label = f"stylize image {' '.join(options)}"
            rows.append([label, f"{wall:.1f}", f"{done.wall_s / wall:.1f}", *judge(ours)])
    print()
    print(table(["run (the same weights)", "wall s", "speed-up", "style", "content"], rows))


def judge(path: Path) -> list[str]:
    return run_child(losses_of, str(path)).result


def save_features(path: Path) -> None:
    """The embedded weights in neural-style-pt's layout (`features.N.*`)."""
    import torch

    from pipeline.weights import load_weights

    state = load_weights(None).state_dict
    torch.save({f"features.{key}": value for key, value in state.items()}, path)


def losses_of(path: str) -> list[str]:
    """Style and content losses of a 256-px result of tubingen.jpg, at the default weights."""
    from pipeline.engine import Stylizer
    from pipeline.image_io import load_rgb, read_photo, resize_to, to_tensor
    from pipeline.settings import StyleSettings

    image = load_rgb(Path(path))
    height, width = image.shape[-2:]
    content = to_tensor(resize_to(read_photo(TUBINGEN).rgb, (width, height)))
    losses = Stylizer(StyleSettings(size=256), [load_rgb(STYLE)]).evaluate(image, content)
    return [f"{losses['style']:.3f}", f"{losses['content']:.3f}"]


def main() -> None:
    args = argument_parser(__doc__)
    args.add_argument("--sizes", default="256,512,1920", help="long sides of the frames")
    args.add_argument(
        "--frames", type=int, default=6, help="frames a size: one cold, the rest later"
    )
    args.add_argument("--cold-sizes", default="256", help="sizes with a default cold frame timed")
    args.add_argument("--part", choices=("frames", "fixed", "both"), default="both")
    args.add_argument("--device", default="auto")
    args.add_argument(
        "--loops", default="torch,device", help="a later frame's L-BFGS: torch, device or both"
    )
    options = args.parse_args()
    if options.part in ("frames", "both"):
        require(CLIPS["car"], STYLE)
        sizes = [int(size) for size in options.sizes.split(",")]
        cold = [int(size) for size in options.cold_sizes.split(",") if size]
        loops = [loop for loop in options.loops.split(",") if loop]
        frames_table(sizes, options.frames, cold, options.device, loops)
    if options.part in ("fixed", "both"):
        fixed_table()
        with tempfile.TemporaryDirectory() as folder:
            neural_style_table(Path(folder) / "ours.png")


if __name__ == "__main__":
    main()
