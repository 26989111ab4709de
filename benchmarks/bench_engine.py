"""Engine benchmarks: per-evaluation cost vs a bare VGG pass, peak RSS, 300-iteration
runs with and without coarse-to-fine, and pastiche's command line as a peer.

Each measurement runs in its own process so that its peak RSS is its own. Prints a markdown
report; images go to docs/images/. Run: make bench  (about 15 minutes on 2 cores).
"""

from __future__ import annotations

import copy
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import (
    IMAGES,
    STYLE,
    TUBINGEN,
    Stamps,
    argument_parser,
    flags,
    heading,
    require,
    row,
    run_child,
    table,
    timed,
)

OVERHEAD_COLUMNS = (
    "s / evaluation (engine)",
    "s / bare network pass",
    "overhead",
    "s / bare deepest-only pass",
    "overhead",
    "s / bare pass, autocast",
    "overhead",
)


def bare_passes(stylizer, image) -> dict:
    """One forward and backward of the engine's truncated VGG-19 (same weights, channels-last):

    - network: a gradient entering at every layer the losses read (what any loss on those layers
      must pay);
    - deepest: a gradient entering at the deepest layer only;
    - autocast (bf16 on a CPU only): the deepest-only pass with fp32 weights under bf16 autocast
      (the engine stores its weights in bf16 instead).
    """
    import torch

    gradients = [torch.ones_like(f) for f in stylizer.features(image).values()]  # allocated once
    fp32_body = copy.deepcopy(stylizer.vgg.body).float()

    def network() -> None:
        torch.autograd.backward(list(stylizer.features(image).values()), gradients)

    def deepest() -> None:
        # dicts keep the network's order
        list(stylizer.features(image).values())[-1].backward(gradients[-1])

    def autocast() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x = stylizer.vgg.normalize(image.contiguous(memory_format=torch.channels_last))
            for module in fp32_body.values():
                x = module(x)
        x.backward(gradients[-1])

    passes = {"network": network, "deepest": deepest}
    if stylizer.dtype == torch.bfloat16 and stylizer.device.type == "cpu":
        passes["autocast"] = autocast
    return passes


def evaluation_overhead(stylizer, content, evaluations: int = 15, rounds: int = 3) -> dict:
    """Seconds per L-BFGS evaluation inside the engine against the bare passes, in alternating
    rounds so that drifts of a shared machine hit all alike. Medians of the steady state."""
    from pipeline.engine import Plan

    image = content.clone().requires_grad_(True)
    passes = bare_passes(stylizer, image)
    samples: dict[str, list[float]] = {"engine": []} | {name: [] for name in passes}
    for _ in range(rounds):
        stamps = Stamps()
        plan = Plan(iterations=evaluations, patience=evaluations)
        stylizer.stylize(content, plan, callback=stamps)
        samples["engine"] += stamps.gaps(skip=2)  # the first ones warm up oneDNN
        for name, bare in passes.items():
            for repeat in range(8):
                _, seconds = timed(bare)
                image.grad = None
                if repeat >= 2:
                    samples[name].append(seconds)
    seconds = {name: statistics.median(values) for name, values in samples.items()}
    return {f"{name}_s": value for name, value in seconds.items()} | {
        f"overhead_{name}": seconds["engine"] / seconds[name] - 1 for name in passes
    }


def overhead_cells(r: dict) -> list[str]:
    """The OVERHEAD_COLUMNS cells of an evaluation_overhead result."""
    autocast = ["—", "—"]
    if "autocast_s" in r:
        autocast = [f"{r['autocast_s']:.3f}", f"{100 * r['overhead_autocast']:+.1f} %"]
    return [
        f"{r['engine_s']:.3f}",
        f"{r['network_s']:.3f}",
        f"{100 * r['overhead_network']:+.1f} %",
        f"{r['deepest_s']:.3f}",
        f"{100 * r['overhead_deepest']:+.1f} %",
        *autocast,
    ]


def per_evaluation(size: int, precision: str) -> dict:
    """Child: evaluation_overhead on tubingen x starry_night at one size and precision."""
    from pipeline.engine import Stylizer
    from pipeline.image_io import load_rgb
    from pipeline.settings import StyleSettings

    settings = StyleSettings(
        size=size, precision=precision, tolerance=0, coarse_to_fine=False, device="cpu"
    )
    stylizer = Stylizer(settings, [load_rgb(STYLE)])
    return evaluation_overhead(stylizer, load_rgb(TUBINGEN, size))


def full_run(size: int, coarse: bool, iterations: int = 300) -> dict:
    """Child: one whole stylization of tubingen x starry_night, its image to docs/images."""
    from pipeline.engine import Stylizer
    from pipeline.image_io import Photo, load_rgb, to_array, write_photo
    from pipeline.settings import StyleSettings

    settings = StyleSettings(size=size, iterations=iterations, coarse_to_fine=coarse, tolerance=0)
    content = load_rgb(TUBINGEN, size)

    def run():
        stylizer = Stylizer(settings, [load_rgb(STYLE)])
        return stylizer, stylizer.stylize(content)

    (stylizer, result), wall = timed(run)
    name = f"tubingen_starry_{size}{'_c2f' if coarse else ''}.jpg"
    write_photo(Photo(to_array(result.image)), IMAGES / name)
    return {
        "wall_s": wall,
        "evaluations": result.evaluations,
        **{part: result.losses[part] for part in ("content", "style", "total")},
        "image": f"images/{name}",
        "precision": str(stylizer.dtype),
    }


def losses_of(path: Path, size: int) -> dict:
    """Our losses (fp32, embedded weights) of any stylized image against tubingen x starry_night."""
    from pipeline.engine import Stylizer, resize_image
    from pipeline.image_io import load_rgb
    from pipeline.settings import StyleSettings

    content = load_rgb(TUBINGEN, size)
    stylizer = Stylizer(StyleSettings(size=size, precision="fp32"), [load_rgb(STYLE)])
    image = resize_image(load_rgb(path), tuple(content.shape[-2:]))
    return stylizer.evaluate(image, content)


def peer_commands(size: int, iterations: int) -> dict[str, tuple[list[str], Path]]:
    """pastiche's CLI and `stylize image` on the same image, size and iteration count."""
    stylize = str(Path(sys.executable).with_name("stylize"))
    ours, theirs = IMAGES / f"peer_stylize_{size}.jpg", IMAGES / f"peer_pastiche_{size}.jpg"
    ours_fp32 = ours.with_suffix(".fp32.jpg")

    def ours_command(output: Path, precision: str | None) -> list[str]:
        options = flags(
            size=size, iterations=iterations, tolerance=0, precision=precision, overwrite=True
        )
        return [stylize, "image", str(TUBINGEN), "-s", str(STYLE), "-o", str(output), *options]

    pastiche = [sys.executable, "-m", "pastiche", "--content", str(TUBINGEN), "--styles"]
    pastiche += [str(STYLE), "--output", str(theirs)]
    pastiche += flags(device="cpu", size=size, num_steps=iterations, no_verbose=True)
    return {
        "stylize (default, auto precision)": (ours_command(ours, None), ours),
        "stylize --precision fp32": (ours_command(ours_fp32, "fp32"), ours_fp32),
        "pastiche": (pastiche, theirs),
    }


def peer(size: int, iterations: int) -> dict:
    """Child: each peer command timed as a command, its output judged with our losses."""
    out = {}
    for name, (command, image) in peer_commands(size, iterations).items():
        _, wall = timed(subprocess.run, command, check=True, capture_output=True)
        losses = {k: v for k, v in losses_of(image, size).items() if ":" not in k}
        out[name] = {"wall_s": wall, **losses, "image": f"images/{image.name}"}
    return out


def overhead_section() -> None:
    print(table(("size", "precision", *OVERHEAD_COLUMNS, "peak RSS MiB")), flush=True)
    for size in (256, 512):
        for precision in ("fp32", "bf16"):
            run = run_child(per_evaluation, size, precision)
            cells = overhead_cells(run.result)
            print(row([size, precision, *cells, f"{run.peak_rss_mib:.0f}"]), flush=True)


def full_run_section(size: int = 512) -> None:
    print(
        f"\n300 iterations at {size} px, tubingen x starry_night, default settings otherwise "
        "(tolerance 0):\n"
    )
    columns = ("coarse-to-fine", "precision", "wall s", "evaluations", "content", "style")
    print(table((*columns, "total", "peak RSS MiB", "image")), flush=True)
    for coarse in (False, True):
        run = run_child(full_run, size, coarse)
        r = run.result
        losses = [f"{r[part]:.3f}" for part in ("content", "style", "total")]
        mode = f"on ({size // 2} then {size})" if coarse else "off"
        first = [mode, r["precision"], f"{r['wall_s']:.1f}", r["evaluations"]]
        print(row([*first, *losses, f"{run.peak_rss_mib:.0f}", f"![]({r['image']})"]), flush=True)


def peer_section(size: int = 256, iterations: int = 100) -> None:
    print(
        f"\nPeer: pastiche's command line vs `stylize image`, {size} px, {iterations} iterations, "
        "same weights; losses of each output measured with our fp32 losses:\n"
    )
    results = run_child(peer, size, iterations).result
    rows = [
        [name, f"{r['wall_s']:.1f}", *(f"{r[k]:.3f}" for k in ("content", "style", "total"))]
        + [f"![]({r['image']})"]
        for name, r in results.items()
    ]
    print(table(("command", "wall s", "content", "style", "total", "image"), rows))
    base = results["pastiche"]["wall_s"]
    print(
        "\nWall-time ratio pastiche / stylize: "
        f"{base / results['stylize (default, auto precision)']['wall_s']:.2f}x (default), "
        f"{base / results['stylize --precision fp32']['wall_s']:.2f}x (both fp32)."
    )


def main() -> None:
    argument_parser(__doc__).parse_args()
    require(TUBINGEN, STYLE)
    import torch

    IMAGES.mkdir(parents=True, exist_ok=True)
    threads = f"{torch.get_num_threads()} threads"
    print(heading("make bench", threads, f"torch {torch.__version__}"), flush=True)
    overhead_section()
    full_run_section()
    peer_section()


if __name__ == "__main__":
    main()
