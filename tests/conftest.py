"""Shared fixtures: the real data in ../shared/data and the real embedded weights, loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import vgg19

from pipeline.weights import IMAGENET, VGGWeights, load_embedded

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_file(relative: str) -> Path:
    path = DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} not present (the shared test data lies beside the repository)")
    return path


@pytest.fixture(scope="session")
def embedded_weights() -> VGGWeights:
    return load_embedded()


@pytest.fixture(scope="session")
def random_weights() -> VGGWeights:
    torch.manual_seed(0)
    return VGGWeights(vgg19(weights=None).features.state_dict(), IMAGENET, "random init")


@pytest.fixture
def tubingen() -> Path:
    return data_file("contents/tubingen.jpg")


@pytest.fixture
def starry_night() -> Path:
    return data_file("styles/starry_night.jpg")
