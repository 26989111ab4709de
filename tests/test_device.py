import resource
import sys

import pytest
import torch

from pipeline.device import resolve_dtype
from pipeline.engine import Stylizer
from pipeline.errors import SettingsError
from pipeline.settings import StyleSettings


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_evaluations_reuse_freed_memory_instead_of_faulting_in_fresh_pages(random_weights):
    """At 512 px the largest activations exceed glibc's 32 MB mmap limit: without
    keep_freed_memory every evaluation maps them afresh (about 30,000 page faults each)."""
    settings = StyleSettings(size=512, iterations=3, tolerance=0, coarse_to_fine=False, precision="fp32", device="cpu")
    stylizer = Stylizer(settings, [torch.rand(1, 3, 64, 64)], random_weights)
    content = torch.rand(1, 3, 384, 512)
    for _ in range(2):  # the heap grows to its working size here (after other tests, it may have to settle)
        stylizer.stylize(content)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    result = stylizer.stylize(content)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / result.evaluations
    # a single fresh 50 MB block over the run would be about 3,000 per evaluation
    assert faults < 8000, f"{faults:.0f} page faults per evaluation"


def test_precision_names():
    cpu = torch.device("cpu")
    assert resolve_dtype("fp32", cpu) == torch.float32
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    assert resolve_dtype("auto", cpu) in (torch.float32, torch.bfloat16)
    with pytest.raises(SettingsError, match="--precision fp16"):
        resolve_dtype("fp16", cpu)
