"""device_warp: the carry step with torch's grid_sample (a GPU's), against OpenCV's on the host,
run here on the CPU."""

import cv2
import numpy as np
import pytest
import torch

from pipeline import device_warp, temporal
from pipeline.engine import Stylizer
from pipeline.frames import FrameStylizer
from pipeline.image_io import load_rgb
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.temporal import FlowEstimator, Frame, to_float
from tests.conftest import data_file

CPU = torch.device("cpu")


def photo(width: int = 160, height: int = 96) -> np.ndarray:
    rgb = cv2.imread(str(data_file("contents/tubingen.jpg")))[..., ::-1]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def crossing_pair():
    """A photo panned 5 px with a square moving 10 px the other way over it: disocclusions, motion
    edges and pixels out of view."""
    base = photo(200, 96)
    earlier, later = base[:, 20:180].copy(), base[:, 25:185].copy()
    square = base[0:48, 0:48]
    earlier[30:78, 70:118], later[30:78, 60:108] = square, square
    return Frame(later), Frame(earlier)


def test_the_warp_is_opencvs_remap():
    image = to_float(photo())
    flow = np.random.default_rng(1).normal(0, 3, (96, 160, 2)).astype(np.float32)
    flow = cv2.GaussianBlur(flow, (0, 0), 4) * 4 + np.float32([6.5, -2.25])  # smooth, past edges
    ours = device_warp.warp(torch.from_numpy(image), torch.from_numpy(flow)).numpy()
    theirs = temporal.warp(image, flow)
    # remap quantizes positions to 1/32 px: the two agree to that
    assert np.abs(ours - theirs).mean() < 2e-3
    assert np.abs(ours - theirs).max() < 0.05
    # the border is repeated where x + flow(x) leaves the picture
    assert np.allclose(ours[:, -3:], theirs[:, -3:], atol=0.05)


def test_the_mask_is_the_forward_backward_check_of_temporal():
    frame, earlier = crossing_pair()
    flows = FlowEstimator().pair(frame, earlier, neighbours=True)
    ours = device_warp.consistency_mask(
        torch.from_numpy(flows.backward), torch.from_numpy(flows.forward)
    ).numpy()
    theirs = temporal.consistency_mask(flows.backward, flows.forward)
    unvouched = theirs == 0
    assert 0.02 < unvouched.mean() < 0.5  # the check found something to leave unvouched
    assert (ours == theirs).mean() > 0.99
    assert (ours[unvouched] == 0).mean() > 0.9


def test_a_later_frame_carried_on_the_device_is_the_host_ones(embedded_weights):
    frame, earlier = crossing_pair()
    settings = StyleSettings(size=160, iterations=20, precision="fp32", device="cpu")
    stylizer = Stylizer(
        settings, [load_rgb(data_file("styles/starry_night.jpg"))], embedded_weights
    )
    results = []
    for warp_on in (None, CPU):
        frame_stylizer = FrameStylizer(stylizer, VideoSettings())
        frame_stylizer.warp_on = warp_on
        first, _ = frame_stylizer(earlier, None, 0)
        frame_stylizer.memory.add(0, earlier, first)
        warm, _ = frame_stylizer.warm_start(frame, 1, frame_stylizer.memory.previous())
        later, stats = frame_stylizer(frame, (earlier, first), 1)
        results.append((warm.carried, to_float(later), stats["losses"]["total"]))
    (host, host_frame, host_loss), (device, device_frame, device_loss) = results
    assert np.abs(host.image - device.image).mean() < 2e-3
    assert np.abs(host.mask - device.mask).mean() < 0.01
    assert np.abs(host_frame - device_frame).mean() < 0.01
    assert abs(device_loss - host_loss) < 0.02 * host_loss


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_carry_on_a_gpu_is_the_cpus():
    frame, earlier = crossing_pair()
    flows = FlowEstimator().pair(frame, earlier, neighbours=True)
    image = to_float(photo())
    on_gpu = device_warp.carry(image, flows, torch.device("cuda"))
    on_cpu = device_warp.carry(image, flows, CPU)
    assert np.abs(on_gpu.image - on_cpu.image).max() < 1e-4
    assert (on_gpu.mask == on_cpu.mask).mean() > 0.999
