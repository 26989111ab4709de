import subprocess
import sys

import pytest
import torch
from torchvision.models import vgg19

from pipeline.errors import WeightsError
from pipeline.vgg import VGGFeatures
from pipeline.weights import (
    CAFFE,
    VGGWeights,
    embedded_weights_path,
    load_embedded,
    load_local,
    load_weights,
    vgg19_features,
)


def test_embedded_weights_are_the_dequantized_table(embedded_weights):
    raw = torch.load(embedded_weights_path(), weights_only=True)
    expected = raw["block1_conv1_W_table"][raw["block1_conv1_W_q"].long()]
    torch.testing.assert_close(embedded_weights.state_dict["0.weight"], expected)
    torch.testing.assert_close(embedded_weights.state_dict["34.bias"], raw["block5_conv4_b"])
    assert embedded_weights.convention == CAFFE
    features = vgg19(weights=None).features
    result = features.load_state_dict(embedded_weights.state_dict, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_own_module_list_is_torchvisions_vgg19_features():
    ours, theirs = vgg19_features(), vgg19(weights=None).features
    assert [(name, repr(m)) for name, m in ours.named_children()] == [
        (name, repr(m)) for name, m in theirs.named_children()
    ]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    torch.manual_seed(0)
    image = torch.rand(1, 3, 32, 32)
    ours.load_state_dict(theirs.state_dict())
    torch.testing.assert_close(ours(image), theirs(image), rtol=0, atol=0)


def test_a_stylize_run_imports_neither_torchvision_nor_dynamo():
    """Each import costs about a second and 150 MB a process: torchvision's only --weights
    torchvision needs; torch._dynamo's torch.optim's first calls would make, for nothing."""
    code = (
        "import sys, torch\n"
        "from pipeline.engine import Stylizer\n"
        "from pipeline.settings import StyleSettings\n"
        "import cli.main, pipeline.video_job, pipeline.batch\n"
        "stylizer = Stylizer(StyleSettings(size=32, iterations=2), [torch.rand(1, 3, 32, 32)])\n"
        "stylizer.stylize(torch.rand(1, 3, 32, 32))\n"
        "print(sorted({'torchvision', 'torch._dynamo'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_truncated_file_is_rejected_with_its_name(tmp_path):
    truncated = tmp_path / "cut.bin"
    truncated.write_bytes(embedded_weights_path().read_bytes()[:100_000])
    with pytest.raises(WeightsError, match=r"cut\.bin: cannot read weights.*truncated"):
        load_embedded(truncated)


def test_wrong_shape_file_is_rejected_with_its_name(tmp_path):
    state = vgg19(weights=None).features.state_dict()
    state["0.weight"] = torch.zeros(32, 3, 3, 3)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"wrong\.pth: not VGG-19 weights \(0\.weight has shape"):
        load_local(path)


def test_other_architecture_is_rejected(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(WeightsError, match=r"resnet\.pth: not VGG-19 weights \(missing 0\.weight"):
        load_local(path)


def test_missing_file_and_env_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLIZE_VGG19_WEIGHTS", str(tmp_path / "absent.pth"))
    with pytest.raises(WeightsError, match="absent.pth: weights file not found"):
        load_weights(None)


def test_local_file_in_torchvision_layout_loads(tmp_path):
    torch.manual_seed(1)
    model = vgg19(weights=None)
    path = tmp_path / "vgg19.pth"
    torch.save(model.state_dict(), path)  # whole model: features.* and classifier.*
    weights = load_local(path)
    torch.testing.assert_close(weights.state_dict["28.weight"], model.features[28].weight)


def test_features_are_truncated_after_the_deepest_layer(embedded_weights):
    vgg = VGGFeatures(embedded_weights, ["conv1_1", "conv3_1"])
    assert list(vgg.body)[-1] == "relu3_1"
    out = vgg(torch.rand(1, 3, 32, 32))
    assert set(out) == {"conv1_1", "conv3_1"}
    assert out["conv3_1"].shape == (1, 256, 8, 8)
    assert (out["conv1_1"] >= 0).all()  # taken after the ReLU
    assert not any(p.requires_grad for p in vgg.parameters())


def test_avg_pooling_replaces_max_pooling(embedded_weights):
    vgg = VGGFeatures(embedded_weights, ["conv2_1"], pooling="avg")
    assert isinstance(vgg.body["pool1"], torch.nn.AvgPool2d)


def test_one_network_per_weights_and_layout_is_shared(random_weights):
    """Stylizers of one run (a style each) can share the frozen network built from the same
    weights."""
    import gc

    from pipeline.vgg import _shared, shared_features

    layers = ["conv4_2", "conv1_1", "conv2_1"]
    first = shared_features(random_weights, layers)
    assert shared_features(random_weights, list(layers)) is first
    assert first.layers == layers and first.body["conv1_1"].weight.is_contiguous(
        memory_format=torch.channels_last
    )
    assert shared_features(random_weights, layers, pooling="avg") is not first
    assert shared_features(random_weights, layers, dtype=torch.bfloat16) is not first
    other = VGGWeights(random_weights.state_dict, random_weights.convention, "another load")
    assert shared_features(other, layers) is not first
    key = id(other)
    del other
    gc.collect()
    assert key not in _shared  # the networks of a weights object go with it
