"""Engine benchmarks: per-evaluation cost vs a bare VGG pass, peak RSS, 300-iteration
runs with and without coarse-to-fine, and pastiche's command line as a peer.

Each measurement runs in its own process so that its peak RSS is its own. Prints a markdown
report; images go to docs/images/. Run: make bench  (about 15 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CONTENT = DATA / "contents" / "tubingen.jpg"
STYLE = DATA / "styles" / "starry_night.jpg"
IMAGES = ROOT / "docs" / "images"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def evaluation_overhead(stylizer, content, evaluations: int = 15, rounds: int = 3) -> dict:
    """Seconds per L-BFGS evaluation inside the engine against bare passes of the same truncated
    VGG-19 (same weights and channels-last layout), in alternating rounds so that drifts of a
    shared machine hit all alike. Medians of the steady state.

    - network: forward to the deepest layer in use, backward to the pixels with a gradient
      entering at every layer the losses read (what any loss on those layers must pay);
    - deepest: the same with a gradient entering at the deepest layer only;
    - autocast (bf16 only): the deepest-only pass, with a bare pass in fp32
      weights under bf16 autocast (the engine stores its weights in bf16 instead).
    """
    from pipeline.engine import Plan

    import copy

    import torch

    image = content.clone().requires_grad_(True)
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

    bare_passes = {"network": network, "deepest": deepest}
    if stylizer.dtype == torch.bfloat16 and stylizer.device.type == "cpu":
        bare_passes["autocast"] = autocast
    samples: dict[str, list[float]] = {"engine": []} | {name: [] for name in bare_passes}
    for _ in range(rounds):
        stamps: list[float] = []
        stylizer.stylize(
            content,
            Plan(iterations=evaluations, patience=evaluations),
            callback=lambda p: stamps.append(time.perf_counter()),
        )
        samples["engine"] += [
            b - a for a, b in zip(stamps[2:], stamps[3:])
        ]  # the first ones warm up oneDNN
        for name, bare in bare_passes.items():
            for repeat in range(8):
                start = time.perf_counter()
                bare()
                image.grad = None
                if repeat >= 2:
                    samples[name].append(time.perf_counter() - start)
    seconds = {name: statistics.median(values) for name, values in samples.items()}
    return {f"{name}_s": value for name, value in seconds.items()} | {
        f"overhead_{name}": seconds["engine"] / seconds[name] - 1 for name in bare_passes
    }


def per_evaluation(size: int, precision: str) -> dict:
    from pipeline.engine import Stylizer
    from pipeline.image_io import load_rgb
    from pipeline.settings import StyleSettings

    settings = StyleSettings(
        size=size, precision=precision, tolerance=0, coarse_to_fine=False, device="cpu"
    )
    stylizer = Stylizer(settings, [load_rgb(STYLE)])
    return {
        "size": size,
        "precision": precision,
        **evaluation_overhead(stylizer, load_rgb(CONTENT, size)),
        "peak_rss_mib": peak_rss_mib(),
    }


def overhead_header(first: tuple[str, ...], last: tuple[str, ...] = ()) -> str:
    """Markdown header of the overhead table: `first` columns, the overhead_row columns, then
    `last`."""
    columns = (
        *first,
        "s / evaluation (engine)",
        "s / bare network pass",
        "overhead",
        "s / bare deepest-only pass",
        "overhead",
        "s / bare pass, autocast",
        "overhead",
        *last,
    )
    return "| " + " | ".join(columns) + " |\n|" + " --- |" * len(columns)


def overhead_row(first_cells: str, r: dict) -> str:
    autocast = (
        f"{r['autocast_s']:.3f} | {100 * r['overhead_autocast']:+.1f} %"
        if "autocast_s" in r
        else "— | —"
    )
    return (
        f"| {first_cells} | {r['engine_s']:.3f} | {r['network_s']:.3f} | "
        f"{100 * r['overhead_network']:+.1f} % | "
        f"{r['deepest_s']:.3f} | {100 * r['overhead_deepest']:+.1f} % | {autocast} |"
    )


def full_run(size: int, coarse: bool, iterations: int = 300) -> dict:
    from pipeline.engine import Stylizer
    from pipeline.image_io import Photo, load_rgb, to_array, write_photo
    from pipeline.settings import StyleSettings

    settings = StyleSettings(size=size, iterations=iterations, coarse_to_fine=coarse, tolerance=0)
    content = load_rgb(CONTENT, size)
    start = time.perf_counter()
    stylizer = Stylizer(settings, [load_rgb(STYLE)])
    result = stylizer.stylize(content)
    wall = time.perf_counter() - start
    name = f"tubingen_starry_{size}{'_c2f' if coarse else ''}.jpg"
    write_photo(Photo(to_array(result.image)), IMAGES / name)
    return {
        "size": size,
        "coarse_to_fine": coarse,
        "wall_s": wall,
        "evaluations": result.evaluations,
        "content": result.losses["content"],
        "style": result.losses["style"],
        "total": result.losses["total"],
        "image": f"images/{name}",
        "precision": str(stylizer.dtype),
        "peak_rss_mib": peak_rss_mib(),
    }


def losses_of(path: Path, size: int) -> dict:
    """Our losses (fp32, embedded weights) of any stylized image against tubingen x starry_night."""
    from pipeline.engine import Stylizer, resize_image
    from pipeline.image_io import load_rgb
    from pipeline.settings import StyleSettings

    content = load_rgb(CONTENT, size)
    stylizer = Stylizer(StyleSettings(size=size, precision="fp32"), [load_rgb(STYLE)])
    image = resize_image(load_rgb(path), tuple(content.shape[-2:]))
    return stylizer.evaluate(image, content)


def peer(size: int, iterations: int) -> dict:
    """pastiche's CLI and `stylize image`, same image, size and iteration count, timed as
    commands."""
    bin_dir = Path(sys.executable).parent
    ours, theirs = IMAGES / f"peer_stylize_{size}.jpg", IMAGES / f"peer_pastiche_{size}.jpg"
    runs = {
        "stylize (default, auto precision)": (
            [
                str(bin_dir / "stylize"),
                "image",
                str(CONTENT),
                "-s",
                str(STYLE),
                "-o",
                str(ours),
                "--size",
                str(size),
                "--iterations",
                str(iterations),
                "--tolerance",
                "0",
                "--overwrite",
            ],
            ours,
        ),
        "stylize --precision fp32": (
            [
                str(bin_dir / "stylize"),
                "image",
                str(CONTENT),
                "-s",
                str(STYLE),
                "-o",
                str(ours.with_suffix(".fp32.jpg")),
                "--size",
                str(size),
                "--iterations",
                str(iterations),
                "--tolerance",
                "0",
                "--precision",
                "fp32",
                "--overwrite",
            ],
            ours.with_suffix(".fp32.jpg"),
        ),
        "pastiche": (
            [
                sys.executable,
                "-m",
                "pastiche",
                "--device",
                "cpu",
                "--content",
                str(CONTENT),
                "--styles",
                str(STYLE),
                "--output",
                str(theirs),
                "--size",
                str(size),
                "--num-steps",
                str(iterations),
                "--no-verbose",
            ],
            theirs,
        ),
    }
    out = {}
    for name, (command, image) in runs.items():
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        out[name] = {
            "wall_s": time.perf_counter() - start,
            **{k: v for k, v in losses_of(image, size).items() if ":" not in k},
            "image": f"images/{image.name}",
        }
    return out


def run_child(kind: str, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", kind, *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def report() -> None:
    import torch

    from pipeline.device import cpu_description

    IMAGES.mkdir(parents=True, exist_ok=True)
    print(
        f"## make bench — {date.today()}, {cpu_description()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}\n"
    )
    print(overhead_header(("size", "precision"), ("peak RSS MiB",)))
    for size in (256, 512):
        for precision in ("fp32", "bf16"):
            r = run_child("eval", str(size), precision)
            print(overhead_row(f"{size} | {precision}", r) + f" {r['peak_rss_mib']:.0f} |")
    print(
        "\n300 iterations at 512 px, tubingen x starry_night, default settings otherwise "
        "(tolerance 0):\n"
    )
    print(
        "| coarse-to-fine | precision | wall s | evaluations | content | style | total | peak RSS "
        "MiB | image |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for coarse in (False, True):
        r = run_child("full", "512", str(int(coarse)))
        print(
            f"| {'on (256 then 512)' if coarse else 'off'} | {r['precision']} | {r['wall_s']:.1f} "
            f"| {r['evaluations']} | {r['content']:.3f} | "
            f"{r['style']:.3f} | {r['total']:.3f} | {r['peak_rss_mib']:.0f} | ![]({r['image']}) |"
        )
    size, iterations = 256, 100
    print(
        f"\nPeer: pastiche's command line vs `stylize image`, {size} px, {iterations} iterations, "
        "same weights; "
        "losses of each output measured with our fp32 losses:\n"
    )
    print("| command | wall s | content | style | total | image |")
    print("| --- | --- | --- | --- | --- | --- |")
    results = run_child("peer", str(size), str(iterations))
    for name, r in results.items():
        print(
            f"| {name} | {r['wall_s']:.1f} | {r['content']:.3f} | {r['style']:.3f} | "
            f"{r['total']:.3f} | ![]({r['image']}) |"
        )
    base = results["pastiche"]["wall_s"]
    print(
        "\nWall-time ratio pastiche / stylize: "
        f"{base / results['stylize (default, auto precision)']['wall_s']:.2f}x (default), "
        f"{base / results['stylize --precision fp32']['wall_s']:.2f}x (both fp32)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not CONTENT.is_file():
        sys.exit(f"{CONTENT}: benchmark data not found (../shared/data beside the repository)")
    if not args.child:
        return report()
    kind, *rest = args.child
    if kind == "eval":
        result = per_evaluation(int(rest[0]), rest[1])
    elif kind == "full":
        result = full_run(int(rest[0]), bool(int(rest[1])))
    else:
        result = peer(int(rest[0]), int(rest[1]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
