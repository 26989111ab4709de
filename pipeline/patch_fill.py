"""Painted patches for what the flow cannot carry (--fill patches, the default): each unvouched
block of a later frame starts from the carried result's patch whose input looks most alike, so
what a moving object uncovers (and what enters the picture where it is vouched for nowhere: a
fast pan's wide strip, or with --catch-up) starts with the
painting's strokes instead of the bare photo, which a later frame's few evaluations do not paint.
The patches overlap by half and are blended with a triangular window: no seams at the blocks'
edges."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

BLOCK = 4  # px between patch centres; a patch is twice as wide
MAX_SOURCES = 8192  # candidate patches compared per frame (a 1080p frame has 130 000)


def patch_fill(
    result: np.ndarray, content: np.ndarray, mask: np.ndarray, device: torch.device | None = None
) -> np.ndarray:
    """`result` (H x W x 3, the carried result) with its pixels where `mask` (H x W, 1: vouched
    for) is below 1 taken from its own vouched patches, matched by `content` (the frame's input).
    Where nothing is vouched for, `content`. On `device` where given (a GPU's later frame)."""
    vouched = torch.from_numpy(np.ascontiguousarray(mask, np.float32)).to(device)[None, None]
    height, width = mask.shape
    rows, cols = height // BLOCK, width // BLOCK
    window_vouched = -F.max_pool2d(-_padded(vouched), 2 * BLOCK, BLOCK)[0, 0, :rows, :cols]
    sources = torch.nonzero(window_vouched.flatten() >= 1.0)[:, 0]
    queries = torch.nonzero(window_vouched.flatten() < 1.0)[:, 0]
    if len(queries) == 0:  # most frames of a still camera: nothing to move to the device or match
        return result
    if len(sources) == 0:
        return _blend(result, content, mask)
    image, photo = _chw(result, device), _chw(content, device)
    looks = _block_features(photo[:, :, : rows * BLOCK, : cols * BLOCK])
    sources = sources[:: -(-len(sources) // MAX_SOURCES)]  # an even subset, at most the cap
    nearest = sources[torch.cdist(looks[queries], looks[sources]).argmin(dim=1)]
    filled = _overlap_add(image, queries, nearest, cols)
    return _blend(result, filled, mask)


def _chw(image: np.ndarray, device: torch.device | None) -> torch.Tensor:
    chw = torch.from_numpy(np.ascontiguousarray(image, np.float32)).permute(2, 0, 1)[None]
    return chw.to(device)


def _padded(image: torch.Tensor) -> torch.Tensor:
    """Half a block of the border repeated on each side: a patch per block, centred on it."""
    return F.pad(image, (BLOCK // 2,) * 4, mode="replicate")


def _block_features(photo: torch.Tensor) -> torch.Tensor:
    """Each block's look: the mean colour of it and its 8 neighbours (27 numbers a block)."""
    means = F.avg_pool2d(photo, BLOCK)
    around = F.unfold(F.pad(means, (1, 1, 1, 1), mode="replicate"), 3)
    return around[0].T  # blocks x 27, row-major like the pooled grid


def _window(device: torch.device) -> torch.Tensor:
    ramp = torch.cat([torch.arange(1, BLOCK + 1), torch.arange(BLOCK, 0, -1)]).float().to(device)
    return torch.outer(ramp, ramp)


def _patch_pixels(blocks: torch.Tensor, columns: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows and columns, in the padded image, of each block's patch (blocks x side x side)."""
    offsets = torch.arange(2 * BLOCK, device=blocks.device)
    rows = (blocks // columns)[:, None, None] * BLOCK + offsets[None, :, None]
    cols = (blocks % columns)[:, None, None] * BLOCK + offsets[None, None, :]
    return torch.broadcast_tensors(rows, cols)


def _overlap_add(
    image: torch.Tensor, queries: torch.Tensor, nearest: torch.Tensor, columns: int
) -> np.ndarray:
    """The image with each query block's patch replaced by its nearest source's patch, the
    overlapping patches blended by the window. Blocks are numbered row by row over a grid
    `columns` blocks wide from the top left."""
    padded = _padded(image)[0].permute(1, 2, 0)  # rows x columns x 3
    window = _window(image.device).expand(len(queries), -1, -1)
    summed = torch.zeros_like(padded)
    total = torch.zeros(padded.shape[:2], device=image.device)
    at = _patch_pixels(queries, columns)
    summed.index_put_(at, padded[_patch_pixels(nearest, columns)] * window[..., None], True)
    total.index_put_(at, window, accumulate=True)
    inner = slice(BLOCK // 2, -(BLOCK // 2))
    summed, total = summed[inner, inner], total[inner, inner, None]
    filled = torch.where(total > 0, summed / total.clamp(min=1e-8), padded[inner, inner])
    return filled.cpu().numpy()


def _blend(result: np.ndarray, other: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weight = mask[..., None]
    return (weight * result + (1 - weight) * other).astype(np.float32)
