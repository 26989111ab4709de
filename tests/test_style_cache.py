"""Style targets kept in the user cache: the same values as computing them, keyed by what they
depend on, and never a reason for a run to fail."""

from dataclasses import replace

import pytest
import torch

from pipeline.engine import Stylizer
from pipeline.settings import StyleSettings
from pipeline.style_targets import StyleTargets

SETTINGS = StyleSettings(size=64, precision="fp32")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "stylize" / "grams"


def style_image(seed: int) -> torch.Tensor:
    return torch.rand(1, 3, 48, 80, generator=torch.Generator().manual_seed(seed))


def counted_passes(monkeypatch) -> list[int]:
    """The sizes of the style images the network runs on from now on."""
    sizes: list[int] = []
    original = StyleTargets._grams
    monkeypatch.setattr(
        StyleTargets,
        "_grams",
        lambda self, image: sizes.append(max(image.shape[-2:])) or original(self, image),
    )
    return sizes


def test_a_second_run_reads_the_targets_it_would_compute(cache, embedded_weights, monkeypatch):
    first = Stylizer(SETTINGS, [style_image(0)], embedded_weights).style_grams(64)
    assert len(list(cache.glob("*.pt"))) == 1
    passes = counted_passes(monkeypatch)
    again = Stylizer(SETTINGS, [style_image(0)], embedded_weights).style_grams(64)
    assert passes == []
    assert first.keys() == again.keys()
    assert all(torch.equal(first[layer], again[layer]) for layer in first)


def test_what_the_targets_depend_on_makes_another_entry(cache, embedded_weights, monkeypatch):
    Stylizer(SETTINGS, [style_image(0)], embedded_weights).style_grams(64)
    others = [
        Stylizer(SETTINGS, [style_image(1)], embedded_weights),  # another painting
        Stylizer(replace(SETTINGS, style_scale=0.5), [style_image(0)], embedded_weights),
        Stylizer(replace(SETTINGS, pooling="avg"), [style_image(0)], embedded_weights),
        Stylizer(SETTINGS, [style_image(0), style_image(1)], embedded_weights),  # a blend
    ]
    passes = counted_passes(monkeypatch)
    for stylizer in others:
        passes.clear()
        stylizer.style_grams(64)
        assert passes, stylizer.settings
    Stylizer(SETTINGS, [style_image(0)], embedded_weights).style_grams(96)  # another size
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)  # a matmul splits its sums by thread
    try:
        Stylizer(SETTINGS, [style_image(0)], embedded_weights).style_grams(64)
    finally:
        torch.set_num_threads(threads)
    assert len(list(cache.glob("*.pt"))) == 7


def test_an_unusable_cache_costs_time_not_the_run(tmp_path, monkeypatch, embedded_weights):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    expected = Stylizer(SETTINGS, [style_image(0)], embedded_weights).style_grams(64)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    Stylizer(SETTINGS, [style_image(0)], embedded_weights).style_grams(64)
    (entry,) = (tmp_path / "cache" / "stylize" / "grams").glob("*.pt")
    entry.write_bytes(b"damaged")
    again = Stylizer(SETTINGS, [style_image(0)], embedded_weights).style_grams(64)
    assert all(torch.equal(expected[layer], again[layer]) for layer in expected)
    assert entry.stat().st_size > 1000  # computed again and replaced


def test_a_failed_cache_write_leaves_nothing_behind(cache, embedded_weights, monkeypatch):
    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc] . unexpected pos")

    monkeypatch.setattr(torch, "save", full_disk)
    grams = Stylizer(SETTINGS, [style_image(0)], embedded_weights).style_grams(64)
    assert set(grams) == set(SETTINGS.style_layers)
    assert list(cache.iterdir()) == []
