"""Checking a run's configuration: ``resolve`` checks every setting and fills every default once,
before anything is built, with one ``_check_*`` per section; the single-value checks other tiers
share (``check_image_size``, ``check_seed``, ``check_pack``); and what follows from a config
(``target_steps``, ``parse_policy``)."""

from __future__ import annotations

from typing import Any, Protocol

from productgan.config.settings import (
    AUGMENT_MODES,
    AUGMENT_POLICIES,
    DEFAULT_STEPS,
    IMAGE_SIZES,
    LOSS_OPTIM_DEFAULTS,
    MIN_GENERATED,
    MIN_REFERENCE,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from productgan.errors import UsageError


def check_image_size(image_size: Any) -> int:
    """``image_size`` as an int if it is a supported training resolution, else a UsageError."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size not in IMAGE_SIZES:
        raise UsageError(
            f"The image size must be a power of two from 32 to 256 ({', '.join(map(str, IMAGE_SIZES))}), "
            f"got {image_size!r}."
        )
    return int(image_size)


def check_seed(seed: int, flag: str = "--seed") -> int:
    """``seed`` if numpy and torch can both seed with it (0 or more), else a UsageError."""
    if seed < 0:
        raise UsageError(f"{flag} must be 0 or more, not {seed}.")
    return seed


def check_pack(pack: int, batch: int | None = None) -> int:
    """``pack`` if it is a discriminator pack size (1 or more) that divides ``batch`` images
    into whole packs (when given), else a UsageError."""
    if pack < 1:
        raise UsageError(
            f"The discriminator's pack size (--model.d-pack) must be at least 1 (one image per logit), not {pack}."
        )
    if batch is not None and batch % pack:
        raise UsageError(
            f"The discriminator judges packs of {pack} images (--model.d-pack), so the batch per process "
            f"({batch}) must be a multiple of {pack}."
        )
    return pack


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation' -> ('color', 'translation'); unknown names are a ValueError."""
    names = tuple(part.strip() for part in policy.split(",") if part.strip())
    unknown = [name for name in names if name not in AUGMENT_POLICIES]
    if unknown:
        raise ValueError(f"unknown augmentation {', '.join(unknown)}; choose from {', '.join(AUGMENT_POLICIES)}")
    return names


def target_steps(config: RunConfig) -> int | None:
    """The step at which the step or image budget ends (None when only minutes bound the run)."""
    if config.steps is None and config.images is None and config.minutes is None:
        return DEFAULT_STEPS
    candidates = []
    if config.steps is not None:
        candidates.append(config.steps)
    if config.images is not None:
        per_step = config.batch_size * config.optim.d_steps_per_g_step
        candidates.append(-(-config.images // per_step))
    return min(candidates) if candidates else None


class DatasetFacts(Protocol):
    """What ``resolve`` reads of the dataset a run trains on (a ``PackedDataset`` has it all)."""

    image_size: int
    meta: dict

    def split_sizes(self) -> dict[str, int]: ...


def resolve(config: RunConfig, dataset: DatasetFacts | None = None, world_size: int = 1) -> RunConfig:
    """Check every setting and fill every default, once, before anything is built (in place).

    With ``dataset`` (the data the run trains on), the settings that depend on it are filled
    too: the image size, the split it records, and whether DiffAugment is on. Calling it again
    on its own result changes nothing, so a recorded config.yaml resolves to itself. Every
    problem is a UsageError naming the flag.
    """
    for name in ("steps", "images", "minutes"):
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name} must be positive, not {value}.")
    if config.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {config.batch_size}.")
    if config.batch_size % world_size:
        raise UsageError(
            f"--batch-size {config.batch_size} is the global batch and must divide evenly among "
            f"{world_size} processes; use a multiple of {world_size}."
        )
    if not isinstance(config.data, str) or not config.data:
        raise UsageError(f"--data must name a dataset, not {config.data!r}.")
    if config.image_size is not None:
        check_image_size(config.image_size)
    check_seed(config.seed)
    if config.train.split_seed is not None:
        check_seed(config.train.split_seed, "--train.split-seed")
    _check_model(config.model)
    check_pack(config.model.d_pack, config.batch_size // world_size)
    _check_loss(config)
    _resolve_optim(config.optim, config.loss.name)
    _check_train(config.train, world_size)
    if dataset is not None:
        _resolve_data(config, dataset)
    return config


def _check_model(model: ModelConfig) -> None:
    for name in ("nz", "ngf", "ndf"):
        if getattr(model, name) < 1:
            raise UsageError(f"--model.{name} must be at least 1, not {getattr(model, name)}.")


def _check_loss(config: RunConfig) -> None:
    if config.loss.name == "wgan-gp" and config.model.d_norm == "batch":
        raise UsageError(
            "--loss.name wgan-gp penalises per-image gradients, which BatchNorm in the "
            "discriminator mixes across the batch; add --model.d-norm none (or spectral)."
        )
    if config.loss.r1_every < 1:
        raise UsageError("--loss.r1-every must be at least 1.")
    for name in ("r1_gamma", "mode_seeking"):
        weight = getattr(config.loss, name)
        if not 0 <= weight < float("inf"):
            raise UsageError(f"--loss.{name.replace('_', '-')} is a weight: 0 (off) or more, not {weight}.")


def _resolve_optim(optim: OptimConfig, loss: str) -> None:
    """The optimiser settings left unset take the chosen loss's defaults."""
    for name in ("d_steps_per_g_step", "g_steps_per_d_step"):
        if getattr(optim, name) < 1:
            raise UsageError(f"--optim.{name} must be at least 1.")
    for name in ("lr_g", "lr_d"):
        lr = getattr(optim, name)
        if lr is not None and not lr > 0:
            raise UsageError(f"--optim.{name.replace('_', '-')} must be a positive learning rate, not {lr}.")
    for name, value in zip(("lr_g", "lr_d", "beta1", "beta2"), LOSS_OPTIM_DEFAULTS[loss]):
        if getattr(optim, name) is None:
            setattr(optim, name, value)


def _check_train(train: TrainConfig, world_size: int) -> None:
    for name in ("log_every", "sample_every", "checkpoint_every", "grid_size"):
        if getattr(train, name) < 1:
            raise UsageError(f"--train.{name.replace('_', '-')} must be at least 1.")
    if train.eval_every < 0 or train.early_stop_patience < 0:
        raise UsageError("--train.eval-every and --train.early-stop-patience must be 0 (off) or more.")
    if train.eval_every and train.eval_n < max(MIN_GENERATED, world_size):
        raise UsageError(
            f"--train.eval-n must be at least {max(MIN_GENERATED, world_size)} (and one image per "
            f"process) for a validation score, not {train.eval_n}."
        )
    try:
        parse_policy(train.augment_policy)
    except ValueError as error:
        raise UsageError(f"--train.augment-policy: {error}.")
    if isinstance(train.augment, bool):  # as runs before adaptive augmentation recorded it
        train.augment = "on" if train.augment else "off"
    if train.augment is not None and train.augment not in AUGMENT_MODES:
        raise UsageError(f"--augment must be one of {', '.join(AUGMENT_MODES)}, not {train.augment!r}.")
    if train.augment_p is not None and not 0.0 <= train.augment_p <= 1.0:
        raise UsageError(f"--train.augment-p must be a probability from 0 to 1, not {train.augment_p}.")
    if train.freeze_d < 0:
        raise UsageError(f"--freeze-d must be 0 (train every block of D) or more, not {train.freeze_d}.")
    if train.init_from is not None and not str(train.init_from).strip():
        raise UsageError("--init-from is empty; give a run directory (RUN, or RUN:best for its best checkpoint).")
    if not 0.0 < train.augment_target < 1.0:
        raise UsageError(f"--train.augment-target must lie between 0 and 1, not {train.augment_target}.")


def d_blocks(image_size: int) -> int:
    """The strided blocks of a DCGAN discriminator for ``image_size`` (models/dcgan.py): one per
    halving from the image down to 4 x 4."""
    return max(1, int(image_size).bit_length() - 3)


def _resolve_data(config: RunConfig, dataset: DatasetFacts) -> None:
    """The settings that follow from the dataset: its size and split as recorded, and the
    augmentation mode (adaptive unless set)."""
    sizes = dataset.split_sizes()
    config.image_size = dataset.image_size
    split = dataset.meta.get("split", {})
    config.train.val_size = split.get("val_size", config.train.val_size)
    config.train.split_seed = split.get("seed", config.train.split_seed)
    if sizes["train"] < config.batch_size:
        raise UsageError(
            f"The training split has {sizes['train']} images, fewer than one batch of {config.batch_size}; "
            f"lower --batch-size."
        )
    if config.train.augment is None:  # recorded in config.yaml
        config.train.augment = "auto"
    blocks = d_blocks(config.image_size)
    if config.train.freeze_d >= blocks:
        raise UsageError(
            f"--freeze-d {config.train.freeze_d} would freeze all {blocks} blocks of a {config.image_size}x"
            f"{config.image_size} discriminator; freeze at most {blocks - 1}, to leave it something to learn."
        )
    if config.train.eval_every and sizes["val"] < MIN_REFERENCE:
        raise UsageError(
            f"--train.eval-every: the val split holds {sizes['val']} image(s), and scoring needs at least "
            f"{MIN_REFERENCE}; prepare the dataset with a larger val share."
        )
