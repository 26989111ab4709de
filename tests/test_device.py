import json
import resource
import sys
import time

import pytest
import torch

from pipeline import device
from pipeline.device import cpu_bf16_speedup, resolve_precision
from pipeline.engine import Stylizer
from pipeline.errors import SettingsError
from pipeline.settings import StyleSettings


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_evaluations_reuse_freed_memory_instead_of_faulting_in_fresh_pages(random_weights):
    """At 512 px the largest activations exceed glibc's 32 MB mmap limit: without
    keep_freed_memory every evaluation maps them afresh (about 30,000 page faults each)."""
    settings = StyleSettings(
        size=512, iterations=3, tolerance=0, coarse_to_fine=False, precision="fp32", device="cpu"
    )
    stylizer = Stylizer(settings, [torch.rand(1, 3, 64, 64)], random_weights)
    content = torch.rand(1, 3, 384, 512)
    # the heap grows to its working size here (after other tests, it may have to settle)
    for _ in range(2):
        stylizer.stylize(content)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    result = stylizer.stylize(content)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / result.evaluations
    # a single fresh 50 MB block over the run would be about 3,000 per evaluation
    assert faults < 8000, f"{faults:.0f} page faults per evaluation"


def test_precision_names():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu).dtype == torch.float32
    assert resolve_precision("bf16", cpu).dtype == torch.bfloat16
    assert resolve_precision("auto", cpu).dtype in (torch.float32, torch.bfloat16)
    with pytest.raises(SettingsError, match="--precision fp16"):
        resolve_precision("fp16", cpu).dtype


CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "speedup, auto, warned",
    [(4.0, torch.bfloat16, False), (1.0, torch.float32, False), (0.03, torch.float32, True)],
)
def test_auto_follows_the_measured_bf16_speed(monkeypatch, speedup, auto, warned):
    """AMX (4x), a CPU where bf16 merely matches fp32, an AVX2-only CPU (bf16 emulated, 33x
    slower)."""
    monkeypatch.setattr(device, "cpu_bf16_speedup", lambda: speedup)
    chosen = resolve_precision("auto", CPU)
    assert chosen.dtype == auto and f"{speedup:.2f}x" in chosen.reason and chosen.warning is None
    forced = resolve_precision("bf16", CPU)
    assert forced.dtype == torch.bfloat16
    assert (forced.warning is not None) == warned
    if warned:
        assert "about 33x slower" in forced.warning and "--precision fp32" in forced.warning


def test_bf16_speed_is_measured_once_and_cached_on_disk(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cpu_bf16_speedup.cache_clear()
    try:
        start = time.perf_counter()
        measured = cpu_bf16_speedup()
        # the budget is a second; CI machines are noisy
        assert time.perf_counter() - start < 2.0
        cache = tmp_path / "stylize" / "precision.json"
        ((key, value),) = json.loads(cache.read_text()).items()
        assert value == pytest.approx(measured, rel=1e-2) and "torch" in key
        # a second process reads the file instead of measuring
        cache.write_text(json.dumps({key: 123.0}))
        cpu_bf16_speedup.cache_clear()
        assert cpu_bf16_speedup() == 123.0
    finally:
        cpu_bf16_speedup.cache_clear()


def test_forced_bf16_on_an_emulating_cpu_warns_once_in_the_log(monkeypatch, caplog):
    monkeypatch.setattr(device, "cpu_bf16_speedup", lambda: 0.05)
    monkeypatch.setattr(device, "_announced", set())
    with caplog.at_level("INFO", logger="stylize"):
        for _ in range(2):
            device.announce_precision(resolve_precision("bf16", CPU))
    warnings = [r.message for r in caplog.records if r.levelname == "WARNING"]
    infos = [r.message for r in caplog.records if r.levelname == "INFO"]
    assert len(warnings) == 1 and "about 20x slower" in warnings[0]
    assert infos == ["precision: bf16 (asked; bf16 measured 0.05x the speed of fp32 on this CPU)"]
