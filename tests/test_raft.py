"""RAFT as a judge's flow (`stylize eval-temporal --flow raft`): the code path with an untrained
network here (its weights need a download), and one clear line where the download fails."""

import numpy as np
import pytest

from pipeline.errors import WeightsError
from pipeline.temporal import Frame, RaftFlow, flow_estimator


def test_raft_flows_come_back_at_the_frames_own_size():
    rng = np.random.default_rng(0)
    earlier = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)  # sides not divisible by 8
    frame = np.roll(earlier, 3, axis=1)
    pair = RaftFlow(pretrained=False).pair(Frame(frame), Frame(earlier))
    for flow in (pair.backward, pair.forward):
        assert flow.shape == (70, 90, 2) and flow.dtype == np.float32
        assert np.isfinite(flow).all()


def test_a_failed_weights_download_is_one_line_naming_the_url(monkeypatch):
    import torchvision.models._api as api

    def offline(url, *args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError, match=r"raft_small.*download failed.*--flow dis") as error:
        flow_estimator("raft")
    assert "\n" not in str(error.value)
