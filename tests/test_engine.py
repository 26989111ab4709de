"""The optimizer loop, on tiny images (random-init VGG) and on the real data (embedded weights)."""

import pytest
import torch

from pipeline.engine import (
    Plan,
    Stylizer,
    check_size,
    halving_ladder,
    resize_image,
    scale_ladder,
    smallest_side,
)
from pipeline.errors import InputError, SettingsError
from pipeline.image_io import load_rgb
from pipeline.settings import StyleSettings
from tests.conftest import needs_native_bf16

TINY = dict(size=48, iterations=15, tolerance=0.0, precision="fp32", device="cpu")


def tiny_images():
    generator = torch.Generator().manual_seed(3)
    content = torch.rand(1, 3, 40, 48, generator=generator)
    style = torch.rand(1, 3, 64, 64, generator=generator)
    return content, style


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_engine_lowers_the_total_loss_and_keeps_the_size(random_weights, optimizer):
    content, style = tiny_images()
    stylizer = Stylizer(
        StyleSettings(**TINY, optimizer=optimizer, init="noise", learning_rate=0.05),
        [style],
        random_weights,
    )
    start = stylizer.evaluate(
        torch.rand(content.shape, generator=torch.Generator().manual_seed(0)), content
    )
    result = stylizer.stylize(content)
    assert result.image.shape == content.shape
    assert result.losses["total"] < 0.5 * start["total"]
    assert 0.0 <= result.image.min() and result.image.max() <= 1.0


def test_same_seed_gives_identical_pixels(random_weights):
    content, style = tiny_images()
    settings = StyleSettings(**TINY, init="noise", seed=7)
    first = Stylizer(settings, [style], random_weights).stylize(content).image
    second = Stylizer(settings, [style], random_weights).stylize(content).image
    assert torch.equal(first, second)
    other = (
        Stylizer(StyleSettings(**TINY, init="noise", seed=8), [style], random_weights)
        .stylize(content)
        .image
    )
    assert not torch.equal(first, other)


def test_early_stop_ends_before_the_iteration_budget(random_weights):
    content, style = tiny_images()
    settings = StyleSettings(**{**TINY, "iterations": 200, "tolerance": 0.05}, patience=5)
    result = Stylizer(settings, [style], random_weights).stylize(content)
    assert result.evaluations < 100


@pytest.mark.parametrize("cap", [1, 2, 5])
def test_a_plans_evaluation_budget_holds_inside_a_line_search(random_weights, cap):
    """A later frame's budget (at most 8 evaluations) is a cap: torch's L-BFGS checks max_eval only
    between iterations, so a strong-Wolfe line search could run past it."""
    content, style = tiny_images()
    stylizer = Stylizer(StyleSettings(**TINY, init="noise"), [style], random_weights)
    spent = []
    result = stylizer.stylize(
        content,
        Plan(
            init=torch.rand(content.shape, generator=torch.Generator().manual_seed(1)),
            iterations=20,
            evaluations=cap,
        ),
        lambda progress: spent.append(progress.evaluations),
    )
    assert result.evaluations == len(spent) == cap


SEEDED_SCALE = 1e-3


def test_the_carried_scale_is_that_of_the_newest_step(random_weights):
    """A capped run ends inside torch's step, which then never stores the scale of the pairs it
    added: the scale handed on is the newest pair's s.y / y.y, not the one the run was seeded
    with."""
    from pipeline.engine import Curvature

    content, style = tiny_images()
    stylizer = Stylizer(StyleSettings(**TINY, init="noise"), [style], random_weights)
    seeded = Curvature(SEEDED_SCALE, tuple(content.shape[-2:]))
    result = stylizer.stylize(
        content, Plan(init=content.clone(), iterations=20, evaluations=10, curvature=seeded)
    )
    curvature = result.curvature
    assert curvature.steps and curvature.scale != SEEDED_SCALE
    step, change = curvature.steps[-1], curvature.changes[-1]
    assert curvature.scale == pytest.approx(float(step.dot(change) / change.dot(change)), rel=1e-5)


def test_coarse_to_fine_ladder():
    on = StyleSettings(coarse_to_fine=True, coarse_min_size=256)
    assert scale_ladder(768, 1024, on) == [(192, 256), (384, 512), (768, 1024)]
    assert scale_ladder(600, 800, StyleSettings()) == [(300, 400), (600, 800)]  # auto: on above 512
    assert scale_ladder(384, 512, StyleSettings()) == [(384, 512)]
    assert scale_ladder(384, 512, StyleSettings(coarse_to_fine=True)) == [(192, 256), (384, 512)]
    assert scale_ladder(600, 800, StyleSettings(coarse_to_fine=False)) == [(600, 800)]
    assert scale_ladder(1023, 1023, StyleSettings()) == [
        (256, 256),
        (512, 512),
        (1023, 1023),
    ]  # rungs rounded as they go


def test_halving_ladder_stops_before_the_network_runs_out_of_pixels():
    assert halving_ladder(216, 384, 2, 16) == [(108, 192), (216, 384)]
    assert halving_ladder(216, 384, 1, 16) == [(216, 384)]
    assert halving_ladder(40, 48, 5, 16) == [(20, 24), (40, 48)]  # 10 px would leave conv5_1 empty
    assert halving_ladder(31, 100, 2, 16) == [(16, 50), (31, 100)]
    assert halving_ladder(30, 100, 2, 16) == [(30, 100)]
    assert halving_ladder(30, 100, 2, 4) == [(15, 50), (30, 100)]


def test_smallest_side_follows_the_deepest_layer_in_use():
    assert smallest_side(StyleSettings()) == 16  # conv5_1: after four poolings
    shallow = StyleSettings(content_layer="conv2_2", style_layers=("conv1_1", "conv3_1"))
    assert smallest_side(shallow) == 4
    check_size(10, 64, shallow)
    with pytest.raises(InputError, match="64x10 px is too small"):
        check_size(10, 64, StyleSettings())


def test_scales_override_the_settings_ladder(random_weights):
    content, style = tiny_images()
    settings = StyleSettings(**{**TINY, "iterations": 3}, coarse_to_fine=False)
    seen = []
    result = Stylizer(settings, [style], random_weights).stylize(
        content,
        Plan(scales=2),
        callback=lambda p: seen.append((p.scale, p.scales, tuple(p.image.shape[-2:]))),
    )
    assert {(scale, scales) for scale, scales, _ in seen} == {(1, 2), (2, 2)}
    assert seen[0][2] == (20, 24) and seen[-1][2] == (40, 48)
    assert result.evaluations == len(seen) > 3  # more than one scale's budget: it applies at each
    assert result.image.shape == content.shape


def test_small_output_with_a_wide_style(random_weights):
    """A 4:1 style for a 24 px output: its short side is kept at the 16 px conv5_1 needs."""
    content, _ = tiny_images()
    wide = torch.rand(1, 3, 64, 256, generator=torch.Generator().manual_seed(5))
    result = Stylizer(
        StyleSettings(**{**TINY, "size": 24, "iterations": 2}), [wide], random_weights
    ).stylize(resize_image(content, (20, 24)))
    assert result.image.shape == (1, 3, 20, 24)


def test_channels_last_input_is_accepted(random_weights):
    content, style = tiny_images()
    stylizer = Stylizer(StyleSettings(**{**TINY, "iterations": 3}), [style], random_weights)
    result = stylizer.stylize(content.contiguous(memory_format=torch.channels_last))
    assert torch.equal(result.image, stylizer.stylize(content).image)


def test_coarse_to_fine_runs_every_scale(random_weights):
    content, style = tiny_images()
    settings = StyleSettings(**{**TINY, "iterations": 5}, coarse_to_fine=True, coarse_min_size=20)
    seen = []
    result = Stylizer(settings, [style], random_weights).stylize(
        content, callback=lambda p: seen.append((p.scale, p.image.shape[-2:]))
    )
    assert {s for s, _ in seen} == {1, 2}
    assert seen[0][1] == (20, 24) and seen[-1][1] == (40, 48)
    assert result.image.shape == content.shape


def test_style_blend_is_checked(random_weights):
    _, style = tiny_images()
    with pytest.raises(SettingsError, match="2 weights for 1 style"):
        Stylizer(StyleSettings(**TINY, style_blend=(0.5, 0.5)), [style], random_weights)


def test_blend_targets_are_the_weighted_grams(random_weights):
    content, style = tiny_images()
    other = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(9))
    settings = StyleSettings(**TINY, style_blend=(3, 1))
    blended = Stylizer(settings, [style, other], random_weights).style_grams(48)
    first = Stylizer(StyleSettings(**TINY), [style], random_weights).style_grams(48)
    second = Stylizer(StyleSettings(**TINY), [other], random_weights).style_grams(48)
    torch.testing.assert_close(
        blended["conv3_1"], 0.75 * first["conv3_1"] + 0.25 * second["conv3_1"]
    )


def test_preserve_colors_keeps_the_contents_chroma(random_weights):
    from pipeline.color import rgb_to_yuv

    content, style = tiny_images()
    content = 0.25 + 0.5 * content  # away from the clamp at 0 and 1
    result = Stylizer(StyleSettings(**TINY, preserve_colors=True), [style], random_weights).stylize(
        content
    )
    out_chroma, in_chroma = rgb_to_yuv(result.image)[:, 1:], rgb_to_yuv(content)[:, 1:]
    assert (out_chroma - in_chroma).abs().mean() < 0.02


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=needs_native_bf16)])
def test_real_stylization_at_128px(embedded_weights, tubingen, starry_night, precision):
    """tubingen x starry_night: style loss falls below 20 % of the photo's, content stays below
    the painting's."""
    content = load_rgb(tubingen, 128)
    style = load_rgb(starry_night)
    settings = StyleSettings(size=128, iterations=100, precision=precision, device="cpu")
    stylizer = Stylizer(settings, [style], embedded_weights)
    result = stylizer.stylize(content)
    photo = stylizer.evaluate(content, content)
    painting = stylizer.evaluate(resize_image(style, tuple(content.shape[-2:])), content)
    assert result.losses["style"] < 0.2 * photo["style"]
    assert result.losses["content"] < painting["content"]
