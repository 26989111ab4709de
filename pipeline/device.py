"""Where and in what precision the engine runs, and the process settings that make it fast."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import SettingsError
from pipeline.user_cache import cache_root

log = logging.getLogger("stylize")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SettingsError("--device cuda: no CUDA GPU is available to torch here")
    if device.type not in ("cpu", "cuda"):
        raise SettingsError(f"--device {name}: use auto, cpu or cuda")
    return device


@dataclass(frozen=True)
class PrecisionChoice:
    """The compute dtype and why: what `--precision` resolved to, for the run's log."""

    dtype: torch.dtype
    reason: str
    warning: str | None = None  # said once when the user forces a slow choice


# bf16 must beat fp32 by this much to be chosen by "auto": below it bf16 only costs accuracy.
AUTO_BF16_SPEEDUP = 1.25
# Under this, bf16 runs on generic (emulated) kernels: 27-60x slower measured on AVX2-only CPUs.
NATIVE_BF16_SPEEDUP = 0.5


def resolve_precision(precision: str, device: torch.device) -> PrecisionChoice:
    if precision not in ("auto", "fp32", "bf16"):
        raise SettingsError(f"--precision {precision}: use auto, fp32 or bf16")
    if precision == "fp32":
        return PrecisionChoice(torch.float32, "fp32 (asked)")
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
        if precision == "bf16" or native:
            warning = (
                None
                if native
                else "--precision bf16: this GPU has no native bf16; expect it to be slow"
            )
            return PrecisionChoice(torch.bfloat16, f"bf16 ({precision}, CUDA)", warning)
        return PrecisionChoice(torch.float32, "fp32 (auto: this GPU has no native bf16)")
    speedup = cpu_bf16_speedup()
    measured = f"bf16 measured {speedup:.2f}x the speed of fp32 on this CPU"
    if precision == "bf16":
        warning = None
        if speedup < NATIVE_BF16_SPEEDUP:
            warning = (
                "--precision bf16: this CPU has no native bf16 (no AMX or AVX-512 BF16); "
                f"{measured}, "
                f"so this run will be about {1 / speedup:.0f}x slower than with --precision fp32"
            )
        return PrecisionChoice(torch.bfloat16, f"bf16 (asked; {measured})", warning)
    dtype = torch.bfloat16 if speedup >= AUTO_BF16_SPEEDUP else torch.float32
    return PrecisionChoice(
        dtype, f"{'bf16' if dtype == torch.bfloat16 else 'fp32'} (auto: {measured})"
    )


_announced: set[str] = set()


def announce_precision(choice: PrecisionChoice) -> None:
    """Log the choice (and any warning) once per process, however many Stylizers a run builds."""
    for level, message in (
        (logging.INFO, f"precision: {choice.reason}"),
        (logging.WARNING, choice.warning),
    ):
        if message and message not in _announced:
            _announced.add(message)
            log.log(level, message)


def bf16_is_native(device: torch.device | str = "cpu") -> bool:
    """True where bf16 runs on its own kernels (AMX, AVX-512 BF16, CUDA), not emulated."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_bf16_speedup() >= NATIVE_BF16_SPEEDUP


@functools.cache
def cpu_bf16_speedup() -> float:
    """fp32 time over bf16 time of one small convolution, forward and backward, on this CPU (above
    1: bf16 is faster).

    Measured, not read off a flag: AMX, AVX-512 BF16 and whatever oneDNN makes of a CPU all
    count, and a flag that torch's build cannot use does not. Cached on disk per CPU,
    torch build and ISA override; the first measurement takes under a second.
    """
    key = _cpu_key()
    cache = _cache_file()
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        return float(json.loads(cache.read_text())[key])
    threads = torch.get_num_threads()
    # a busy core stalls a multi-threaded pass at every barrier: measure on one
    torch.set_num_threads(1)
    try:
        speedup = _time_conv(torch.float32) / _time_conv(torch.bfloat16)
    finally:
        torch.set_num_threads(threads)
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(cache.read_text()) if cache.is_file() else {}
        known[key] = round(speedup, 3)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, cache)
    return speedup


def _time_conv(dtype: torch.dtype, budget: float = 0.3) -> float:
    """Best of a few timed forward and backward passes of a VGG-like 3x3 convolution, channels-last
    and with the input's gradient, as the engine runs them; stops once `budget` seconds are spent.

    The backward pass matters: where bf16 is emulated its forward measured 6x slower than fp32
    but its forward and backward 26x, as the whole network.
    """
    conv = (
        nn.Conv2d(64, 64, 3, padding=1)
        .to(dtype=dtype, memory_format=torch.channels_last)
        .requires_grad_(False)
    )
    image = (
        torch.rand(1, 64, 32, 32, dtype=dtype)
        .contiguous(memory_format=torch.channels_last)
        .requires_grad_(True)
    )
    best, spent = math.inf, 0.0
    for attempt in range(6):  # the first builds oneDNN's kernels and is not counted
        start = time.perf_counter()
        conv(image).sum().backward()
        elapsed = time.perf_counter() - start
        if attempt:
            best, spent = min(best, elapsed), spent + elapsed
            if spent > budget:
                break
    return best


def cpu_description() -> str:
    """The CPU model, the flags that decide bf16 speed, and bf16's measured speed: for every
    benchmark figure."""
    model, flags = _cpu_info()
    present = ", ".join(
        f"{flag} {'yes' if flag in flags.split() else 'no'}"
        for flag in ("amx_bf16", "avx512_bf16", "avx2")
    )
    return f"{model} ({present}; bf16 measured {cpu_bf16_speedup():.2f}x the speed of fp32)"


def _cpu_info() -> tuple[str, str]:
    """Model name and the AVX/AMX flags, from /proc/cpuinfo (Linux), else what platform knows."""
    model, flags = platform.processor() or platform.machine(), ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name":
                model = value.strip()
            elif name.strip() == "flags":
                flags = " ".join(sorted(f for f in value.split() if "avx" in f or "amx" in f))
                break
    return model, flags


def arithmetic_key(device: torch.device) -> str:
    """What decides how this device's results round: the CPU (model, flags, torch, any ISA
    override and the thread count), or the GPU's name and torch."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} | torch {torch.__version__}"
    # a matmul splits its sums by thread
    return f"{_cpu_key()} | {torch.get_num_threads()} threads"


def _cpu_key() -> str:
    model, flags = _cpu_info()
    overrides = " ".join(
        f"{v}={os.environ[v]}"
        for v in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
        if v in os.environ
    )
    return f"{model} | {flags} | torch {torch.__version__} {overrides}".strip()


def _cache_file() -> Path:
    return cache_root() / "precision.json"


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
        _libc().mallopt(_M_MMAP_MAX, 0)
        _libc().mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)


def release_freed_memory() -> None:
    """Hand the memory freed by a finished work item back to the kernel (glibc's malloc_trim).

    Within one image the same activations come back every evaluation, so `keep_freed_memory`
    keeps them; between photos of other shapes those kept blocks fragment the heap, and a folder
    run's resident memory would creep up by a few MiB a minute for as long as it runs. A trim
    between photos costs a few milliseconds and the next photo's first evaluation its page faults.
    """
    with contextlib.suppress(OSError, AttributeError):
        _libc().malloc_trim(0)


@functools.cache
def _libc() -> ctypes.CDLL:
    # find_library runs ldconfig: once
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


@dataclass(frozen=True)
class MemoryBudget:
    """What one stylize call's work (activations, image copies, L-BFGS history) may take, and the
    bound it comes from."""

    work: int  # bytes
    bound: int | None = None  # --max-memory: the whole process's on a CPU (None: the default)
    held: int = 0  # bytes the process held before the work, counted against `bound`

    def too_small(self, width: int, height: int, work: int) -> SettingsError:
        """The error for an image whose smallest tiled work needs `work` bytes, naming the smallest
        --max-memory that would do."""
        # what the process holds varies by about a tenth from run to run
        needed = format_bytes(1.1 * (self.held + ALLOCATOR_SLACK * work))
        if self.bound is None:
            return SettingsError(
                f"{width}x{height} px needs about {needed} of memory, more than is free: give"
                " --max-memory, or a smaller --size"
            )
        return SettingsError(
            f"--max-memory {format_bytes(self.bound)} is too small for {width}x{height} px: give"
            f" at least {needed}"
        )


# Resident memory over what tiles.plan_memory counts: the content's features at the content
# layer for the whole image, resized copies per scale, the allocator's free blocks between
# evaluations of other shapes, oneDNN's scratch. Measured up to 1.59x (2400x1800 in 48 tiles,
# make bench-print ARGS=--bounds).
ALLOCATOR_SLACK = 1.7


def memory_budget(max_memory: int | None, device: torch.device) -> MemoryBudget:
    """What one stylize call may use beyond what the process holds now (the network, the style
    images, the photo being read). On a CPU, `max_memory` bounds the whole process: the work gets
    what is left of it. On a GPU, it is the device memory the work may take. By default a fifth of
    the machine's RAM and at most half of what is free (a 12 MP photo then peaks near 6 GB on a 24
    GB machine), or 70 % of the GPU's free memory."""
    if device.type == "cuda":
        if max_memory is not None:
            return MemoryBudget(int(max_memory), max_memory)
        free, _ = torch.cuda.mem_get_info(device)
        return MemoryBudget(int(0.7 * free))
    if max_memory is not None:
        held = resident_bytes()
        return MemoryBudget(int((max_memory - held) / ALLOCATOR_SLACK), max_memory, held)
    total, available = _ram_bytes()
    return MemoryBudget(int(min(0.2 * total, 0.5 * available)))


def format_bytes(size: float) -> str:
    """A size as --max-memory takes it, rounded up: 1.3G, 750M."""
    if size >= 2**30:
        return f"{math.ceil(size / 2**30 * 10) / 10:g}G"
    return f"{math.ceil(size / 2**20)}M"


def _ram_bytes() -> tuple[int, int]:
    """(total, available) RAM: /proc/meminfo on Linux, else sysconf (available unknown: total)."""
    fields = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, value = line.partition(":")
            fields[name] = int(value.split()[0]) * 1024
    total = fields.get("MemTotal") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return total, fields.get("MemAvailable", total)


def resident_bytes() -> int:
    """This process's resident memory now (where there is no /proc, its peak)."""
    now = _status_bytes("VmRSS")
    return peak_rss_bytes() if now is None else now


def peak_rss_bytes() -> int:
    """This process's peak resident memory. VmHWM, not ru_maxrss: a child started by a big process
    inherits the parent's ru_maxrss across exec, while VmHWM starts afresh with the new program."""
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _status_bytes(field: str) -> int | None:
    """A memory field of /proc/self/status, in bytes (None without /proc)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith(field + ":")).split()[1]) * 1024
    return None
