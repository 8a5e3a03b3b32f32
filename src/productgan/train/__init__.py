"""Training: the ``train`` and ``resume`` commands over the run layer and the ``Trainer``.

The loop and its parts live in the modules beside this one: ``trainer`` (the Trainer: its state and
its step), ``loop`` (the loop; both described below), ``batches``, ``networks``, ``precision``,
``calibration``, ``graphs``, ``budget``, ``ema``, ``augmentation``, ``init_from``, ``samples``,
``logs``, ``validation``, ``signals``, ``device`` and ``distributed``.

The life of one run
-------------------
1. The CLI turns ``productgan train ...`` into a ``RunConfig`` (a preset, ``--config``, flags;
   with neither ``--preset`` nor ``--config`` it takes the preset ``data.source_kind.preset_for`` names for the
   data, and ``--preset none`` keeps the plain defaults) and calls ``train``. ``--resume RUN``
   takes only the budget flags (and ``--no-progress``) and calls ``resume``.
2. ``train`` reads the process context (``distributed.from_environment``: rank and world size
   under torchrun); ``config.resolve(config, world_size=...)`` checks every setting and fills the
   optimiser defaults from ``LOSS_OPTIM_DEFAULTS``. Under torchrun ``--out`` is required, and a
   process torchrun restarted that finds a checkpoint there resumes instead.
3. ``run.open_new_dataset`` opens the data (``data.open_dataset``: a packed folder, or
   Fashion-MNIST packed in memory) and records in ``config.data`` the absolute path it was read
   from; ``resolve(config, dataset, world_size)`` then fills what depends on the data: the image
   size, the split's size and seed, and the augmentation mode (``auto`` unless set).
4. The run folder is ``--out``, checked by ``run.check_new_run_dir`` (never a folder holding a
   run or someone's files), or else the next numbered one, ``run.new_run_dir``.
5. ``_fit`` sets up the device (``device.setup_device``: the process group under torchrun,
   threads, cuDNN) and decides ``--train.precision auto`` by measurement
   (``calibration.choose_precision``: rank 0 times the run's own step in each precision, or reads
   the cached figures; every rank takes its choice, which replaces ``auto`` in the config). Rank 0
   then takes ``run.locked`` and, for a new run, checks the folder again under the lock; the
   ``Trainer`` is built (reading its checkpoint) and ``Trainer.fit`` runs under that lock.
   ``distributed.shutdown()`` runs however it ends.
6. ``Trainer.__init__`` only builds: ``Precision``, ``build_networks`` (G, D, EMA, optimisers,
   DDP wrappers), the loss, the DiffAugment policy, ``training_batches`` (a ``BatchSource``),
   ``noise_rng``, a ``StepGraph`` where one can be used, ``SampleGrid`` and ``Validator``; a
   resume loads checkpoints/last.pt through ``load_state_dict``.
7. ``Trainer.fit`` (``loop.fit``) refuses a resume whose budget is already spent (when the export is current),
   readies the folder (``run.open_run_dir`` writes config.yaml and trims metrics.jsonl;
   ``save_reals``; ``TrainingLog``), installs ``StopSignal``, and runs ``loop.run_steps`` until the
   budget ends or a stop is agreed.
8. At the end: ``save_checkpoint`` (after ``check_finite``), a last sample grid, and
   ``run.export_final``, which writes generator/ from checkpoints/best.pt when validation kept
   one, else from the sampling generator (the EMA one, with its own BatchNorm statistics, when
   kept). ``fit`` returns a summary; the CLI prints it and exits 0, or 128 + the signal's number
   after a stop signal.

``resume`` differs only at the start: ``run.load_run_config`` (a strict parse, then
``resolve``), ``run.check_resumable``, the new budget if one is given,
``run.open_recorded_dataset``, and ``Trainer(..., resume=True)``.

The loop (``loop.run_steps``)
-----------------------------
Until ``Budget.steps_done``, each iteration: update ``elapsed_s``; at a log boundary (every step
in a single process) agree on stops with one ``max_over_ranks`` of (time up, early stop,
signal); apply the linear learning-rate decay (``decay_learning_rates``, from
``Budget.share_used``); ``train_step``; at log boundaries read ``StepStats.means`` (the one host
sync), ``check_finite``, ``check_balance`` and ``TrainingLog.write``; every ``sample_every``
steps ``save_samples``; when ``Validator.due``, ``validate`` (a better score: checkpoints/best.pt;
patience spent: an early stop); every ``checkpoint_every`` steps ``save_checkpoint``.

One training step (``train_step``)
----------------------------------
Per process. B is the per-process batch (``BatchSource.local_batch`` = batch_size / world_size),
C x S x S the image shape, P the discriminator's pack size (``--model.d-pack``).

1. On the host: ``BatchSource.next()`` gathers, for each of the ``d_steps_per_g_step`` D updates,
   uint8 images (B x C x S x S) and int64 labels (B) by index; ``_seed_noise`` seeds
   ``noise_rng`` from ``SeedSequence([seed, step, rank])`` (every random draw of the step comes
   from ``noise_rng``, in the order below, except the data order, which is ``BatchSource``'s
   own); ``EMA.weight`` gives the average's weight for this step, from the images seen. Then the
   device work, ``_step(reals, ema_weight)``, eagerly or as a CUDA graph's replay (below).
2. D phase, ``d_steps_per_g_step`` times:
   - ``_real_batch``: ``to_training_range`` scales to the generator's range (``pixel_range``:
     [-1, 1] for tanh), with a mirror draw per image under ``--train.hflip``, in the configured
     memory format (channels-last by default). Labels are used only by a conditional model; the
     fakes take the real batch's.
   - ``fake = nets.G_step(z, labels)``: z is B x nz from ``noise_rng``; G gives B x C x S x S.
     Gradients are kept only on the last D update, whose fakes the first G update reuses.
   - ``_augment`` (DiffAugment, when on) on the real batch and on ``fake.detach()``.
   - ``nets.D_step`` on both: logits of shape B / P. ``loss.discriminator(real_logits,
     fake_logits)`` plus ``_penalties`` (WGAN-GP, its interpolation drawn from ``noise_rng``;
     lazy R1 every ``r1_every`` steps), on the bare D in float32.
   - ``zero_grad``, ``scaler_d.scale(loss_d).backward()``, ``scaler_d.step``, ``scaler_d.update``.
3. G phase, ``g_steps_per_d_step`` times, with ``D.requires_grad_(False)``: a new fake after the
   first update; ``gen_logits = D(_augment(fake), labels)`` on the bare D (so DDP waits for no D
   gradients); ``loss.generator(gen_logits)``, plus the mode-seeking term when
   ``--loss.mode-seeking`` is above 0; backward and step through ``scaler_g``.
4. EMA: ``ema.blend(G, ema_weight)`` (``ema.py``): a lerp of the parameters with a half-life in
   images (batch_size * d_steps_per_g_step per step), shortened early on by ``ema_warmup``;
   BatchNorm buffers are copied from the live G. Grids, validation and the export draw from
   ``sampling_generator``, which first measures the average's own BatchNorm statistics
   (``generator.statistics.measure_statistics``, once per step).
5. ``_step`` returns (loss_d, loss_g, mean sigmoid(real_logits), mean sigmoid(fake_logits)) as
   one device tensor; ``images_seen`` grows by batch_size * d_steps_per_g_step, ``step`` by 1,
   and ``StepStats.add_values`` adds the four to running sums kept on the device, read once per
   log interval.

Autocast comes from ``Precision.autocast()`` (bfloat16, float16 with loss scaling on older GPUs,
or float32); losses cast logits to float32 (``losses.py``).

Nothing in ``_step`` waits for the device or branches on a value it computes, so on a CUDA GPU
it can run as one CUDA graph (``graphs.py``, ``--train.cuda-graph``, on by default where
``graph_blockers`` finds nothing in the way: one process, no float16 scaler, no gradient penalty,
no learning-rate decay, no ``--train.compile``). ``StepGraph`` checks the graph against the eager
step before it uses it, and drops it with a warning when they differ (``graphs.py`` says how).
Real batches reach the graph through fixed buffers, the noise through ``noise_rng`` (registered
with the graph, so each replay draws from the seed the step set), the EMA weight through a device
scalar. Adam keeps its step count on the device there (``capturable``); ``settle_optimizer``
sets that back for whichever device a checkpoint is resumed on.

What makes resume bit-exact, and what would break it
----------------------------------------------------
On the CPU, a run interrupted at any step and resumed ends with exactly the weights of the same
run uninterrupted. The checkpoint holds no random-number state: the run's position is a few
counters, and everything random is a function of them.

    what                        where it comes from                             saved as
    --------------------------  ----------------------------------------------  ------------------
    weights, optimiser moments, state_dict: G, D, G_ema, opt_g, opt_d           tensors
    BatchNorm statistics
    loss scalers                scaler_g, scaler_d (pass-through unless fp16)   plain values
    data position               BatchSource: epoch e's order is randperm        batches_drawn
                                seeded with seed * 1_000_003 + e; the position  (global batches)
    noise, flips, DiffAugment,  _seed_noise: noise_rng reseeded from (seed,     nothing (step)
    WGAN-GP draws               step, rank) at the start of every step
    EMA decay                   EMA.decay(batch, images_seen)                   images_seen
    learning rate               decay_learning_rates from Budget.share_used;    step, elapsed_s
                                the time share from elapsed_s (rank 0's clock,
                                broadcast)
    validation                  Validator.state_dict; its vectors are           best_val,
                                noise(eval_n, nz, (seed, VALIDATION_STREAM)),   evals_without_gain
                                a numpy stream of their own
    the average's measured      measure_statistics: a generator seeded with     nothing
    BatchNorm statistics        seed, on a copy of the model
    sample grids, reals.png     noise(grid_size, nz, seed + 2);                 nothing
                                seeded_subset(..., seed)

Initial weights come from ``torch.manual_seed(seed)`` in ``build_networks``; on resume the
checkpoint overwrites them. A second session trims metrics.jsonl back to the checkpoint's step
(``run.trim_metrics``) and TensorBoard purges later events, so the logs are rewritten, not
duplicated.

A change must keep all of this. It breaks bit-exact resume when it:

- draws from the global torch RNG inside the step (``torch.randn`` without ``generator=``,
  dropout, ``randperm`` without a generator): that state is not in the checkpoint. Draw from
  ``noise_rng``, or from a generator seeded by counters that are.
- adds state that changes from step to step (a scheduler, an adaptive augmentation strength, a
  running counter, a cache) without adding it to ``state_dict`` and ``load_state_dict``, and to
  ``checkpoint.REQUIRED_FIELDS`` when every checkpoint must hold it.
- consumes ``noise_rng`` in an order or amount that depends on anything not restored, such as a
  draw only in the first step of a session or only at a log interval. Changing the order for
  good (one more draw per step) keeps resume exact but changes every run from that version on.
- changes ``BatchSource``'s order formula, its dropping of the last incomplete batch, or what
  ``batches_drawn`` counts: old checkpoints would resume at another place in the data.
- runs G or D in training mode outside the step (BatchNorm statistics would move):
  ``SampleGrid.save``, ``Validator.score`` and ``networks.activation_floats`` use
  ``models.eval_mode``, and ``measure_statistics`` runs a copy.
- lets the two sessions compute differently. The config pins what it records, but not
  everything: ``--train.threads 0`` leaves torch's default thread count, which follows the
  machine's CPUs (torch's CPU kernels may split sums differently with another count);
  ``--train.precision auto`` is measured per machine, but the choice replaces ``auto`` in
  config.yaml, so a resume trains in it; ``--train.compile`` is close to eager, not equal; and
  each rank draws its own noise, so a resume with another number of processes is well defined
  but is not the run that one count would have trained. Exactness is checked with the thread
  count, the precision and the process count unchanged.
- makes a decision from the wall clock other than the minutes budget and its time share.

A GPU run is not bit-reproducible (as ``TrainConfig.cudnn_benchmark``'s docstring says); it
resumes from the same position in data, noise and schedule.

Tests that check it: tests/test_train.py ``test_resume_matches_an_uninterrupted_run_bit_for_bit``
(14 steps across an epoch boundary, every checkpoint field compared),
``test_signal_finishes_the_step_saves_and_resumes_exactly`` and
``test_linear_lr_decay_resumes_from_the_clock_it_saved``; tests/test_conditional.py
``test_conditional_resume_is_exact``; tests/test_distributed.py
``test_cli_under_torchrun_then_resume_with_one_process``,
``test_torchrun_restart_resumes_from_the_last_checkpoint`` and
``test_lr_decay_after_a_resume_follows_the_saved_clock_on_every_rank``; tests/test_kill.py (a
SIGKILL anywhere, resumed to the same bytes); tests/test_sampling.py
``test_noise_is_seeded_on_the_cpu_and_leaves_global_rng_alone``; tests/test_models.py
``test_same_seed_builds_identical_networks``; and on a GPU, tests/test_cuda.py
``test_gpu_run_resumes_from_its_checkpoint``.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from productgan import run
from productgan.config import RunConfig, resolve
from productgan.errors import UsageError
from productgan.train import distributed
from productgan.train.batches import describe_mixed
from productgan.train.calibration import choose_precision, choose_threads, describe_choice, describe_threads
from productgan.train.device import setup_device
from productgan.train.init_from import describe_start, start_from
from productgan.train.trainer import Trainer

__all__ = ["train", "resume", "Trainer"]


def train(config: RunConfig, progress: bool = True) -> dict[str, Any]:
    """Start a new run described by ``config``; returns the loop's summary.

    Under torchrun (WORLD_SIZE > 1) every rank calls this. A restart by torchrun's
    ``--max-restarts`` finds the checkpoint in ``--out`` and resumes from it.
    """
    context = distributed.from_environment()
    resolve(config, world_size=context.world_size)
    if context.restarted and config.out and (Path(config.out) / run.LAST_CHECKPOINT).is_file():
        return resume(config.out, config.steps, config.images, config.minutes, progress=progress)
    if context.enabled and not config.out:
        raise UsageError(
            "Under torchrun, give the run directory with --out, so every process and every restart uses the same one."
        )
    dataset = run.open_new_dataset(config)
    resolve(config, dataset, context.world_size)
    if config.out:
        run_dir = Path(config.out)
        if context.is_main:
            run.check_new_run_dir(run_dir, restarted=context.restarted)
    else:
        run_dir = run.new_run_dir(config.runs_root, config.data, dataset.image_size)
    return _fit(config, run_dir, dataset, context, progress, resume=False, doing="productgan train")


def resume(run_dir: str | Path, steps=None, images=None, minutes=None, progress: bool = True) -> dict[str, Any]:
    """Continue the run in ``run_dir`` in place; a budget given here is the new total. The number
    of processes may differ from the run's start: the data position and noise do not depend on it."""
    context = distributed.from_environment()
    run_dir = Path(run_dir)
    config = run.load_run_config(run_dir)
    run.check_resumable(run_dir)
    if steps is not None or images is not None or minutes is not None:
        config.steps, config.images, config.minutes = steps, images, minutes
    dataset = run.open_recorded_dataset(config, run_dir)
    resolve(config, dataset, context.world_size)
    return _fit(config, run_dir, dataset, context, progress, resume=True, doing="productgan train --resume")


def _fit(config: RunConfig, run_dir: Path, dataset, context, progress: bool, resume: bool, doing: str) -> dict:
    try:
        device = setup_device(config.train, context)
        threads = choose_threads(config, dataset, device, context)
        if threads is not None and context.is_main and progress:
            print(describe_threads(threads), file=sys.stderr)
        if config.train.precision == "auto":
            record = choose_precision(config, dataset, device, context)
            if context.is_main and progress:
                print(describe_choice(record), file=sys.stderr)
        # Rank 0 alone writes, so it alone holds the run's lock, and reads the checkpoint under
        # it; a new run looks at its folder again there, in case another process started in it.
        with run.locked(run_dir, doing) if context.is_main else nullcontext():
            if context.is_main and not resume:
                run.check_new_run_dir(run_dir, restarted=context.restarted)
            trainer = Trainer(config, run_dir, dataset, resume=resume, context=context, device=device)
            mixed = describe_mixed(trainer.batches)
            if mixed and context.is_main and progress:
                print(mixed, file=sys.stderr)
            if config.train.init_from and not resume:
                record = start_from(trainer.nets, config, dataset)
                if context.is_main and progress:
                    print(describe_start(record), file=sys.stderr)
            return trainer.fit(progress=progress)
    finally:
        distributed.shutdown()
