"""The user's cache folder ($XDG_CACHE_HOME/stylize, else ~/.cache/stylize): what costs time to
compute and does not depend on the content, kept between runs. Every read and write is best
effort: a cache that cannot be read or written costs the time again, never the run."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import torch

GRAM_ENTRIES = 64  # style targets kept (about 2.4 MB each for the default layers), newest first


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stylize"


def load_tensors(folder: str, key: str) -> dict[str, torch.Tensor] | None:
    """The tensors saved under `key`, or None where there are none (or they cannot be read)."""
    path = cache_root() / folder / f"{key}.pt"
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # absent or damaged: computed again and replaced
        return None
    with contextlib.suppress(OSError):  # a read-only cache still serves
        os.utime(path)  # recently used: kept longest
    return tensors


def save_tensors(folder: str, key: str, tensors: dict[str, torch.Tensor], keep: int) -> None:
    """Atomically, then only the `keep` most recently used entries of the folder are kept."""
    directory = cache_root() / folder
    tmp = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=directory)
        os.close(handle)
        tmp = Path(name)
        # torch.save reports a full disk or an unwritable file as RuntimeError, not OSError
        torch.save({name: t.detach().cpu() for name, t in tensors.items()}, tmp)
        os.replace(tmp, directory / f"{key}.pt")
        tmp = None
        entries = sorted(directory.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[keep:]:
            old.unlink(missing_ok=True)
    except Exception:  # the cache is a courtesy: the run goes on without it
        return
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
