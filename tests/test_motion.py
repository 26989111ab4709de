"""Judging a result with another flow than the one that made it: the independent Farneback
estimator follows a known shift, and `stylize eval-temporal --flow` uses the flow it names."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from pipeline.errors import SettingsError
from pipeline.temporal import FarnebackFlow, Frame, flow_estimator
from tests.conftest import run_ffmpeg

runner = CliRunner()


def shifted_pair(shift: int) -> tuple[Frame, Frame]:
    """A textured picture and the same seen by a camera `shift` px to the right."""
    rng = np.random.default_rng(3)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (96, 200, 3), dtype=np.uint8), (0, 0), 2.0)
    before = np.ascontiguousarray(texture[:, :160])
    now = np.ascontiguousarray(texture[:, shift : shift + 160])
    return Frame(now), Frame(before)


def test_farneback_follows_a_known_shift_in_both_directions():
    now, before = shifted_pair(8)
    flows = FarnebackFlow().pair(now, before)
    inner = (slice(16, -16), slice(16, -24))
    assert np.abs(flows.backward[inner] - (8, 0)).mean() < 0.5
    assert np.abs(flows.forward[(slice(16, -16), slice(24, -16))] - (-8, 0)).mean() < 0.5
    assert not flows.camera_still


def test_an_unknown_flow_is_refused():
    with pytest.raises(SettingsError, match="--flow raft: use one of dis, dis-raw, farneback"):
        flow_estimator("raft")


def test_eval_temporal_judges_with_the_flow_it_is_given(tmp_path):
    clip = tmp_path / "clip.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10", "-frames:v", "6", str(clip))
    figures = {}
    for flow in ("dis", "farneback"):
        result = runner.invoke(
            app, ["eval-temporal", str(clip), str(clip), "--k", "1", "--flow", flow]
        )
        assert result.exit_code == 0, result.output
        assert f"flow: {flow}" in result.output
        error = re.search(r"output ([\d.]+)\s+input ([\d.]+)\s+ratio ([\d.]+)", result.output)
        figures[flow] = error.groups()
        assert (
            error.group(1) == error.group(2) and error.group(3) == "1.00"
        )  # judged against itself
    assert figures["dis"][1] != figures["farneback"][1]  # two flows, two judgements of the input
    refused = runner.invoke(app, ["eval-temporal", str(clip), str(clip), "--flow", "raft"])
    assert refused.exit_code == 2
