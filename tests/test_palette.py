"""The palette start: the photo moved to the painting's colours before L-BFGS begins."""

import torch

from pipeline.color import luminance, palette_of, recoloured
from pipeline.engine import Plan, Stylizer
from pipeline.image_io import load_rgb
from pipeline.settings import StyleSettings
from tests.conftest import data_file


def moments(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = image.reshape(3, -1).double()
    mean = pixels.mean(1)
    centred = pixels - mean[:, None]
    return mean, centred @ centred.T / pixels.shape[1]


def test_the_recoloured_photo_has_the_paintings_mean_and_covariance(tubingen, starry_night):
    photo, painting = load_rgb(tubingen, 96), load_rgb(starry_night, 96)
    palette = palette_of([painting], [1.0])
    mean, covariance = moments(recoloured(photo, palette))
    assert torch.allclose(mean, palette.mean, atol=0.01)
    assert torch.allclose(covariance, palette.covariance, atol=0.002)  # a little is clipped
    assert not torch.allclose(moments(photo)[1], palette.covariance, atol=0.002)


def test_a_blend_s_palette_is_that_of_its_pixels_pooled_by_weight():
    generator = torch.Generator().manual_seed(1)
    first = (
        torch.rand(1, 3, 8, 8, generator=generator) * torch.tensor([1.0, 0.5, 0.2])[:, None, None]
    )
    second = 1 - torch.rand(1, 3, 8, 8, generator=generator) ** 2
    blend = palette_of([first, second], [0.75, 0.25])
    pooled = torch.cat([first, first, first, second], dim=-1)  # three parts to one
    mean, covariance = moments(pooled)
    assert torch.allclose(blend.mean, mean) and torch.allclose(blend.covariance, covariance)


def test_a_grey_photo_and_painting_stay_grey():
    """--preserve-colors: both are luminance only, their covariances singular."""
    generator = torch.Generator().manual_seed(2)
    photo = luminance(torch.rand(1, 3, 16, 16, generator=generator))
    painting = luminance(0.2 + 0.3 * torch.rand(1, 3, 16, 16, generator=generator))
    start = recoloured(photo, palette_of([painting], [1.0]))
    assert torch.isfinite(start).all()
    assert (start[:, 0] - start[:, 1]).abs().max() < 1e-3
    assert (start[:, 1] - start[:, 2]).abs().max() < 1e-3
    assert abs(start.mean() - painting.mean()) < 0.01


def test_a_stylization_starts_from_the_photo_or_from_the_palette(embedded_weights):
    """With no iteration the result is the start: the photo itself (the default), or the photo
    in the blend's colours (the styles' weights given)."""
    styles = [
        load_rgb(data_file(f"styles/{name}.jpg"), 64) for name in ("starry_night", "shipwreck")
    ]
    photo = load_rgb(data_file("contents/tubingen.jpg"), 64)
    assert StyleSettings().init == "content"
    starts = {}
    for init in ("palette", "content"):
        settings = StyleSettings(
            size=64, iterations=0, init=init, style_blend=(4, 1), precision="fp32", device="cpu"
        )
        starts[init] = Stylizer(settings, styles, embedded_weights).stylize(photo, Plan()).image
    expected = recoloured(photo, palette_of(styles, [0.8, 0.2]))
    assert torch.allclose(starts["palette"], expected, atol=1e-6)
    assert torch.allclose(starts["content"], photo, atol=1e-6)
