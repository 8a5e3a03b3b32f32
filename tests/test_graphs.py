"""The CUDA-graph step (train/graphs.py) on the CPU: everything around the capture itself.

A stand-in capture that replays by calling the step stands for the CUDA graph, so that the
static input buffers, the EMA weight read at replay time, the check against the eager step and
the fallback are all exercised here; tests/test_cuda.py captures a real graph on a GPU.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest
import torch
from helpers import tiny_config
from torch.utils._python_dispatch import TorchDispatchMode

from productgan.config import resolve
from productgan.data import open_dataset
from productgan.errors import UsageError
from productgan.losses import build_loss
from productgan.train import Trainer
from productgan.train.distributed import Context
from productgan.train.graphs import StepGraph, graph_blockers, use_graph
from productgan.train.logs import StepStats
from productgan.train.networks import optimizer, settle_optimizer

CUDA = torch.device("cuda")  # only named: nothing here runs on it


class EagerCapture:
    """A capture (train/graphs.py's ``Capture``) without a GPU: "replaying" calls the function,
    so everything around the graph (buffers, check, fallback) runs on a CPU."""

    def warm(self) -> AbstractContextManager:
        return nullcontext()

    def __call__(self, fn: Callable[[], torch.Tensor], generator: torch.Generator) -> Callable[[], torch.Tensor]:
        return fn


def trainer_for(data, tmp_path: Path, **train) -> Trainer:
    config = tiny_config(data, tmp_path / "unused", steps=8)
    config.model.conditional = True
    config.train.device = "cpu"  # also where a GPU is visible: these are the CPU's tests
    for key, value in train.items():
        setattr(config.train, key, value)
    dataset = open_dataset(str(data))
    resolve(config, dataset)
    return Trainer(config, tmp_path / "unused", dataset)


def graphed(trainer: Trainer, capture, warmup: int = 2) -> StepGraph:
    trainer.graph = StepGraph(
        trainer._step, trainer._step_state, trainer.noise_rng, trainer._seed_noise, capture=capture, warmup=warmup
    )
    return trainer.graph


def run_steps(trainer: Trainer, n: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    stats = StepStats.zeros(trainer.device)
    for _ in range(n):
        trainer.train_step(stats)
    return [t.detach().clone() for t in trainer._step_state()], stats.sums


def assert_same_state(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.allclose(x.double(), y.double(), rtol=1e-6, atol=1e-7)


@pytest.fixture
def eager(fake_packed, tmp_path):
    """Six eager steps of a conditional tiny run with the EMA and DiffAugment: the reference."""
    return run_steps(trainer_for(fake_packed, tmp_path / "eager", augment=True), 6)


def test_replayed_steps_train_as_the_eager_steps_do(fake_packed, tmp_path, eager):
    trainer = trainer_for(fake_packed, tmp_path, augment=True)
    calls = []

    class Counting(EagerCapture):
        def __call__(self, fn, generator):
            calls.append(generator)
            return super().__call__(fn, generator)

    graph = graphed(trainer, Counting())
    state, sums = run_steps(trainer, 6)
    assert graph.active and graph.dropped is None
    assert calls == [trainer.noise_rng]  # captured once, with the run's noise generator
    assert_same_state(state, eager[0])
    assert torch.allclose(sums, eager[1], rtol=1e-6)


def test_a_graph_that_does_not_update_is_dropped_and_training_goes_on_eagerly(fake_packed, tmp_path, eager, capsys):
    trainer = trainer_for(fake_packed, tmp_path, augment=True)

    class Inert(EagerCapture):
        def __call__(self, fn, generator):
            return lambda: torch.zeros(4)

    graph = graphed(trainer, Inert())
    state, _ = run_steps(trainer, 6)
    assert not graph.active and "differs from the eager one" in graph.dropped
    assert "runs without a CUDA graph" in capsys.readouterr().err
    assert_same_state(state, eager[0])


def test_a_graph_that_keeps_what_it_saw_at_capture_is_caught(fake_packed, tmp_path):
    """The capture sees deliberately wrong inputs, EMA weight and noise seed, so a graph that
    baked them in (instead of reading its buffers and its generator at replay) differs from the
    eager step."""
    trainer = trainer_for(fake_packed, tmp_path, augment=True)
    graph = None

    class BakedWeight(EagerCapture):
        def __call__(self, fn, generator):
            at_capture = graph._weight.clone()

            def replay():
                now = graph._weight.clone()
                graph._weight.copy_(at_capture)
                try:
                    return fn()
                finally:
                    graph._weight.copy_(now)

            return replay

    class BakedInputs(EagerCapture):
        def __call__(self, fn, generator):
            at_capture = [(images.clone(), labels.clone()) for images, labels in graph._reals]

            def replay():
                for (images, labels), (old_images, old_labels) in zip(graph._reals, at_capture):
                    images.copy_(old_images)
                    labels.copy_(old_labels)
                return fn()

            return replay

    class BakedNoise(EagerCapture):
        def __call__(self, fn, generator):
            at_capture = generator.get_state()

            def replay():
                generator.set_state(at_capture)
                return fn()

            return replay

    for capture in (BakedWeight(), BakedInputs(), BakedNoise()):
        graph = graphed(trainer, capture)
        run_steps(trainer, 4)
        assert graph.dropped is not None and "differs" in graph.dropped, type(capture).__name__


def test_a_capture_that_fails_leaves_the_eager_step(fake_packed, tmp_path, eager, capsys):
    trainer = trainer_for(fake_packed, tmp_path, augment=True)

    class Failing(EagerCapture):
        def __call__(self, fn, generator):
            raise RuntimeError("operation not permitted when stream is capturing\nmore lines")

    graph = graphed(trainer, Failing())
    state, _ = run_steps(trainer, 6)
    assert graph.dropped == "it could not be captured here (operation not permitted when stream is capturing)"
    assert "could not be captured" in capsys.readouterr().err
    assert_same_state(state, eager[0])


def test_which_steps_can_be_graphed(fake_packed, tmp_path):
    config = tiny_config(fake_packed, tmp_path)
    assert graph_blockers(config, CUDA, torch.bfloat16) == []
    assert graph_blockers(config, torch.device("cpu"), None) == ["CUDA graphs need a CUDA device"]
    assert "float16" in graph_blockers(config, CUDA, torch.float16)[0]
    assert "all-reduce" in graph_blockers(config, CUDA, None, Context(rank=0, world_size=2, local_rank=0))[0]
    for section, key, value, words in [
        ("loss", "name", "wgan-gp", "WGAN-GP"),
        ("loss", "r1_gamma", 1.0, "R1"),
        ("optim", "lr_decay", "linear", "lr-decay"),
        ("train", "compile", True, "compile"),
    ]:
        changed = tiny_config(fake_packed, tmp_path)
        setattr(getattr(changed, section), key, value)
        (reason,) = graph_blockers(changed, CUDA, None)
        assert words in reason


def test_cuda_graph_auto_on_and_off(fake_packed, tmp_path):
    config = tiny_config(fake_packed, tmp_path)
    cpu = torch.device("cpu")
    assert use_graph(config, CUDA, None) and not use_graph(config, cpu, None)
    config.train.cuda_graph = "off"
    assert not use_graph(config, CUDA, None)
    config.train.cuda_graph = "on"
    assert use_graph(config, CUDA, None)
    with pytest.raises(UsageError, match=r"cannot graph this run's step \(CUDA graphs need a CUDA device\)"):
        use_graph(config, cpu, None)
    # A Trainer on the CPU says so before it trains.
    with pytest.raises(UsageError, match="CUDA graphs need a CUDA device"):
        trainer_for(fake_packed, tmp_path, cuda_graph="on")
    assert trainer_for(fake_packed, tmp_path).graph is None


def test_optimiser_state_saved_by_a_graphed_run_trains_on_where_it_is_loaded(fake_packed, tmp_path):
    """A graphed GPU run saves Adam with capturable set and step counts on the device; loaded
    into a run on a CPU, the optimiser is settled to what that run needs, and steps as one that
    never left it."""
    torch.manual_seed(0)
    weights = torch.nn.Parameter(torch.randn(5))
    twin = torch.nn.Parameter(weights.detach().clone())
    a, b = torch.optim.Adam([weights], lr=0.1), torch.optim.Adam([twin], lr=0.1)
    for p, opt in ((weights, a), (twin, b)):
        p.grad = torch.ones(5)
        opt.step()
    saved = copy.deepcopy(a.state_dict())  # as a checkpoint file holds it: no shared tensors
    saved["param_groups"][0]["capturable"] = True
    b.load_state_dict(saved)
    assert b.param_groups[0]["capturable"]
    settle_optimizer(b, graphed=False)
    assert not b.param_groups[0]["capturable"] and b.state[twin]["step"].device.type == "cpu"
    for p, opt in ((weights, a), (twin, b)):
        p.grad = torch.full((5,), 0.5)
        opt.step()
    assert torch.equal(weights, twin)


class HostWork(TorchDispatchMode):
    """Records the operations a CUDA graph cannot capture: reading a value back to the host
    (``.item()``, a sync) and making a tensor from host data (a host-to-device copy on a GPU)."""

    CANNOT_CAPTURE = ("aten._local_scalar_dense", "aten.lift_fresh", "aten.nonzero", "aten.masked_select")

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func).startswith(self.CANNOT_CAPTURE):
            self.found.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("loss", ["bce", "lsgan", "hinge"])
def test_the_step_does_nothing_a_cuda_graph_cannot_capture(fake_packed, tmp_path, loss):
    """Every part of a graphable step (conditional G and D, all DiffAugment transforms, mirror
    flips, several D and G updates, the EMA with a device-scalar weight), run as the graph runs
    it. SGD stands in for Adam, whose CPU update reads its step count back (the graphed Adam
    keeps it on the device)."""
    trainer = trainer_for(fake_packed, tmp_path, augment=True, hflip=True)
    o = trainer.config.optim
    trainer.config.loss.name, o.name, o.d_steps_per_g_step, o.g_steps_per_d_step = loss, "sgd", 2, 2
    trainer.loss = build_loss(trainer.config.loss)
    trainer.opt_g = optimizer(trainer.G.parameters(), o, 1e-3)
    trainer.opt_d = optimizer(trainer.D.parameters(), o, 1e-3)
    reals, weight = [trainer.batches.next() for _ in range(2)], torch.tensor(0.1)
    trainer._step(reals, weight)  # the optimisers' first step creates their state
    with HostWork() as host:
        trainer._step(reals, weight)
    assert host.found == []
