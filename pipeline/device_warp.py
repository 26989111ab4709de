"""The carry step on the engine's GPU: an earlier result warped along the backward flow, and the
forward-backward check, with torch's `grid_sample` instead of OpenCV's `remap` on the host. The
formulas are `temporal.warp` and `temporal.consistency_mask`'s; the flows cross to the device and
the carried image and mask come back, once a carry. At 1080p the two take 0.4 s of a later frame
on the host (make bench-throughput: "warps", "masks"), more than a GPU's evaluations of it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.temporal import Carried, FlowPair, flows_agree, to_float


def sampling_grid(flow: torch.Tensor) -> torch.Tensor:
    """1 x H x W x 2: x + flow(x) in grid_sample's coordinates (-1 and 1 the corner pixels'
    centres, as remap's pixel coordinates with align_corners)."""
    height, width = flow.shape[:2]
    ys, xs = torch.meshgrid(
        torch.arange(height, device=flow.device, dtype=flow.dtype),
        torch.arange(width, device=flow.device, dtype=flow.dtype),
        indexing="ij",
    )
    x = (xs + flow[..., 0]) * (2 / max(width - 1, 1)) - 1
    y = (ys + flow[..., 1]) * (2 / max(height - 1, 1)) - 1
    return torch.stack([x, y], dim=-1)[None]


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """`image` (H x W x C) sampled at x + flow(x), bilinear, the border repeated beyond it."""
    batch = image.permute(2, 0, 1)[None]
    sampled = F.grid_sample(
        batch, sampling_grid(flow), mode="bilinear", padding_mode="border", align_corners=True
    )
    return sampled[0].permute(1, 2, 0)


def consistency_mask(backward: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """1 where the two flows agree, 0 at disocclusions and motion edges (Ruder et al., eq. 6-7;
    `temporal.flows_agree`, as on the host)."""
    forward_at = warp(forward, backward)
    du, dv = torch.gradient(backward[..., 0]), torch.gradient(backward[..., 1])
    return flows_agree(backward, forward_at, du, dv).float()


def carry(result: np.ndarray, flows: FlowPair, device: torch.device) -> Carried:
    """`temporal.carry` on `device`: the result warped onto this frame, and the mask."""

    def there(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, np.float32)).to(device)

    backward, forward = there(flows.backward), there(flows.forward)
    image = warp(there(to_float(result)), backward)  # floats in [0, 1], also from 8 or 16 bits
    mask = consistency_mask(backward, forward)
    return Carried(image.cpu().numpy(), mask.cpu().numpy())
