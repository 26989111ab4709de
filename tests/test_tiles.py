"""Tiled evaluation: equal to the whole image's, and within a memory bound."""

from __future__ import annotations

import re
import subprocess

import cv2
import pytest
import torch

from benchmarks.harness import run_command
from pipeline.device import ALLOCATOR_SLACK, MemoryBudget
from pipeline.engine import Plan, Stylizer, rung_budget, scale_ladder
from pipeline.errors import SettingsError
from pipeline.image_io import load_rgb
from pipeline.losses import weighted_parts
from pipeline.settings import StyleSettings, parse_bytes
from pipeline.tiles import assemble_features, evaluate_tiled, halo_of, plan_memory, plan_tiles
from tests.conftest import data_file, stylize_command

LAYERS = ["conv4_2", "conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]


def test_cores_cover_the_image_once_on_the_pooling_grid():
    tiles = plan_tiles(203, 270, 64, LAYERS)
    covered = torch.zeros(203, 270, dtype=torch.int32)
    for tile in tiles:
        covered[tile.core] += 1
        for core, window, length in zip(tile.core, tile.window, (203, 270)):
            assert core.start % 16 == 0 and (core.stop % 16 == 0 or core.stop == length)
            assert window.start == max(0, core.start - halo_of(LAYERS)) and window.start % 16 == 0
    assert bool((covered == 1).all()) and len(tiles) == 4 * 5


@pytest.fixture(scope="module")
def fp32_stylizer(embedded_weights):
    settings = StyleSettings(size=270, precision="fp32", tv_weight=10.0, max_memory=2**40)
    return Stylizer(settings, [load_rgb(data_file("styles/starry_night.jpg"))], embedded_weights)


@pytest.mark.slow
def test_tiled_loss_and_gradient_equal_the_whole_images(fp32_stylizer, tubingen):
    """Odd sizes (203 x 270: neither side on the 16 px grid), cores of 64 px whose halos cross
    pooling windows and reach the image's borders; conv1_1 to conv5_1 and TV."""
    content = torch.nn.functional.interpolate(load_rgb(tubingen), size=(203, 270), mode="area")
    image = (
        content + 0.1 * torch.randn(content.shape, generator=torch.Generator().manual_seed(0))
    ).clamp(0, 1)
    tiles = plan_tiles(203, 270, 64, LAYERS)

    whole_terms = fp32_stylizer.loss_terms(content)
    whole = image.clone().requires_grad_(True)
    parts = weighted_parts(whole_terms, whole, fp32_stylizer.features(whole))
    sum(parts.values()).backward()

    tiled_target = assemble_features(content, "conv4_2", fp32_stylizer.features, tiles)
    assert torch.allclose(
        tiled_target,
        whole_terms[0].loss.target,
        rtol=1e-4,
        atol=1e-4 * float(tiled_target.abs().max()),
    )
    tiled = image.clone().requires_grad_(True)
    values = evaluate_tiled(tiled, whole_terms, fp32_stylizer.features, tiles)

    for name, value in parts.items():
        assert values[name] == pytest.approx(value.item(), rel=1e-4), name
    error = (tiled.grad - whole.grad).norm() / whole.grad.norm()
    assert float(error) <= 1e-4


def test_a_tile_without_its_halo_would_differ(fp32_stylizer, tubingen):
    """The halo is needed: cut it and the style gradient changes (the test above can fail)."""
    from pipeline.tiles import Tile

    content = torch.nn.functional.interpolate(load_rgb(tubingen), size=(128, 160), mode="area")
    terms = fp32_stylizer.loss_terms(content)
    no_halo = [Tile(tile.core, tile.core, tile.image) for tile in plan_tiles(128, 160, 64, LAYERS)]
    whole = content.clone().requires_grad_(True)
    sum(weighted_parts(terms, whole, fp32_stylizer.features(whole)).values()).backward()
    cut = content.clone().requires_grad_(True)
    evaluate_tiled(cut, terms, fp32_stylizer.features, no_halo)
    assert float((cut.grad - whole.grad).norm() / whole.grad.norm()) > 1e-2


def test_memory_plan_tiles_only_what_does_not_fit():
    whole = plan_memory(384, 512, MemoryBudget(4 * 2**30), LAYERS, torch.float32)
    assert whole.tiles is None and whole.history == 100
    photo = plan_memory(3024, 4032, MemoryBudget(4 * 2**30), LAYERS, torch.bfloat16)
    assert photo.tiles is not None and len(photo.tiles) > 1 and 2 <= photo.history < 100


def test_a_bound_too_small_names_the_smallest_that_would_do():
    held = 700 * 2**20
    budget = MemoryBudget(200 * 2**20, 2**30, held)
    with pytest.raises(SettingsError) as refused:
        plan_memory(3024, 4032, budget, LAYERS, torch.float32)
    message = str(refused.value)
    assert message.startswith("--max-memory 1G is too small for 4032x3024 px: give at least ")
    smallest = parse_bytes(message.rsplit(" ", 1)[-1])

    # the smallest named fits (with room for what the process holds to vary), 0.8x of it does not
    def under(bound: int) -> MemoryBudget:
        return MemoryBudget(int((bound - held) / ALLOCATOR_SLACK), bound, held)

    assert plan_memory(3024, 4032, under(smallest), LAYERS, torch.float32).tiles is not None
    with pytest.raises(SettingsError):
        plan_memory(3024, 4032, under(int(0.8 * smallest)), LAYERS, torch.float32)


def test_large_scales_get_an_evaluation_budget():
    settings = StyleSettings(size=None, iterations=300)
    ladder = scale_ladder(3024, 4032, settings)
    assert [max(size) for size in ladder] == [504, 1008, 2016, 4032]
    assert [rung_budget(size, 300, settings, ladder) for size in ladder] == [
        (300, 375),
        (77, 77),
        (19, 19),
        (10, 10),
    ]
    assert rung_budget((384, 512), 300, settings, [(384, 512)]) == (300, 375)


def test_a_large_scale_spends_its_whole_evaluation_budget(embedded_weights, tubingen, starry_night):
    """Its first line search after the resize takes several evaluations; the scale still runs all of
    its budget (an iteration budget with evaluations capped at 1.25x stopped one such scale after 7
    evaluations)."""
    settings = StyleSettings(
        size=None, iterations=40, coarse_threshold=96, coarse_min_size=96, tolerance=0.0
    )
    stylizer = Stylizer(settings, [load_rgb(starry_night, 128)], weights=embedded_weights)
    content = load_rgb(tubingen, 192)
    ladder = stylizer.ladder(content)
    budgets = [rung_budget(size, 40, settings, ladder) for size in ladder]
    assert [max(size) for size in ladder] == [96, 192] and budgets[1] == (10, 10)
    spent: dict[int, tuple[int, int]] = {}
    stylizer.stylize(
        content, callback=lambda p: spent.__setitem__(p.scale, (p.iteration, p.evaluations))
    )
    # ten evaluations (a line search may end one over), fewer iterations
    assert spent[2][1] in (10, 11) and spent[2][0] < 10
    assert spent[1][0] == 40 and spent[1][1] <= 50


@pytest.mark.slow
def test_the_process_stays_within_max_memory_on_a_photo_that_needs_several_times_it(
    tmp_path, tubingen, starry_night
):
    """tubingen.jpg at 2400x1800 would need 6-9 GB untiled (bf16, fp32); under --max-memory 3.2G
    the whole process (Python, torch, the network, the photo, the tiles) peaks within 1.1x it."""
    photo = tmp_path / "big.png"
    rgb = cv2.imread(str(tubingen))
    cv2.imwrite(str(photo), cv2.resize(rgb, (2400, 1800), interpolation=cv2.INTER_CUBIC))
    command = stylize_command(
        "image",
        photo,
        "-s",
        starry_night,
        "-o",
        tmp_path / "out.jpg",
        "--size",
        "full",
        "--iterations",
        "1",
        "--coarse-to-fine",
        "off",
        "--max-memory",
        "3.2G",
    )
    run = run_command(command)  # its peak RSS from the OS: wait4 of a small launcher
    assert run.returncode == 0, run.output[-1500:]
    assert cv2.imread(str(tmp_path / "out.jpg")).shape == (1800, 2400, 3)
    peak = run.peak_rss_mib * 2**20
    assert peak <= 1.1 * parse_bytes("3.2G"), f"peak {run.peak_rss_mib:.0f} MiB under 3.2G"


def test_a_bound_smaller_than_the_network_is_refused_before_work(tmp_path, tubingen, starry_night):
    out = tmp_path / "out.jpg"
    command = stylize_command(
        "image", tubingen, "-s", starry_night, "-o", out, "--max-memory", "300M"
    )
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and not out.exists()
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert re.fullmatch(
        r".*--max-memory 300M is too small for \d+x\d+ px: give at least [\d.]+[GM]", lines[-1]
    ), lines


@pytest.mark.slow
def test_a_large_scale_starts_from_the_curvature_of_the_scale_below(
    embedded_weights, tubingen, starry_night
):
    """With a budget of a few evaluations, a cold L-BFGS start spends them finding its step length;
    the scale below's curvature gives it a step of the right size at once: lower loss, same
    evaluations."""
    settings = StyleSettings(
        size=None, iterations=40, coarse_threshold=96, coarse_min_size=96, tolerance=0.0
    )
    stylizer = Stylizer(settings, [load_rgb(starry_night, 128)], weights=embedded_weights)
    content = load_rgb(tubingen, 192)
    carried = stylizer.stylize(content)
    cold = stylizer.stylize(content, Plan(carry_between_scales=False))
    assert carried.losses["total"] < 0.9 * cold.losses["total"], (carried.losses, cold.losses)
    assert abs(carried.evaluations - cold.evaluations) <= 2
