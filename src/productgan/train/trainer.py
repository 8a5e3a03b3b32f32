"""The ``Trainer``: a run's state and its step (alternate discriminator and generator updates, the
weight average), and the saving of checkpoints, sample grids, validation scores and the export;
the loop that calls them is train/loop.py.

One ``Trainer`` owns the run's state (networks, optimizers, EMA, data position, counters); its
``state_dict()`` is the checkpoint, and loading it continues the run bit for bit on the CPU. It
receives a config that ``config.resolve`` has checked and completed, and only trains. How a run
gets here: ``train/__init__.py``.

The life of one training step and what keeps a resumed run bit-exact: the docstring of
``train/__init__.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from productgan import run
from productgan.checkpoint import load_checkpoint, save_checkpoint
from productgan.config import RunConfig, parse_policy, to_dict
from productgan.data import PackedDataset
from productgan.data.augment import diff_augment
from productgan.errors import ProductganError, first_line
from productgan.generator.export import pixel_range
from productgan.generator.statistics import measure_statistics
from productgan.losses import build_loss, mode_seeking, penalties
from productgan.models import Generator
from productgan.train.augmentation import AugmentStrength
from productgan.train.batches import generator_classes, to_training_range, training_batches
from productgan.train.device import setup_device
from productgan.train.distributed import SINGLE, Context
from productgan.train.graphs import StepGraph, use_graph
from productgan.train.logs import StepStats, check_finite, discriminator_won
from productgan.train.loop import fit
from productgan.train.networks import build_networks, settle_optimizer
from productgan.train.precision import Precision
from productgan.train.samples import SampleGrid
from productgan.train.validation import Validator


class Trainer:
    def __init__(
        self,
        config: RunConfig,
        run_dir: str | Path,
        dataset: PackedDataset,
        resume: bool = False,
        context: Context = SINGLE,
        device: torch.device | None = None,
    ):
        self.config, self.run_dir, self.dataset, self.context = config, Path(run_dir), dataset, context
        t = config.train
        self.device = device if device is not None else setup_device(t, context)
        self.precision = Precision(t.precision, self.device)
        graphed = use_graph(config, self.device, self.precision.dtype, context)
        self.nets = build_networks(config, dataset, self.device, context, graphed)
        self.G, self.D, self.ema = self.nets.G, self.nets.D, self.nets.ema
        self.opt_g, self.opt_d = self.nets.opt_g, self.nets.opt_d
        self.memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
        self.conditional = self.G.num_classes > 0
        self.loss = build_loss(config.loss)
        self.augment_policy = parse_policy(t.augment_policy) if t.augment != "off" else ()
        self.pixel_range = pixel_range(config.model)
        self.batches = training_batches(dataset, config.batch_size, config.seed, self.device, context, self.conditional)
        d_steps = config.optim.d_steps_per_g_step
        self.augment = AugmentStrength(
            t.augment,
            t.augment_p,
            t.augment_target,
            images_per_step=config.batch_size * d_steps,
            logits_per_step=d_steps * self.batches.local_batch // config.model.d_pack,
            device=self.device,
            context=context,
        )
        self.noise_rng = torch.Generator(device=self.device)
        self.graph = StepGraph(self._step, self._step_state, self.noise_rng, self._seed_noise) if graphed else None
        if graphed:
            self.augment.use_device_p()  # a graph reads p from the device; it never skips the transforms
        self.grid = SampleGrid(config, dataset, self.device)
        self.validator = Validator(config, dataset, self.device, context)
        self.step, self.images_seen, self.elapsed_s = 0, 0, 0.0
        self._saved_step: int | None = None  # the step last.pt holds
        self._measured_step: int | None = None  # the step the average's statistics were measured at
        self._warned_balance = False
        if resume:
            self.load_state_dict(load_checkpoint(self.run_dir / run.LAST_CHECKPOINT))

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.ema.model.state_dict() if self.ema else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.precision.scaler_g.state_dict(),
            "scaler_d": self.precision.scaler_d.state_dict(),
            "step": self.step,
            "images_seen": self.images_seen,
            "batches_drawn": self.batches.batches_drawn,
            "elapsed_s": self.elapsed_s,
            **self.validator.state_dict(),
            **self.augment.state_dict(),
            "config": self._recorded_config(),
            "export_info": self.export_info(),
            "image_size": self.G.image_size,
            "channels": self.G.channels,
        }

    def _recorded_config(self) -> dict[str, Any]:
        """The config as the checkpoint holds it: the settings, without the record of how ``auto``
        precision was decided (its rates and whether they came from the cache differ between
        identical runs, which would keep their checkpoints from matching byte for byte;
        config.yaml keeps it)."""
        values = to_dict(self.config)
        values["train"]["precision_measured"] = None
        return values

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            if self.ema:
                self.ema.model.load_state_dict(state["G_ema"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            settle_optimizer(self.opt_g, self.graph is not None)
            settle_optimizer(self.opt_d, self.graph is not None)
            self.precision.scaler_g.load_state_dict(state["scaler_g"])
            self.precision.scaler_d.load_state_dict(state["scaler_d"])
        except (KeyError, RuntimeError, ValueError) as error:
            raise ProductganError(
                f"The checkpoint in {self.run_dir} does not match this run's model ({first_line(error)}); "
                f"resume with the config.yaml it was written with."
            )
        self.step = int(state["step"])
        self.images_seen = int(state["images_seen"])
        self.batches.batches_drawn = int(state["batches_drawn"])
        self.elapsed_s = float(state["elapsed_s"])
        self.validator.load_state_dict(state)
        self.augment.load_state_dict(state)
        self._saved_step = self.step

    def _real_batch(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A drawn batch's images in the generator's range, and its labels (None unless conditional)."""
        flip_rng = self.noise_rng if self.config.train.hflip else None
        batch = to_training_range(images, self.pixel_range, flip_rng).contiguous(memory_format=self.memory_format)
        return batch, labels if self.conditional else None

    def _z(self) -> torch.Tensor:
        return torch.randn(self.batches.local_batch, self.config.model.nz, device=self.device, generator=self.noise_rng)

    def _seed_noise(self) -> None:
        """Noise is a function of (seed, step, rank): nothing to save, and exact after a resume
        with any number of processes."""
        words = np.random.SeedSequence([self.config.seed, self.step, self.context.rank]).generate_state(2)
        self.noise_rng.manual_seed(int(words[0]) << 32 | int(words[1]) >> 1)

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        """What D sees: the images through DiffAugment at the run's strength (the same for real
        and fake); the images themselves while that is 0."""
        if not self.augment_policy or self.augment.skips:
            return images
        return diff_augment(images, self.augment_policy, self.noise_rng, self.pixel_range, self.augment.probability())

    def _penalties(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | float:
        """Gradient penalties, in float32 on the bare D (DDP does not support double backward;
        the gradients still reach DDP's all-reduce through the shared parameters)."""
        critic = self.D if labels is None else (lambda x: self.D(x, labels))
        return penalties(critic, real, fake, self.config.loss, self.step, self.noise_rng, self.D.pack)

    def train_step(self, stats: StepStats) -> None:
        """One step: the real batches drawn, the noise seeded, the device work (eager, or replayed
        as a CUDA graph), the counters advanced."""
        d_steps = self.config.optim.d_steps_per_g_step
        reals = [self.batches.next() for _ in range(d_steps)]
        self._seed_noise()
        seen = self.config.batch_size * d_steps
        # The EMA's half-life counts images seen: a step of several D updates sees several batches.
        ema_weight = self.ema.weight(seen, self.images_seen + seen) if self.ema else 0.0
        device_work = self.graph.step if self.graph is not None else self._step
        values = device_work(reals, ema_weight)
        self.images_seen += seen
        self.step += 1
        stats.add_values(values)
        self.augment.after_step(self.step)

    def _step(self, reals: Sequence[tuple[torch.Tensor, torch.Tensor]], ema_weight: float | torch.Tensor):
        """The step's device work from drawn batches: ``d_steps_per_g_step`` discriminator
        updates, then ``g_steps_per_d_step`` generator updates (the last fake batch of the D
        phase is reused by the first G update), then the EMA; returns the step's statistics
        (loss_d, loss_g, D(x), D(G(z))) as one device tensor. Nothing here waits for the device
        or branches on a value it computes, so that a CUDA graph can capture it."""
        o, autocast = self.config.optim, self.precision.autocast
        scaler_d, scaler_g = self.precision.scaler_d, self.precision.scaler_g
        fake = z = made = None
        for d_step, (images, drawn_labels) in enumerate(reals):
            # Fakes take the real batch's classes, so both sides share the data's class balance
            # (and D sees an unlabelled real image's negative label on its fake too: batches.py).
            real, labels = self._real_batch(images, drawn_labels)
            made = None if labels is None else generator_classes(labels)
            reuse = d_step == o.d_steps_per_g_step - 1
            with autocast(), torch.set_grad_enabled(reuse):
                z = self._z()
                fake = self.nets.G_step(z, made)
            real, fake_seen = self._augment(real), self._augment(fake.detach())
            with autocast():
                real_logits = self.nets.D_step(real, labels)
                fake_logits = self.nets.D_step(fake_seen, labels)
            self.augment.observe(real_logits)
            loss_d = self.loss.discriminator(real_logits, fake_logits)
            loss_d = loss_d + self._penalties(real, fake_seen, labels)
            self.opt_d.zero_grad(set_to_none=True)
            scaler_d.scale(loss_d).backward()
            scaler_d.step(self.opt_d)
            scaler_d.update()

        # G's update needs gradients through D, not for D; the bare module keeps DDP from
        # waiting for D gradients that never come.
        self.nets.train_d(False)
        try:
            for g_step in range(o.g_steps_per_d_step):
                if g_step > 0:
                    with autocast():
                        z = self._z()
                        fake = self.nets.G_step(z, made)
                with autocast():
                    gen_logits = self.D(self._augment(fake), labels)
                loss_g = self.loss.generator(gen_logits)
                if self.config.loss.mode_seeking > 0:
                    loss_g = loss_g + self.config.loss.mode_seeking * mode_seeking(fake, z, made)
                self.opt_g.zero_grad(set_to_none=True)
                scaler_g.scale(loss_g).backward()
                scaler_g.step(self.opt_g)
                scaler_g.update()
        finally:  # also when a CUDA graph's capture fails here and the run goes on eagerly
            self.nets.train_d(True)

        if self.ema:
            self.ema.blend(self.G, ema_weight)
        values = (loss_d, loss_g, torch.sigmoid(real_logits.float()).mean(), torch.sigmoid(fake_logits.float()).mean())
        return torch.stack([v.detach().float() for v in values])

    def _step_state(self) -> list[torch.Tensor]:
        """Every tensor a step changes: weights, buffers, optimiser state, the EMA copy, the
        adaptive augmentation's signal."""
        modules = [self.G, self.D] + ([self.ema.model] if self.ema else [])
        tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
        if self.augment.adaptive:
            tensors.append(self.augment.signs)
        for opt in (self.opt_g, self.opt_d):
            tensors += [v for state in opt.state.values() for v in state.values() if torch.is_tensor(v)]
        return tensors

    @property
    def sampling_generator(self) -> Generator:
        """What grids, validation and the export draw with: the weight average, its BatchNorm
        statistics measured on its own samples, or the live generator."""
        if not self.ema:
            return self.G
        if self._measured_step != self.step:  # grid, validation and export at one step measure once
            measure_statistics(self.ema.model, self.config.seed)
            self._measured_step = self.step
        return self.ema.model

    def export_info(self) -> dict[str, Any]:
        return run.export_info(self.dataset, self.config.seed, self.step, self.images_seen, self.ema is not None)

    def save_samples(self) -> Path:
        return self.grid.save(self.sampling_generator, self.run_dir, self.step)

    def check_balance(self, values: dict[str, float]) -> None:
        """Warn once when D has won outright (it then passes G almost no gradient)."""
        message = discriminator_won(values, self.config.loss.name, self.config.train.augment)
        if message and not self._warned_balance:
            self._warned_balance = True
            tqdm.write(f"Warning at step {self.step}: {message}", file=sys.stderr)

    def save_checkpoint(self, stats: StepStats | None = None) -> None:
        """Save last.pt (rank 0) unless it already holds this step, but never weights that may
        already hold a NaN."""
        if stats is not None and stats.count:
            check_finite(stats.means(self.context), self.step, self.run_dir / run.LAST_CHECKPOINT)
        if self.context.is_main and self._saved_step != self.step:
            save_checkpoint(self.state_dict(), self.run_dir / run.LAST_CHECKPOINT)
        self._saved_step = self.step

    def export(self) -> Path:
        return run.export_final(self.run_dir, self.sampling_generator, self.export_info(), self.validator.best)

    def validate(self) -> dict[str, float] | None:
        """Score the sampling generator on the validation split and keep best.pt (rank 0 gets
        the scores, other ranks None)."""
        scored = self.validator.score(self.sampling_generator, self.export_info())
        if scored is None:
            return None
        scores, improved = scored
        if improved:
            save_checkpoint(self.state_dict(), self.run_dir / run.BEST_CHECKPOINT)
        return scores

    def fit(self, progress: bool = True) -> dict[str, Any]:
        """Train until the budget is spent or a stop signal arrives (``train/loop.py``)."""
        return fit(self, progress)
