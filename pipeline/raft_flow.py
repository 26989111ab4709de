"""torchvision's RAFT (small), a learned flow to judge a result with (`stylize eval-temporal --flow
raft`): its weights are downloaded once into torch's cache where the user has a network. Only this
judge imports torchvision."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from pipeline.errors import WeightsError, first_line

RAFT_UPDATES = 12  # the refinement iterations torchvision's RAFT runs by default
RAFT_MIN_SIDE = 128  # its correlation pyramid needs 16 feature pixels a side, at 1/8 scale


def load_raft(pretrained: bool = True) -> torch.nn.Module:
    """RAFT-small with torchvision's weights (downloaded once, hash-checked), or untrained."""
    from torchvision.models.optical_flow import Raft_Small_Weights, raft_small

    weights = Raft_Small_Weights.DEFAULT if pretrained else None
    try:
        model = raft_small(weights=weights, progress=False)
    except Exception as err:  # no network, a proxy, a damaged download: all say the same here
        raise WeightsError(
            f"{weights.url}: RAFT weights download failed ({first_line(err)}); "
            "judge with --flow dis or --flow farneback"
        ) from None
    return model.eval().requires_grad_(False)


def raft_flow(model: torch.nn.Module, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """H x W x 2: for each pixel of the RGB float `source`, where it lies in `target`. RAFT takes
    sides divisible by 8, of at least 128 px, and values in [-1, 1]: the frames are padded (edge
    repeated), then the flow cropped back."""
    height, width = source.shape[:2]
    pad = tuple(max(RAFT_MIN_SIDE, side + -side % 8) - side for side in (height, width))
    tensors = [
        torch.from_numpy(
            cv2.copyMakeBorder(image, 0, pad[0], 0, pad[1], cv2.BORDER_REPLICATE) * 2 - 1
        )
        .permute(2, 0, 1)[None]
        .float()
        for image in (source, target)
    ]
    with torch.no_grad():
        flows = model(*tensors, num_flow_updates=RAFT_UPDATES)
    return flows[-1][0].permute(1, 2, 0).numpy()[:height, :width].astype(np.float32)
