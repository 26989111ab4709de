"""Where and in what precision the engine runs, and the process settings that make it fast."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
from pathlib import Path

import torch

from pipeline.errors import SettingsError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SettingsError("--device cuda: no CUDA GPU is available to torch here")
    if device.type not in ("cpu", "cuda"):
        raise SettingsError(f"--device {name}: use auto, cpu or cuda")
    return device


def cpu_has_amx() -> bool:
    """bf16 pays off on CPUs with AMX tiles (about 4x over fp32); elsewhere it is slower."""
    with contextlib.suppress(OSError):
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    return False


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise SettingsError(f"--precision {precision}: use auto, fp32 or bf16")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_amx() else torch.float32


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters, from glibc's malloc.h


@functools.cache
def keep_freed_memory() -> None:
    """Make glibc keep freed blocks for reuse instead of handing them back to the kernel.

    Every evaluation allocates the same activations again. By default glibc serves blocks over
    32 MB (and, adaptively, smaller ones) with fresh mmaps, and the kernel zeroes every page on
    first touch: 15,000-30,000 page faults per evaluation at 384-512 px, 10-20 % of its time on
    2 cores. Costs about 10 % more peak RSS. Process-wide; a no-op without glibc.
    """
    with contextlib.suppress(OSError, AttributeError):  # no glibc: macOS, musl
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
