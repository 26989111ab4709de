"""device_lbfgs: torch's L-BFGS steps with nothing read back to the host until the budget ends."""

import copy
import itertools
import math

import numpy as np
import pytest
import torch

from benchmarks.harness import host_reads
from pipeline.device_lbfgs import Anchor, Best, History, minimize
from pipeline.engine import Hold, Plan, Stylizer
from pipeline.frames import FrameStylizer
from pipeline.image_io import load_rgb, to_tensor
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.temporal import Frame, to_float
from pipeline.video_io import Reader, probe
from tests.conftest import data_file


def quadratic(size: int = 40):
    generator = torch.Generator().manual_seed(5)
    basis = torch.randn(size, size, generator=generator, dtype=torch.float64)
    matrix = basis @ basis.T / size + 0.1 * torch.eye(size, dtype=torch.float64)
    target = torch.randn(size, generator=generator, dtype=torch.float64)
    return matrix, target


def quadratic_loss(x, matrix, target):
    difference = x.reshape(-1) - target
    return 0.5 * difference @ matrix @ difference


def test_the_direction_is_torchs_two_loop_recursion():
    """torch's L-BFGS run a few steps on a quadratic: from its pairs and scale, our direction at
    its last gradient is the direction it took."""
    matrix, target = quadratic()
    x = torch.zeros(40, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [x], lr=1, max_iter=9, max_eval=100, history_size=5, tolerance_grad=0.0,
        tolerance_change=0.0,
    )  # fmt: skip

    def closure():
        optimizer.zero_grad()
        loss = quadratic_loss(x, matrix, target)
        loss.backward()
        return loss

    optimizer.step(closure)
    state = optimizer.state[x]
    history = History(5)
    for step, change in zip(state["old_stps"], state["old_dirs"]):
        history.add(step, change)
    history.scale = state["H_diag"]
    assert len(history.steps) == 5
    direction = history.direction(state["prev_flat_grad"])
    assert torch.allclose(direction, state["d"], rtol=1e-10, atol=1e-12)


def recording_closure(losses: list[float], nan_at: int | None = None):
    """minimize's closure on the quadratic, each loss recorded; evaluation `nan_at` returns NaN
    with a NaN gradient."""
    matrix, target = quadratic()

    def closure(pixels):
        pixels.grad = None
        loss = quadratic_loss(pixels, matrix, target)
        if len(losses) == nan_at:
            loss = loss * float("nan")
        loss.backward()
        losses.append(float(loss.detach()))
        return {"loss": loss}, loss, pixels

    return closure


def test_minimize_brings_a_quadratic_down_and_never_returns_a_worse_point():
    matrix, target = quadratic()
    x = torch.zeros(40, dtype=torch.float64, requires_grad=True)
    losses = []
    best = minimize(x, recording_closure(losses), 15, History(5))
    assert len(losses) == 15
    assert float(best.loss) == min(losses) < 0.01 * losses[0]
    assert torch.allclose(quadratic_loss(best.image, matrix, target), best.loss)


def test_a_pair_that_fails_the_curvature_condition_weighs_nothing():
    history = History(3)
    history.add(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0]))
    direction = history.direction(torch.tensor([1.0, 1.0]))
    history.add(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0]))  # y.s < 0: no curvature
    assert torch.equal(history.direction(torch.tensor([1.0, 1.0])), direction)
    steps, changes = history.useful_pairs()
    assert len(steps) == len(changes) == 1
    assert float(history.scale) == pytest.approx(0.5)


def test_the_best_image_never_takes_a_diverged_evaluation():
    best = Best(torch.tensor(math.inf), torch.zeros(2))
    best.offer(torch.tensor(3.0), torch.ones(2), {"a": torch.tensor(3.0)})
    best.offer(torch.tensor(float("nan")), torch.full((2,), 9.0), {"a": torch.tensor(float("nan"))})
    best.offer(torch.tensor(4.0), torch.full((2,), 4.0), {"a": torch.tensor(4.0)})
    assert torch.equal(best.image, torch.ones(2))
    assert float(best.loss) == 3.0 and float(best.parts["a"]) == 3.0


@pytest.fixture(scope="module")
def car_frames():
    with Reader(probe(data_file("videos/car-detection.mp4")), (128, 72)) as reader:
        return list(itertools.islice(reader.frames(), 3))


@pytest.fixture(scope="module")
def small_stylizer(embedded_weights):
    style = load_rgb(data_file("styles/starry_night.jpg"))
    settings = StyleSettings(size=128, iterations=30, precision="fp32", device="cpu")
    return Stylizer(settings, [style], embedded_weights)


@pytest.fixture(scope="module")
def first_frame(small_stylizer, car_frames):
    """Frame 0 stylized cold once, for every run of `later_frames` (its result and curvature)."""
    return small_stylizer.stylize(to_tensor(to_float(car_frames[0])))


def later_frames(stylizer: Stylizer, frames, first, on_device: bool, evaluations: int = 8):
    """Frames 1 and 2 warm-started from frame 0 (`first`: its cold result, handed on as a run
    would); each later frame's stats and its host reads."""
    video = VideoSettings(evaluations_next=evaluations, iterations_next=evaluations)
    frame_stylizer = FrameStylizer(stylizer, video)
    frame_stylizer.on_device = on_device
    result, _ = frame_stylizer.finish(0, Frame(frames[0]), copy.deepcopy(first), None, None)
    frame_stylizer.memory.add(0, Frame(frames[0]), result)
    reports = []
    for index in (1, 2):
        with host_reads() as reads:
            image, stats = frame_stylizer(
                Frame(frames[index]), (Frame(frames[index - 1]), result), index
            )
        frame_stylizer.memory.add(index, Frame(frames[index]), image)
        _, curvature = frame_stylizer.state.curvature  # what it hands on
        stats["curvature"] = (curvature.scale, len(curvature.steps))
        reports.append((stats, reads.reads))
        result = image
    return reports


def test_a_later_frame_reads_nothing_back_while_it_spends_its_budget(
    small_stylizer, car_frames, first_frame
):
    """The host reads the losses and the curvature once a frame: twice the evaluations, the same
    reads (torch.optim.LBFGS reads about 26 an evaluation)."""
    runs = [(True, 6), (True, 12), (False, 6)]
    short, long, torch_loop = (
        later_frames(small_stylizer, car_frames, first_frame, on_device, evaluations)
        for on_device, evaluations in runs
    )
    for (short_stats, short_reads), (long_stats, long_reads) in zip(short, long):
        assert (short_stats["evaluations"], long_stats["evaluations"]) == (6, 12)
        assert long_reads == short_reads
    assert all(torch_reads > 4 * short[0][1] for _, torch_reads in torch_loop)


def test_a_later_frame_on_the_device_is_as_good_as_torchs(small_stylizer, car_frames, first_frame):
    """The same budget, the same losses within 2 %, and the curvature handed to the next frame."""
    ours = later_frames(small_stylizer, car_frames, first_frame, on_device=True)
    theirs = later_frames(small_stylizer, car_frames, first_frame, on_device=False)
    for (our_stats, _), (their_stats, _) in zip(ours, theirs):
        assert our_stats["evaluations"] == their_stats["evaluations"] == 8
        assert our_stats["curvature"][0] > 0 and our_stats["curvature"][1] > 0
        assert our_stats["losses"]["total"] < 1.02 * their_stats["losses"]["total"]
        assert set(our_stats["losses"]) == set(their_stats["losses"])


def stylize_counting_reads(stylizer: Stylizer, content, plan: Plan):
    with host_reads() as reads:
        result = stylizer.stylize(content, plan)
    return result, reads.reads


def test_held_pixels_stay_held_on_the_device(small_stylizer, car_frames):
    content = to_tensor(to_float(car_frames[1]))
    start = small_stylizer.stylize(content, Plan(iterations=5))
    weight = torch.zeros(1, 1, *content.shape[-2:])
    weight[..., :, : content.shape[-1] // 2] = 1.0
    hold = Hold(start.image, weight)
    plan = Plan(
        init=start.image, iterations=6, evaluations=6, hold=hold, on_device=True,
        curvature=start.curvature,
    )  # fmt: skip
    result, reads = stylize_counting_reads(small_stylizer, content, plan)
    assert reads < 30  # device_lbfgs ran (torch's loop reads about 26 an evaluation)
    left = (slice(None), slice(None), slice(None), slice(0, content.shape[-1] // 2))
    assert torch.allclose(result.image[left], start.image[left], atol=1e-6)
    assert not np.allclose(result.image.numpy(), start.image.numpy(), atol=1e-3)
    assert result.evaluations == 6


def test_without_curvature_or_with_fewer_iterations_torchs_loop_runs(small_stylizer, car_frames):
    """device_lbfgs takes a unit step an evaluation from carried curvature: a plan with no
    curvature (its first step's length unknown) or fewer iterations than evaluations goes to
    torch's loop, on a GPU too."""
    content = to_tensor(to_float(car_frames[1]))
    start = small_stylizer.stylize(content, Plan(iterations=5))
    plans = {
        "device": Plan(init=start.image, iterations=6, evaluations=6, on_device=True,
                       curvature=start.curvature),
        "no curvature": Plan(init=start.image, iterations=6, evaluations=6, on_device=True),
        "fewer iterations": Plan(init=start.image, iterations=2, evaluations=6, on_device=True,
                                 curvature=start.curvature),
    }  # fmt: skip
    reads = {
        name: stylize_counting_reads(small_stylizer, content, plan)[1]
        for name, plan in plans.items()
    }
    assert reads["device"] < 30
    assert reads["no curvature"] > 60 and reads["fewer iterations"] > 30


def test_a_step_that_raised_the_loss_is_taken_back_to_the_parabolas_minimum():
    """f(x) = (x - 3)^2 from x = 0 (f 9, slope -6), a step to 10 (f 49): the parabola through
    those is f itself, its minimum 3 is 0.3 of the way."""
    anchor = Anchor(torch.tensor(9.0), torch.tensor([0.0]), torch.tensor([-6.0]))
    assert torch.allclose(
        anchor.back_from(torch.tensor(49.0), torch.tensor([10.0])), torch.tensor([3.0])
    )
    # a minimum closer than a tenth of the way is not trusted: a tenth
    near = anchor.back_from(torch.tensor(1e4), torch.tensor([100.0]))
    assert torch.allclose(near, torch.tensor([10.0]))


def test_a_first_pair_without_curvature_leaves_the_scale_at_one():
    history = History(3)
    history.add(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0]))  # y.s < 0
    assert float(history.scale) == 1.0
    history.add(torch.tensor([0.0, 0.0]), torch.tensor([0.0, 0.0]))  # 0 / 0
    assert float(history.scale) == 1.0
    assert torch.isfinite(history.direction(torch.tensor([1.0, 2.0]))).all()


def test_a_diverged_evaluation_costs_one_evaluation_not_the_budget():
    x = torch.zeros(40, dtype=torch.float64, requires_grad=True)
    losses = []
    best = minimize(x, recording_closure(losses, nan_at=4), 15, History(5))
    assert math.isnan(losses[4])
    finite = [value for value in losses if math.isfinite(value)]
    assert float(best.loss) == min(finite) < 0.5 * min(losses[:4])
    assert torch.isfinite(best.image).all()
