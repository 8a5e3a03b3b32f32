"""The training step as one CUDA graph, for GPUs that the step's many small kernels leave idle.

At the batch sizes people train with, a GPU step is bound by the host launching its kernels
(on an H100 at batch 64: 405 kernels, 3.1 ms of GPU work in 9.7 ms of wall time). A CUDA graph
records the step's kernels once and replays them all with one launch. What changes from step to
step stays outside the graph and reaches it through tensors the graph reads:

- the real batches, copied into fixed input buffers before each replay;
- the noise, drawn from the run's generator, which is registered with the graph, so each replay
  draws from the seed the step set (noise stays a function of seed, step and rank);
- the EMA's blending weight, a device scalar filled before each replay.

Before the graph is used it is checked: from one saved state the step is taken eagerly, the
state is put back, the graph is captured with its inputs and weight deliberately wrong, then
given the step's real ones and replayed. The two results must agree (the graph must read what
changes, not what it saw while captured); a graph that disagrees, or that cannot be captured,
is dropped with a warning and the run goes on with the eager step, from the eager result.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

import torch
from tqdm import tqdm

from productgan.config import RunConfig
from productgan.errors import UsageError, first_line
from productgan.train.distributed import SINGLE, Context

WARMUP_STEPS = 3  # eager steps before the capture: cuDNN's autotuning, the optimisers' state
RELATIVE_TOLERANCE = 0.05  # of each tensor's change in the eager step
SIZE_TOLERANCE = 1e-6  # of each tensor's size, for tensors the step barely moves
CAPTURE_SEED = 0x5EED_5EED  # the noise seed while capturing: not a step's, so baked-in noise shows

Reals = Sequence[tuple[torch.Tensor, torch.Tensor]]  # (uint8 images, labels) per D update
Body = Callable[[Reals, "float | torch.Tensor"], torch.Tensor]  # the step from its inputs: its four statistics


def graph_blockers(config: RunConfig, device: torch.device, dtype: torch.dtype | None, context: Context = SINGLE):
    """What keeps this run's step out of a CUDA graph, as phrases (empty: it can be graphed)."""
    t, reasons = config.train, []
    if device.type != "cuda":
        reasons.append("CUDA graphs need a CUDA device")
    if context.enabled:
        reasons.append("a torchrun job's gradient all-reduce is not captured")
    if t.compile:
        reasons.append("--train.compile captures graphs of its own")
    if dtype == torch.float16:
        reasons.append("float16's loss scaler checks for overflow on the host")
    if config.loss.name == "wgan-gp":
        reasons.append("WGAN-GP's gradient penalty differentiates twice")
    if config.loss.r1_gamma > 0:
        reasons.append("the R1 penalty is taken on some steps only")
    if config.optim.lr_decay != "none":
        reasons.append("--optim.lr-decay changes the learning rate every step")
    return reasons


def use_graph(config: RunConfig, device: torch.device, dtype: torch.dtype | None, context: Context = SINGLE) -> bool:
    """Whether the step runs as a CUDA graph: ``--train.cuda-graph auto`` where nothing keeps
    it out, ``on`` or a UsageError saying why not, ``off`` never."""
    mode = config.train.cuda_graph
    if mode == "off":
        return False
    blockers = graph_blockers(config, device, dtype, context)
    if mode == "on" and blockers:
        raise UsageError(
            f"--train.cuda-graph on cannot graph this run's step ({'; '.join(blockers)}); "
            f"use --train.cuda-graph auto to use a graph only where one can be used."
        )
    return not blockers


class Capture(Protocol):
    """What StepGraph needs of a graph capture; ``CudaCapture`` is the one runs use, and tests
    pass one that runs on a CPU.

    ``warm()`` is the context the checked eager step runs in (work before a CUDA capture belongs
    on a side stream). Called with ``(fn, generator)``, it records ``fn``'s work with
    ``generator`` registered, so each replay draws from the generator's seed at that time, and
    returns a function that replays the work and returns ``fn``'s outputs.
    """

    def warm(self) -> AbstractContextManager: ...

    def __call__(self, fn: Callable[[], torch.Tensor], generator: torch.Generator) -> Callable[[], torch.Tensor]: ...


class CudaCapture:
    """Captures a function's CUDA work as a graph; replaying returns the function's outputs
    (the same tensors each time, overwritten by each replay)."""

    def __init__(self, device: torch.device | None = None):
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def warm(self) -> AbstractContextManager:
        """Work run inside this context runs on a side stream, as work before a capture should."""
        return _SideStream(self.stream)

    def __call__(self, fn: Callable[[], torch.Tensor], generator: torch.Generator) -> Callable[[], torch.Tensor]:
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(generator)
        torch.cuda.synchronize(self.device)
        try:
            with torch.cuda.graph(graph, stream=self.stream):
                outputs = fn()
        except Exception:
            self._end_capture(generator)
            raise

        def replay() -> torch.Tensor:
            graph.replay()
            return outputs

        replay.graph = graph  # kept alive with the function
        return replay

    def _end_capture(self, generator: torch.Generator) -> None:
        """After a failed capture the generators it registered can be left expecting a graph
        (each later draw then fails); one capture that succeeds sets them back."""
        try:
            graph = torch.cuda.CUDAGraph()
            graph.register_generator_state(generator)
            with torch.cuda.graph(graph, stream=self.stream):
                torch.zeros(1, device=generator.device)
        except Exception:
            pass  # the first failure is the one worth reporting


class _SideStream:
    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        self.stream.wait_stream(torch.cuda.current_stream())
        self.context = torch.cuda.stream(self.stream)
        self.context.__enter__()

    def __exit__(self, *exc):
        self.context.__exit__(*exc)
        torch.cuda.current_stream().wait_stream(self.stream)


class StepGraph:
    """Runs a training step through a captured graph once it has been warmed up and checked.

    ``body(reals, ema_weight)`` is the step's device work; ``state()`` lists every tensor the
    step changes (weights, buffers, optimiser state, EMA); ``reseed()`` sets the step's noise seed
    on ``generator``. The caller reseeds before each ``step``. ``capture`` records and replays the
    step (a ``CudaCapture`` on the generator's device unless one is given).
    """

    def __init__(
        self,
        body: Body,
        state: Callable[[], list[torch.Tensor]],
        generator: torch.Generator,
        reseed: Callable[[], None],
        capture: Capture | None = None,
        warmup: int = WARMUP_STEPS,
    ):
        self.body, self.state, self.generator, self.reseed = body, state, generator, reseed
        self.capture = capture if capture is not None else CudaCapture(generator.device)
        self.warmup = warmup
        self.eager_steps = 0
        self.replay: Callable[[], torch.Tensor] | None = None
        self.dropped: str | None = None  # why the graph is not used, once it is not
        self._reals: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._weight: torch.Tensor | None = None

    @property
    def active(self) -> bool:
        return self.replay is not None

    @property
    def steps_before_replay(self) -> int:
        """Steps after which every further step is a replay (warm-up and the checked step)."""
        return self.warmup + 1

    def step(self, reals: Reals, ema_weight: float) -> torch.Tensor:
        """One training step; returns its four statistics on the device."""
        if self.replay is not None:
            self._feed(reals, ema_weight)
            return self.replay()
        if self.dropped is not None or self.eager_steps < self.warmup:
            self.eager_steps += 1
            return self.body(reals, ema_weight)
        return self._capture_and_check(reals, ema_weight)

    def _capture_and_check(self, reals: Reals, ema_weight: float) -> torch.Tensor:
        tensors = self.state()
        before = [t.detach().clone() for t in tensors]
        with self.capture.warm():
            expected_values = self.body(reals, ema_weight).clone()
        expected = [t.detach().clone() for t in tensors]
        _put(tensors, before)
        # Captured with inputs, EMA weight and noise seed that are not the step's: the replay
        # must read the real ones.
        self._reals = [(torch.zeros_like(images), torch.zeros_like(labels)) for images, labels in reals]
        self._weight = torch.full((), 0.5, device=reals[0][0].device)
        self.generator.manual_seed(CAPTURE_SEED)
        try:
            replay = self.capture(lambda: self.body(self._reals, self._weight), self.generator)
            self._feed(reals, ema_weight)
            self.reseed()
            values = replay()
        except Exception as error:  # any failure to capture or replay leaves the eager step
            cause = error.__context__ or error  # a failed capture's own error hides what broke it
            why = f"it could not be captured here ({first_line(cause)})"
            return self._drop(why, tensors, expected, expected_values)
        differs = _differences(before, expected, tensors)
        if not torch.allclose(values, expected_values, rtol=1e-3, atol=1e-5, equal_nan=True):
            differs.append("the step's losses")
        if differs:
            why = f"its step differs from the eager one in {differs[0]}"
            return self._drop(why, tensors, expected, expected_values)
        self.replay = replay
        return values

    def _feed(self, reals: Reals, ema_weight: float) -> None:
        """The step's batches and EMA weight into the buffers the graph reads."""
        for (images, labels), (static_images, static_labels) in zip(reals, self._reals):
            static_images.copy_(images)
            static_labels.copy_(labels)
        self._weight.fill_(ema_weight)

    def _drop(self, why: str, tensors, expected, expected_values) -> torch.Tensor:
        """Go on without the graph, from the eager step's result."""
        _put(tensors, expected)
        self.dropped, self.replay, self._reals = why, None, []
        tqdm.write(f"Warning: the training step runs without a CUDA graph: {why}.", file=sys.stderr)
        return expected_values


def _put(tensors: list[torch.Tensor], values: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for tensor, value in zip(tensors, values):
            tensor.copy_(value)


def _differences(before, expected, actual) -> list[str]:
    """The tensors (by position) whose change in the graph's step is not the eager step's."""
    out = []
    for i, (b, e, a) in enumerate(zip(before, expected, actual)):
        if not e.is_floating_point():
            if not torch.equal(e, a):
                out.append(f"state tensor {i}")
            continue
        change = (e.double() - b.double()).norm()
        allowed = RELATIVE_TOLERANCE * change + SIZE_TOLERANCE * e.double().norm() + 1e-30
        if (a.double() - e.double()).norm() > allowed:
            out.append(f"state tensor {i} ({tuple(e.shape)})")
    return out
