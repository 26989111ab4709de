import torch

from pipeline.losses import ContentLoss, StyleLoss, TemporalLoss, TVLoss, content_loss, gram_matrix, style_layer_loss


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
    assert torch.isclose(content(x), content_loss(x, target) / content_loss(torch.zeros_like(target), target))
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
