"""What a run records: its resolved configuration (config.yaml) and the dataset it names."""

from __future__ import annotations

from pathlib import Path

import yaml

from productgan.config import RunConfig, parse_config, read_config_file, resolve, to_dict
from productgan.data import FILES, PackedDataset, is_packed_dataset, open_dataset
from productgan.data.fashion_mnist import missing_files
from productgan.data.prepare import FASHION_MNIST
from productgan.errors import ProductganError, UsageError, first_line
from productgan.files import write_text_atomic
from productgan.run.folder import CONFIG_FILE, require_run_dir, trim_metrics


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The configuration recorded in ``run_dir``, or one sentence naming what is wrong with it."""
    path = require_run_dir(run_dir) / CONFIG_FILE
    try:
        config = parse_config(read_config_file(path))
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        reason = first_line(error).strip("'\"")  # a KeyError's message comes quoted
        raise ProductganError(f"{path} is damaged ({reason}); restore it from a copy of the run, or start a new run.")
    try:
        return resolve(config)  # the checks a new run's settings pass
    except UsageError as error:
        raise ProductganError(
            f"{path} holds settings no run can have ({str(error).rstrip('.')}); restore it from a copy of the run, "
            f"or start a new run."
        )


def record_config(run_dir: Path, config: RunConfig) -> Path:
    return write_text_atomic(run_dir / CONFIG_FILE, yaml.safe_dump(to_dict(config), sort_keys=False))


def open_recorded_dataset(config: RunConfig, run_dir: str | Path | None = None) -> PackedDataset:
    """The dataset ``config`` names; for a run's recorded config (``run_dir`` given), one
    sentence when that dataset is no longer there."""
    if run_dir is not None and config.data != FASHION_MNIST and not Path(config.data).expanduser().exists():
        raise ProductganError(
            f"The dataset this run trained on, {config.data} (the data: line of "
            f"{Path(run_dir) / CONFIG_FILE}), is not there; put it back, or edit that line to where "
            f"it is now."
        )
    return open_dataset(
        config.data, image_size=config.image_size, val_size=config.train.val_size, seed=config.train.split_seed
    )


def open_new_dataset(config: RunConfig) -> PackedDataset:
    """Open the dataset of a new run and record in ``config.data`` what it really is, so that
    config.yaml alone rebuilds the run from any folder: the absolute path of a folder it was read
    from (a folder named fashion-mnist that holds neither a packed dataset nor the idx files
    leaves the name, which means the built-in source)."""
    dataset = open_recorded_dataset(config)
    path = Path(config.data).expanduser()
    read_from_path = path.is_dir() and (is_packed_dataset(path) or len(missing_files(path)) < len(FILES))
    if path.exists() and (config.data != FASHION_MNIST or read_from_path):
        config.data = str(path.resolve())
    return dataset


def open_run_dir(run_dir: Path, config: RunConfig, step: int) -> None:
    """Ready ``run_dir`` for training from ``step``: the folder exists, config.yaml holds
    ``config``, and metrics.jsonl ends at ``step``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    record_config(run_dir, config)
    trim_metrics(run_dir, step)
