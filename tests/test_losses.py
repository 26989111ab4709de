import torch

from pipeline.losses import (
    ContentLoss,
    StyleLoss,
    TemporalLoss,
    TVLoss,
    content_loss,
    gram_matrix,
    style_layer_loss,
)


def features_2x2x2():
    # N = 2 channels, M = 4 positions
    return torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, -1.0]]]])


def test_gram_matrix_by_hand():
    gram = gram_matrix(features_2x2x2())
    # rows: F1 = (1,2,3,4), F2 = (0,1,0,-1); G = F F^T / M
    expected = torch.tensor([[30.0, -2.0], [-2.0, 2.0]]) / 4
    torch.testing.assert_close(gram, expected)


def test_content_loss_by_hand():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    p = torch.tensor([[0.0, 2.0], [5.0, 4.0]])
    assert content_loss(f, p).item() == 0.5 * (1 + 4)


def test_style_loss_equals_the_talks_formula_on_unnormalized_grams():
    x = features_2x2x2()
    y = torch.tensor([[[[0.0, 1.0], [2.0, 1.0]], [[1.0, 1.0], [1.0, 0.0]]]])
    n, m = 2, 4
    flat_x, flat_y = x.reshape(n, m), y.reshape(n, m)
    g, a = flat_x @ flat_x.T, flat_y @ flat_y.T
    talk = ((g - a) ** 2).sum() / (4 * n**2 * m**2)
    assert torch.isclose(style_layer_loss(gram_matrix(x), gram_matrix(y)), talk)
    # by hand: G = [[30,-2],[-2,2]], A = [[6,3],[3,3]] -> sum (G-A)^2 = 576+25+25+1 = 627
    assert torch.isclose(talk, torch.tensor(627 / 256))


def test_modules_are_normalized_by_the_zero_image_loss():
    target = torch.randn(1, 4, 5, 6)
    x = torch.randn(1, 4, 5, 6)
    content = ContentLoss(target)
    assert torch.isclose(content(torch.zeros_like(target)), torch.tensor(1.0))
    assert torch.isclose(
        content(x), content_loss(x, target) / content_loss(torch.zeros_like(target), target)
    )
    style = StyleLoss(gram_matrix(target))
    assert torch.isclose(style(torch.zeros_like(target)), torch.tensor(1.0))
    assert style(target).item() == 0.0
    # dimensionless: scaling features and target together leaves the loss unchanged
    assert torch.isclose(StyleLoss(gram_matrix(3 * target))(3 * x), style(x), rtol=1e-4)
    assert torch.isclose(ContentLoss(3 * target)(3 * x), content(x), rtol=1e-4)


def test_style_loss_compares_styles_of_different_sizes():
    # a tiled copy has the same per-position Gram: loss zero despite another M
    small = torch.randn(1, 3, 4, 4)
    tiled = small.repeat(1, 1, 2, 2)
    assert StyleLoss(gram_matrix(small))(tiled).item() < 1e-10


def test_tv_and_temporal_losses():
    flat = torch.ones(1, 3, 4, 4)
    assert TVLoss()(flat).item() == 0.0
    stripes = torch.zeros(1, 1, 2, 2)
    stripes[..., :, 1] = 1.0  # every horizontal step is 1, vertical 0
    assert TVLoss()(stripes).item() == 1.0
    previous = torch.zeros(1, 3, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    image = torch.full((1, 3, 2, 2), 2.0)
    assert TemporalLoss(previous, mask)(image).item() == 4.0 * 3 / 12


def _autograd_style_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return style_layer_loss(gram_matrix(features), target)


def test_style_loss_gradient_matches_autograd_in_fp32():
    torch.manual_seed(3)
    target = gram_matrix(torch.randn(1, 8, 6, 5))
    reference = torch.randn(1, 8, 7, 9, requires_grad=True)
    fused = reference.detach().clone().requires_grad_(True)
    StyleLoss(target)(fused).backward()
    (_autograd_style_loss(reference, target) / StyleLoss(target).zero_loss).backward()
    torch.testing.assert_close(fused.grad, reference.grad, rtol=1e-5, atol=1e-8)


def test_bf16_features_give_the_fp32_gram_and_gradient():
    """bf16 activations (channels-last, as VGG yields them): the Gram accumulates in fp32 and equals
    the fp32 Gram of the same values; the gradient comes back in bf16 and the same layout."""
    torch.manual_seed(4)
    features = torch.rand(1, 32, 20, 24).bfloat16().contiguous(memory_format=torch.channels_last)
    exact = features.float().contiguous()
    gram = gram_matrix(features)
    assert gram.dtype == torch.float32
    torch.testing.assert_close(gram, gram_matrix(exact), rtol=1e-5, atol=1e-6)

    target = gram_matrix(torch.rand(1, 32, 16, 16))
    low = features.clone().requires_grad_(True)
    high = exact.clone().requires_grad_(True)
    StyleLoss(target)(low).backward()
    StyleLoss(target)(high).backward()
    assert low.grad.dtype == torch.bfloat16 and low.grad.is_contiguous(
        memory_format=torch.channels_last
    )
    relative = (low.grad.float() - high.grad).norm() / high.grad.norm()
    assert relative < 1e-2  # bf16 rounding of the result, nothing more


def test_style_loss_gradient_is_right_for_a_target_that_is_not_exactly_symmetric():
    torch.manual_seed(5)
    target = gram_matrix(torch.randn(1, 6, 5, 5)) + 0.1 * torch.randn(6, 6)
    reference = torch.randn(1, 6, 4, 7, requires_grad=True)
    fused = reference.detach().clone().requires_grad_(True)
    StyleLoss(target)(fused).backward()
    (_autograd_style_loss(reference, target) / StyleLoss(target).zero_loss).backward()
    torch.testing.assert_close(fused.grad, reference.grad, rtol=1e-5, atol=1e-8)
