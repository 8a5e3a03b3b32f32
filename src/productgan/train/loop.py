"""The training loop: alternate discriminator and generator updates, log, sample, checkpoint.

One ``Trainer`` owns the run's state (networks, optimizers, EMA, RNG, data position); its
``state_dict()`` is the checkpoint, and loading it continues the run bit for bit on the CPU.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from productgan.config import AUGMENT_BELOW, RunConfig, resolve_optim, to_dict
from productgan.data import PackedDataset
from productgan.data.augment import diff_augment, parse_policy
from productgan.errors import ProductganError, UsageError, first_line
from productgan.files import remove_stale_temporaries, write_text_atomic
from productgan.images import save_grid
from productgan.losses import build_loss, gradient_penalty, r1_penalty
from productgan.models import Discriminator, Generator, init_weights
from productgan.sampling import (
    balanced_labels,
    export_generator,
    noise,
    pixel_range,
    resolve_device,
    to_native,
    to_uint8,
)
from productgan.train import distributed
from productgan.train.checkpoint import load_checkpoint, save_checkpoint
from productgan.train.distributed import SINGLE, Context
from productgan.train.ema import EMA

DEFAULT_STEPS = 3000
CONFIG_FILE, METRICS_FILE, REALS_FILE = "config.yaml", "metrics.jsonl", "reals.png"
VALIDATION_STREAM = 0x76616C  # the second word of the validation noise's seed
LAST_CHECKPOINT = Path("checkpoints") / "last.pt"
BEST_CHECKPOINT = Path("checkpoints") / "best.pt"
VALIDATION_METRIC = "fid_productgan"


class TrainingStopped(ProductganError):
    """Training ended early for a reason the user must see (a non-finite loss)."""


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX-512 BF16 or AMX: elsewhere bfloat16 is emulated and far slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or None for plain float32.

    'auto': bfloat16 on GPUs that have it (Ampere and newer), float16 with a gradient scaler on
    older GPUs, bfloat16 on CPUs with native support, float32 on other CPUs, where bfloat16 is
    emulated and many times slower (measured: benchmarks/throughput.py).
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise UsageError("--train.precision fp16 is for CUDA GPUs; on a CPU use bf16 or fp32.")
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None


def _ddp(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel without buffer syncing in forward: D runs on real and fake
    batches before one backward, and re-broadcasting BatchNorm buffers between those calls
    would break autograd. Each rank keeps its own BatchNorm running statistics."""
    ddp = torch.nn.parallel.DistributedDataParallel
    ids = [device.index] if device.type == "cuda" else None
    if "forward_sync_buffers" in inspect.signature(ddp).parameters:  # torch >= 2.13 spelling
        return ddp(module, device_ids=ids, forward_sync_buffers=False)
    return ddp(module, device_ids=ids, broadcast_buffers=False)


def target_steps(config: RunConfig) -> int | None:
    """The step at which the step or image budget ends (None when only minutes bound the run)."""
    if config.steps is None and config.images is None and config.minutes is None:
        return DEFAULT_STEPS
    candidates = []
    if config.steps is not None:
        candidates.append(config.steps)
    if config.images is not None:
        per_step = config.batch_size * config.optim.d_steps_per_g_step
        candidates.append(math.ceil(config.images / per_step))
    return min(candidates) if candidates else None


class BatchSource:
    """Real batches gathered by index from the in-memory uint8 array.

    Each epoch's order is a permutation seeded by (seed, epoch), so the position in the data is
    fully described by the number of global batches drawn: that counter is all a checkpoint needs,
    whatever the number of processes. Under torchrun each rank takes its own slice of every global
    batch. The last incomplete batch of an epoch is dropped.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int, context: Context = SINGLE
    ):
        if len(images) < batch_size:
            raise ProductganError(
                f"The training split has {len(images)} images, fewer than one batch of {batch_size}; "
                f"lower --batch-size."
            )
        self.images, self.labels, self.batch_size, self.seed = images, labels, batch_size, seed
        self.local_batch = distributed.local_batch_size(batch_size, context)
        self.offset = context.rank * self.local_batch
        self.batches_per_epoch = len(images) // batch_size
        self.batches_drawn = 0
        self._epoch, self._order = -1, None

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (uint8 images, int64 labels) of this rank's slice of the global batch."""
        epoch, position = divmod(self.batches_drawn, self.batches_per_epoch)
        if epoch != self._epoch:
            rng = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = torch.randperm(len(self.images), generator=rng).to(self.images.device)
            self._epoch = epoch
        start = position * self.batch_size + self.offset
        index = self._order[start : start + self.local_batch]
        self.batches_drawn += 1
        return self.images.index_select(0, index), self.labels.index_select(0, index.to(self.labels.device))


class MappedImages:
    """Training images left in a memory-mapped array and read batch by batch, for datasets
    larger than memory; it stands in for the in-memory uint8 tensor in ``BatchSource``."""

    device = torch.device("cpu")  # where BatchSource keeps its index order

    def __init__(self, array: np.ndarray, rows: np.ndarray, target: torch.device):
        self.array, self.rows, self.target = array, rows, target

    def __len__(self) -> int:
        return len(self.rows)

    def index_select(self, dim: int, index: torch.Tensor) -> torch.Tensor:
        picked = self.rows[index.numpy()]
        order = np.argsort(picked, kind="stable")  # read the file front to back
        batch = np.empty((len(picked), *self.array.shape[1:]), np.uint8)
        batch[order] = self.array[picked[order]]
        return torch.from_numpy(batch).to(self.target)


@dataclass
class StepStats:
    """Running sums kept on the device; read (one host sync) once per log interval."""

    sums: torch.Tensor
    count: int = 0
    names = ("loss_d", "loss_g", "d_real", "d_fake")

    @classmethod
    def zeros(cls, device: torch.device) -> StepStats:
        return cls(torch.zeros(len(cls.names), device=device))

    def add(self, *values: torch.Tensor) -> None:
        self.sums += torch.stack([v.detach().float() for v in values])
        self.count += 1

    def means(self, context: Context = SINGLE) -> dict[str, float]:
        values = distributed.all_reduce_mean(self.sums / max(self.count, 1), context).tolist()
        return dict(zip(self.names, values))


class Trainer:
    def __init__(
        self,
        config: RunConfig,
        run_dir: str | Path,
        dataset: PackedDataset,
        resume: bool = False,
        context: Context = SINGLE,
    ):
        self.config, self.run_dir, self.dataset, self.context = resolve_optim(config), Path(run_dir), dataset, context
        if context.enabled:
            self.device = distributed.init(context, config.train.device)
        else:
            self.device = resolve_device(config.train.device, "--train.device")
        self.autocast_dtype = resolve_precision(config.train.precision, self.device)
        # float16 needs loss scaling to keep small gradients; a disabled scaler is a pass-through.
        fp16 = self.autocast_dtype == torch.float16
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        if config.train.threads > 0:
            torch.set_num_threads(config.train.threads)
        self.memory_format = torch.channels_last if config.train.channels_last else torch.contiguous_format
        self._warned_balance = False
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = config.train.cudnn_benchmark

        torch.manual_seed(config.seed)
        channels, size, classes = dataset.channels, dataset.image_size, dataset.num_classes
        self.G = Generator(config.model, size, channels, classes)
        self.D = Discriminator(config.model, size, channels, classes)
        self.conditional = self.G.num_classes > 0
        init_weights(self.G)
        init_weights(self.D)
        if context.enabled and config.train.sync_batchnorm and self.device.type != "cuda":
            raise UsageError(
                "--train.sync-batchnorm shares BatchNorm statistics between GPUs (PyTorch's SyncBatchNorm "
                "runs on CUDA only); drop it for processes on CPUs."
            )
        if context.enabled and config.train.sync_batchnorm:
            self.G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
            self.D = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.D)
        self.G.to(self.device, memory_format=self.memory_format)
        self.D.to(self.device, memory_format=self.memory_format)
        # The EMA copy is taken before compiling, so it owns its own plain forward.
        self.ema = EMA(self.G, config.train.ema_half_life_images, config.train.ema_warmup) if config.train.ema else None
        if config.train.compile:
            # In place, so the DDP wrappers, the penalties and the G phase all use compiled code.
            self.G.compile()
            self.D.compile()
        # The networks as called in the step: DDP wrappers under torchrun, the modules otherwise.
        self.G_step, self.D_step = self.G, self.D
        if context.enabled:
            self.G_step, self.D_step = _ddp(self.G, self.device), _ddp(self.D, self.device)
        self.opt_g = self._optimizer(self.G, config.optim.lr_g)
        self.opt_d = self._optimizer(self.D, config.optim.lr_d)
        self.loss = build_loss(config.loss)
        train_count = dataset.split_sizes()["train"]
        if config.train.augment is None:  # decided once, and recorded in config.yaml
            config.train.augment = train_count < AUGMENT_BELOW
        augment = config.train.augment
        try:
            self.augment_policy = parse_policy(config.train.augment_policy) if augment else ()
        except ValueError as error:
            raise UsageError(f"--train.augment-policy: {error}.")

        if isinstance(dataset.images, np.memmap):
            # Larger than memory: each batch is read from the mapped file.
            rows = dataset.indices("train")
            train_images = MappedImages(dataset.images, rows, self.device)
            train_labels = torch.from_numpy(dataset.labels[rows]).to(self.device)
        else:
            images, labels = (torch.from_numpy(np.ascontiguousarray(a)) for a in dataset.subset("train"))
            train_images, train_labels = images.to(self.device), labels.to(self.device)
        self.batches = BatchSource(train_images, train_labels, config.batch_size, config.seed, context)
        self.noise_rng = torch.Generator(device=self.device)
        self.grid_columns, self.fixed_labels = None, None
        grid = config.train.grid_size
        if self.conditional:
            # One row per class: the same noise column by column, so a row shows one category's variety.
            self.grid_columns = max(1, grid // classes)
            grid = self.grid_columns * classes
            self.fixed_labels = torch.arange(classes).repeat_interleave(self.grid_columns).to(self.device)
        self.fixed_noise = noise(grid, config.model.nz, config.seed + 2).to(self.device)

        self.step = 0
        self.images_seen = 0
        self.elapsed_s = 0.0
        self.best_val: float | None = None  # best validation fid_productgan so far
        self.evals_without_gain = 0
        self._evaluator = None
        self._tensorboard = None
        if resume:
            self.load_state_dict(load_checkpoint(self.run_dir / LAST_CHECKPOINT))

    def _optimizer(self, module: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
        o = self.config.optim
        if o.name == "adam":
            return torch.optim.Adam(module.parameters(), lr=lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
        return torch.optim.SGD(module.parameters(), lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)

    # --- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.ema.model.state_dict() if self.ema else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "step": self.step,
            "images_seen": self.images_seen,
            "batches_drawn": self.batches.batches_drawn,
            "elapsed_s": self.elapsed_s,
            "best_val": self.best_val,
            "evals_without_gain": self.evals_without_gain,
            "config": to_dict(self.config),
            "export_info": self.export_info(),
            "image_size": self.G.image_size,
            "channels": self.G.channels,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            if self.ema:
                self.ema.model.load_state_dict(state["G_ema"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.scaler_g.load_state_dict(state["scaler_g"])
            self.scaler_d.load_state_dict(state["scaler_d"])
        except (KeyError, RuntimeError, ValueError) as error:
            raise ProductganError(
                f"The checkpoint in {self.run_dir} does not match this run's model ({first_line(error)}); "
                f"resume with the config.yaml it was written with."
            )
        self.step = int(state["step"])
        self.images_seen = int(state["images_seen"])
        self.batches.batches_drawn = int(state["batches_drawn"])
        self.elapsed_s = float(state["elapsed_s"])
        self.best_val = state.get("best_val")
        self.evals_without_gain = int(state.get("evals_without_gain", 0))

    # --- one training step -----------------------------------------------------------------

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Real images scaled to the generator's range, and their labels (None unless conditional)."""
        low, high = pixel_range(self.config.model)
        images, labels = self.batches.next()
        batch = images.float().mul_((high - low) / 255.0).add_(low)
        if self.config.train.hflip:
            flip = torch.rand(len(batch), device=batch.device, generator=self.noise_rng) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
        return batch.contiguous(memory_format=self.memory_format), labels if self.conditional else None

    def _z(self) -> torch.Tensor:
        return torch.randn(self.batches.local_batch, self.config.model.nz, device=self.device, generator=self.noise_rng)

    def _seed_noise(self) -> None:
        """Noise is a function of (seed, step, rank): nothing to save, and exact after a resume
        with any number of processes."""
        words = np.random.SeedSequence([self.config.seed, self.step, self.context.rank]).generate_state(2)
        self.noise_rng.manual_seed(int(words[0]) << 32 | int(words[1]) >> 1)

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        """What D sees: the images through DiffAugment when it is on (the same for real and fake)."""
        if not self.augment_policy:
            return images
        return diff_augment(images, self.augment_policy, self.noise_rng, pixel_range(self.config.model))

    def _penalties(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | float:
        """Gradient penalties, in float32 on the bare D (DDP does not support double backward;
        the gradients still reach DDP's all-reduce through the shared parameters)."""
        cfg = self.config.loss
        total: torch.Tensor | float = 0.0
        critic = self.D if labels is None else (lambda x: self.D(x, labels))
        if cfg.name == "wgan-gp":
            total = total + cfg.gp_weight * gradient_penalty(critic, real, fake, self.noise_rng, self.D.pack)
        if cfg.r1_gamma > 0 and self.step % cfg.r1_every == 0:
            total = total + 0.5 * cfg.r1_gamma * cfg.r1_every * r1_penalty(critic, real, self.D.pack)
        return total

    def train_step(self, stats: StepStats) -> None:
        """``d_steps_per_g_step`` discriminator updates, then ``g_steps_per_d_step`` generator
        updates; the last fake batch of the D phase is reused by the first G update."""
        o = self.config.optim
        self._seed_noise()
        fake = None
        for d_step in range(o.d_steps_per_g_step):
            # Fakes take the real batch's classes, so both sides share the data's class balance.
            real, labels = self._real_batch()
            reuse = d_step == o.d_steps_per_g_step - 1
            with self._autocast(), torch.set_grad_enabled(reuse):
                fake = self.G_step(self._z(), labels)
            real, fake_seen = self._augment(real), self._augment(fake.detach())
            with self._autocast():
                real_logits = self.D_step(real, labels)
                fake_logits = self.D_step(fake_seen, labels)
            loss_d = self.loss.discriminator(real_logits, fake_logits)
            loss_d = loss_d + self._penalties(real, fake_seen, labels)
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler_d.scale(loss_d).backward()
            self.scaler_d.step(self.opt_d)
            self.scaler_d.update()
            self.images_seen += self.config.batch_size

        # G's update needs gradients through D, not for D; the bare module keeps DDP from
        # waiting for D gradients that never come.
        self.D.requires_grad_(False)
        for g_step in range(o.g_steps_per_d_step):
            if g_step > 0:
                with self._autocast():
                    fake = self.G_step(self._z(), labels)
            with self._autocast():
                gen_logits = self.D(self._augment(fake), labels)
            loss_g = self.loss.generator(gen_logits)
            self.opt_g.zero_grad(set_to_none=True)
            self.scaler_g.scale(loss_g).backward()
            self.scaler_g.step(self.opt_g)
            self.scaler_g.update()
        self.D.requires_grad_(True)

        if self.ema:
            # The half-life counts images seen: a step of several D updates sees several batches.
            self.ema.update(self.G, self.config.batch_size * o.d_steps_per_g_step, self.images_seen)
        self.step += 1
        stats.add(loss_d, loss_g, torch.sigmoid(real_logits.float()).mean(), torch.sigmoid(fake_logits.float()).mean())

    # --- outputs ---------------------------------------------------------------------------

    @property
    def sampling_generator(self) -> Generator:
        return self.ema.model if self.ema else self.G

    def export_info(self) -> dict[str, Any]:
        meta = self.dataset.meta
        keys = ("native_size", "fit", "padded_size", "pad", "background")
        return {
            "class_names": list(self.dataset.class_names),
            **{k: meta[k] for k in keys if k in meta},
            "dataset": meta.get("source"),
            "step": self.step,
            "images_seen": self.images_seen,
            "ema": self.ema is not None,
            "seed": self.config.seed,
        }

    @torch.no_grad()
    def save_samples(self) -> Path:
        generator = self.sampling_generator
        was_training = generator.training
        generator.eval()  # eval BatchNorm: running statistics, and no update of them
        images = generator(self.fixed_noise, self.fixed_labels).float()
        generator.train(was_training)
        images = to_uint8(to_native(images, self.dataset.meta), pixel_range(self.config.model)).cpu().numpy()
        return save_grid(images, self.run_dir / "samples" / f"step-{self.step:06d}.png", nrow=self.grid_columns)

    def save_reals(self) -> Path:
        count = self.config.train.grid_size
        rows = self.dataset.indices("train")
        picks = np.random.default_rng(self.config.seed).choice(len(rows), size=min(count, len(rows)), replace=False)
        images = to_native(torch.from_numpy(self.dataset.images[rows[np.sort(picks)]]).float(), self.dataset.meta)
        return save_grid(images.round().to(torch.uint8).numpy(), self.run_dir / REALS_FILE)

    def check_balance(self, values: dict[str, float]) -> None:
        """Warn once when D has won outright (it then passes G almost no gradient)."""
        message = discriminator_won(values, self.config.loss.name, self.config.train.augment)
        if message and not self._warned_balance:
            self._warned_balance = True
            tqdm.write(f"Warning at step {self.step}: {message}", file=sys.stderr)

    def check_finite(self, values: dict[str, float]) -> None:
        bad = [k for k in ("loss_d", "loss_g") if not math.isfinite(values[k])]
        if bad:
            raise TrainingStopped(
                f"Training stopped at step {self.step}: {' and '.join(bad)} became non-finite; the last good "
                f"checkpoint is kept in {self.run_dir / LAST_CHECKPOINT} (lower the learning rates or use "
                f"--train.precision fp32, then --resume)."
            )

    def save_checkpoint(self) -> Path:
        return save_checkpoint(self.state_dict(), self.run_dir / LAST_CHECKPOINT)

    def export(self) -> Path:
        """Export the generator: the best validated one when validation ran, else the latest."""
        if self.best_val is not None and (self.run_dir / BEST_CHECKPOINT).is_file():
            return export_checkpoint(load_checkpoint(self.run_dir / BEST_CHECKPOINT), self.run_dir / "generator")
        return export_generator(self.sampling_generator, self.run_dir / "generator", self.export_info())

    # --- validation ------------------------------------------------------------------------

    def validate(self) -> dict[str, float] | None:
        """Score the sampling generator on the validation split and keep best.pt.

        Under torchrun each rank generates and featurises its share of the images; rank 0
        gathers the features, computes the metrics and returns them (other ranks get None).
        """
        from productgan.evaluate import Evaluator
        from productgan.metrics import features_and_probabilities
        from productgan.sampling import Sampler

        t, ctx = self.config.train, self.context
        if self._evaluator is None:
            # Rank 0 trains and caches the evaluator if needed; the others then load it.
            if ctx.is_main:
                self._evaluator = Evaluator(self.config.data, self.dataset, progress=False, device=str(self.device))
            distributed.barrier(ctx)
            if not ctx.is_main:
                self._evaluator = Evaluator(self.config.data, self.dataset, progress=False, device=str(self.device))
        generator = self.sampling_generator
        was_training = generator.training
        generator.eval()
        try:
            sampler = Sampler(generator, {**self.export_info(), "pixel_range": pixel_range(self.config.model)})
            # The same noise as a single process would draw, split into one share per rank.
            # A stream of its own: the vectors that pick best.pt are not among those `evaluate` scores
            # the test split with (there, seed S is the plain int S).
            vectors = noise(t.eval_n, self.config.model.nz, (self.config.seed, VALIDATION_STREAM))
            share = vectors.tensor_split(ctx.world_size)[ctx.rank]
            start = sum(len(s) for s in torch.arange(t.eval_n).tensor_split(ctx.world_size)[: ctx.rank])
            labels = balanced_labels(len(share), generator.num_classes, start) if self.conditional else None
            feats, probs = features_and_probabilities(
                self._evaluator.net, sampler.from_noise(share, labels=labels).numpy()
            )
        finally:
            generator.train(was_training)
        gathered = distributed.gather_to_main([feats, probs], ctx)
        if gathered is None:
            return None
        results = self._evaluator.score_features(
            *gathered, "val", seed=self.config.seed, metrics=["fid_productgan", "precision_recall", "class_histogram"]
        )
        score = float(results[VALIDATION_METRIC])
        improved = self.best_val is None or score < self.best_val
        if improved:
            self.best_val, self.evals_without_gain = score, 0
            save_checkpoint(self.state_dict(), self.run_dir / BEST_CHECKPOINT)
        else:
            self.evals_without_gain += 1
        scores = {
            f"val_{k}": float(results[k])
            for k in (VALIDATION_METRIC, "precision", "recall", "rarest_class_share")
            if results.get(k) is not None
        }
        return {**scores, "val_n": results["protocol"]["num_fake"]}

    # --- the loop --------------------------------------------------------------------------

    def fit(self, progress: bool = True) -> dict[str, Any]:
        """Train until the budget is spent or a stop signal arrives; returns a short summary.

        Under torchrun every rank runs this loop; rank 0 alone writes files, and the decisions to
        stop (budget, signal, non-finite loss) are taken together so that no rank waits forever.
        """
        cfg, t, ctx = self.config, self.config.train, self.context
        main = ctx.is_main
        end_step = target_steps(cfg)
        budget_s = cfg.minutes * 60.0 if cfg.minutes is not None else None
        spent = (end_step is not None and self.step >= end_step) or (budget_s and self.elapsed_s >= budget_s)
        # A torchrun restart after the last checkpoint (a rank lost in the final export) finishes
        # the run: the loop is skipped, the checkpoint and export are written again.
        restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
        if self.step and spent and not restarted:
            # Checked before config.yaml is rewritten, so the run keeps the budget it was trained with.
            raise UsageError(
                f"The run in {self.run_dir} is at step {self.step} ({self.images_seen:,} images, "
                f"{self.elapsed_s / 60:.1f} min) already, past the budget given; give a larger total "
                f"(--steps, --images or --minutes), or `productgan export {self.run_dir}` to export "
                f"its generator again."
            )
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.run_dir, recursive=True)  # left by a crash mid-write
            write_text_atomic(self.run_dir / CONFIG_FILE, yaml.safe_dump(to_dict(cfg), sort_keys=False))
            if not (self.run_dir / REALS_FILE).exists():
                self.save_reals()
            self._trim_metrics()
            self._tensorboard = open_tensorboard(self.run_dir, self.step) if t.tensorboard else None

        stop = _StopSignal()
        stats = StepStats.zeros(self.device)
        last_log_time, last_log_images = time.perf_counter(), self.images_seen
        session_start = time.perf_counter()
        elapsed_at_start = self.elapsed_s
        # Share of the minutes budget used (the same on every rank after a resume), refreshed
        # where the ranks agree.
        time_spent = elapsed_at_start / budget_s if budget_s else 0.0
        bar = tqdm(
            total=end_step,
            initial=self.step,
            unit="step",
            disable=not (progress and main),
            dynamic_ncols=True,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
        )
        reason = "budget"
        self.G.train()
        self.D.train()
        with stop:
            while end_step is None or self.step < end_step:
                self.elapsed_s = elapsed_at_start + time.perf_counter() - session_start
                # A collective per step would stall GPUs, so ranks agree on stops once per log interval.
                if not ctx.enabled or self.step % t.log_every == 0:
                    time_up = budget_s is not None and self.elapsed_s >= budget_s
                    # One collective for all three; the signal's number travels to the ranks that got none.
                    time_up, early, signum = distributed.max_over_ranks(
                        [float(time_up), float(stop.early), float(stop.received)], self.device, ctx
                    )
                    if time_up or early or signum:
                        reason = "budget" if time_up else "early stop" if early else "signal"
                        stop.received = int(signum)
                        break
                    if cfg.optim.lr_decay != "none" and budget_s is not None:
                        # Rank 0's clock, so that every rank steps with the same learning rate.
                        time_spent = distributed.broadcast_float(self.elapsed_s / budget_s, self.device, ctx)
                if cfg.optim.lr_decay != "none":
                    self._decay_lr(max(time_spent, self.step / end_step if end_step else 0.0))
                self.train_step(stats)
                bar.update(1)
                self.elapsed_s = elapsed_at_start + time.perf_counter() - session_start
                at_end = end_step is not None and self.step >= end_step
                if self.step % t.log_every == 0 or at_end:
                    now = time.perf_counter()
                    values = stats.means(ctx)
                    self.check_finite(values)
                    values["images_per_s"] = (self.images_seen - last_log_images) / max(now - last_log_time, 1e-9)
                    if main:
                        self.check_balance(values)
                        self._log(values)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()}, refresh=False)
                    stats = StepStats.zeros(self.device)
                    last_log_time, last_log_images = now, self.images_seen
                if self.step % t.sample_every == 0 and main:
                    self.save_samples()
                if t.eval_every and self.step % t.eval_every == 0:
                    scores = self.validate()
                    if main:
                        self._log({**scores, "best_val": self.best_val})
                    if t.early_stop_patience and self.evals_without_gain >= t.early_stop_patience:
                        stop.early = True  # rank 0's decision, shared at the next agreement
                if self.step % t.checkpoint_every == 0:
                    self._checked_checkpoint(stats)
        bar.close()
        self._checked_checkpoint(stats)
        samples = self.save_samples() if main else None
        export = self.export() if main else None
        if self._tensorboard is not None:
            self._tensorboard.close()
        distributed.barrier(ctx)
        return {
            "step": self.step,
            "images_seen": self.images_seen,
            "elapsed_s": self.elapsed_s,
            "stopped_by": reason,
            "signal": stop.received or None,
            "samples": samples,
            "export": export,
            "run_dir": self.run_dir,
            "is_main": main,
        }

    def _decay_lr(self, spent: float) -> None:
        """Both learning rates at (1 - spent) of their configured values, ``spent`` being the
        share of the budget used (linear decay; it needs no state of its own to resume)."""
        scale = max(0.0, 1.0 - spent)
        for opt, lr in ((self.opt_g, self.config.optim.lr_g), (self.opt_d, self.config.optim.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * scale

    def _checked_checkpoint(self, stats: StepStats) -> None:
        """Save last.pt (rank 0), but never weights that may already hold a NaN."""
        if stats.count:
            self.check_finite(stats.means(self.context))
        if self.context.is_main:
            self.save_checkpoint()

    def _log(self, values: dict[str, float]) -> None:
        record = {
            "step": self.step,
            "images_seen": self.images_seen,
            "epoch": self.batches.batches_drawn / self.batches.batches_per_epoch,
            "elapsed_s": round(self.elapsed_s, 3),
            **{k: round(v, 6) for k, v in values.items()},
        }
        with open(self.run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tensorboard is not None:
            for key, value in values.items():
                if value is not None:
                    self._tensorboard.add_scalar(key, value, self.step)
            self._tensorboard.flush()

    def _trim_metrics(self) -> None:
        """On resume, drop log lines written after the checkpoint: they will be written again."""
        path = self.run_dir / METRICS_FILE
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= self.step:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):  # a line cut short by a crash
                continue
        write_text_atomic(path, "".join(line + "\n" for line in kept))


def discriminator_won(values: dict[str, float], loss: str, augment: bool | None) -> str | None:
    """A sentence when D's mean outputs over a log interval say it tells every real image from
    every generated one (sigmoid of its logits above 0.99 on real, below 0.01 on generated), else
    None. Not judged for wgan-gp, whose critic values have no fixed scale."""
    if loss == "wgan-gp" or values["d_real"] <= 0.99 or values["d_fake"] >= 0.01:
        return None
    advice = (
        "turn on DiffAugment (--augment) and start again"
        if not augment
        else "lower the discriminator's learning rate (--optim.lr-d) or add an R1 penalty (--loss.r1-gamma)"
    )
    return (
        f"the discriminator separates real from generated images almost perfectly (D(x) {values['d_real']:.4f}, "
        f"D(G(z)) {values['d_fake']:.4f}), so the generator learns little from it; if this persists, {advice}."
    )


def open_tensorboard(run_dir: Path, step: int):
    """A TensorBoard writer for RUN_DIR/tensorboard that drops events after ``step`` (a resume)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError(
            "--tensorboard needs the tensorboard package; install it with "
            "`pip install 'productgan[tensorboard]'`, or train without the flag."
        )
    return SummaryWriter(str(run_dir / "tensorboard"), purge_step=step if step else None)


class _StopSignal:
    """Turns SIGINT / SIGTERM into a flag checked between steps, so the step in flight finishes
    and the checkpoint is written before the process exits."""

    def __init__(self):
        self.received = 0  # the signal's number once one arrives
        self.early = False  # set by the loop: validation stopped improving
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        if self.received:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: signals stay with the caller
            self._previous.clear()
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def export_checkpoint(state: dict[str, Any], out_dir: Path) -> Path:
    """Export the generator held in a checkpoint (the EMA one when kept)."""
    from productgan.config import ModelConfig, from_dict

    model = from_dict(ModelConfig, state["config"]["model"])
    classes = len(state["export_info"]["class_names"]) if model.conditional else 0
    generator = Generator(model, state["image_size"], state["channels"], classes)
    generator.load_state_dict(state["G_ema"] if state.get("G_ema") is not None else state["G"])
    return export_generator(generator, out_dir, state["export_info"])


def load_run_config(run_dir: str | Path) -> RunConfig:
    from productgan.config import from_dict

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ProductganError(
            f"{run_dir} is not a productgan run directory (no {CONFIG_FILE}); pass the folder a training run wrote."
        )
    try:
        values = yaml.safe_load(path.read_text())
        if not isinstance(values, dict):
            raise ValueError(f"it holds {type(values).__name__}, not the run's settings")
        return from_dict(RunConfig, values)
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        reason = first_line(error).strip("'\"")  # a KeyError's message comes quoted
        raise ProductganError(f"{path} is damaged ({reason}); restore it from a copy of the run, or start a new run.")
