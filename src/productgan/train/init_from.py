"""A new run that starts from another run's weights (``--init-from RUN`` or ``RUN:best``):
fine-tuning on a new line of products, or the same catalogue with a category added.

G, D and the weight average are loaded from the source run's checkpoint into the new run's
networks, which ``build_networks`` made for the new data; the optimisers, the step and the data
position start afresh. What must match, and what may differ:

- the architecture (every model setting) and the image size: any difference is refused in one
  sentence naming it;
- the image channels may differ by one rule: grey to RGB repeats G's output filter for each
  channel and splits D's input filter over the three (a grey picture then gets the answers it got
  before), RGB to grey averages G's filters and adds D's;
- categories are matched by name; a category the source never saw gets a new row in every class
  table (G's modulation, D's projection) initialised from the mean of the source's rows, and a
  source category the new data lacks is dropped.

The source run, its checkpoint, step and SHA-256, and what was adapted go into
``config.train.init_source``, which config.yaml and the model card record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from productgan import run
from productgan.checkpoint import load_checkpoint
from productgan.config import ModelConfig, RunConfig, from_dict, to_dict
from productgan.data import PackedDataset
from productgan.errors import ProductganError, UsageError
from productgan.files import file_sha256
from productgan.train.networks import Networks

CHECKPOINTS = {"last": run.LAST_CHECKPOINT, "best": run.BEST_CHECKPOINT}


def source_checkpoint(spec: str) -> tuple[Path, str]:
    """``RUN`` or ``RUN:last`` / ``RUN:best`` -> (the run folder, which checkpoint), checked."""
    folder, _, which = str(spec).rpartition(":") if str(spec).endswith((":best", ":last")) else (spec, "", "last")
    folder = Path(folder).expanduser()
    if not (folder / run.CONFIG_FILE).is_file():
        raise UsageError(
            f"--init-from {spec}: {folder} is not a productgan run directory (no {run.CONFIG_FILE}); give the "
            f"folder a training run wrote, as RUN or RUN:best."
        )
    if not (folder / CHECKPOINTS[which]).is_file():
        kept = "it is kept only when training scores the validation split" if which == "best" else "train it first"
        raise UsageError(f"--init-from {spec}: {folder} has no {CHECKPOINTS[which]} ({kept}).")
    return folder, which


def check_compatible(source: dict[str, Any], config: RunConfig, spec: str) -> None:
    """One sentence naming the first difference of architecture or image size."""
    if source["image_size"] != config.image_size:
        raise UsageError(
            f"--init-from {spec} trained at {source['image_size']}x{source['image_size']} and this run trains at "
            f"{config.image_size}x{config.image_size}; the image size must match (prepare the data at "
            f"{source['image_size']}, or train from scratch)."
        )
    theirs = to_dict(from_dict(ModelConfig, source["config"]["model"]))
    ours = to_dict(config.model)
    for name, value in ours.items():
        if theirs.get(name) != value:
            raise UsageError(
                f"--init-from {spec} has --model.{name.replace('_', '-')} {theirs.get(name)!r} and this run "
                f"{value!r}; the architecture must match (drop the flag, or train from scratch)."
            )


def start_from(nets: Networks, config: RunConfig, dataset: PackedDataset) -> dict[str, Any]:
    """Load the source run's G, D and average into ``nets`` (in place), adapted to ``dataset``'s
    categories and channels; records and returns what was done (``config.train.init_source``)."""
    spec = config.train.init_from
    folder, which = source_checkpoint(spec)
    path = folder / CHECKPOINTS[which]
    state = load_checkpoint(path)  # one sentence for a damaged or refused file
    check_compatible(state, config, spec)
    source_classes = list(state["export_info"].get("class_names") or [])
    target_classes = list(dataset.class_names) if nets.G.num_classes else source_classes
    rows = class_rows(source_classes, target_classes) if nets.G.num_classes else None
    channels = (state["channels"], dataset.channels)
    for module, key in ((nets.G, "G"), (nets.D, "D")):
        module.load_state_dict(adapt(state[key], module.state_dict(), rows, channels, key))
    if nets.ema is not None:
        average = state["G_ema"] if state.get("G_ema") is not None else state["G"]
        nets.ema.model.load_state_dict(adapt(average, nets.ema.model.state_dict(), rows, channels, "G"))
    added = [name for name in target_classes if name not in source_classes] if rows is not None else []
    record = {
        "run": str(folder.resolve()),
        "checkpoint": which,
        "step": int(state["step"]),
        "images_seen": int(state["images_seen"]),
        "sha256": file_sha256(path),
        "classes_added": added,
        "classes_dropped": [name for name in source_classes if name not in target_classes] if rows is not None else [],
        "channels": f"{channels[0]} -> {channels[1]}",
    }
    config.train.init_source = record
    return record


def class_rows(source: list[str], target: list[str]) -> list[int | None]:
    """For each target category, its row in the source's class tables, by name (case does not
    matter), or None for a category the source never saw."""
    index = {name.casefold(): i for i, name in enumerate(source)}
    return [index.get(name.casefold()) for name in target]


def adapt(
    source: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    rows: list[int | None] | None,
    channels: tuple[int, int],
    network: str,
) -> dict[str, torch.Tensor]:
    """``source``'s tensors in the shapes of ``target``'s: class tables re-ordered by name (new
    categories from the mean row), the image channels converted by the module's rule; a tensor
    that neither explains (a spectral norm's power-iteration vector over the channels) keeps the
    new network's value. Anything else that differs is refused."""
    adapted = {}
    for name, wanted in target.items():
        if name not in source:
            raise ProductganError(
                f"--init-from: the source run's {network} has no {name}; it is not this architecture."
            )
        value = source[name]
        if rows is not None and _is_class_table(name):
            value = _class_table(value, rows)
        if value.shape != wanted.shape:
            value = _convert_channels(value, wanted, channels, name, network)
        if value is None:
            value = wanted  # a power-iteration vector: it converges again in a few steps
        adapted[name] = value.to(wanted.dtype)
    return adapted


def _is_class_table(name: str) -> bool:
    """A tensor with one row per category: G's modulation tables, D's projection embedding (and
    its spectral norm's vector over the categories, ``_u``; ``_v`` runs over the features)."""
    return (".table." in name or name.startswith("embed.")) and not name.endswith("_v")


def _class_table(value: torch.Tensor, rows: list[int | None]) -> torch.Tensor:
    mean = value.float().mean(dim=0)
    return torch.stack([value[i].float() if i is not None else mean for i in rows]).to(value.dtype)


def _convert_channels(
    value: torch.Tensor, wanted: torch.Tensor, channels: tuple[int, int], name: str, network: str
) -> torch.Tensor | None:
    """G's output filter (dim 1 of the last transposed convolution, and its bias) or D's input
    filter (dim 1 of the first convolution, per packed image), converted grey <-> RGB."""
    have, need = channels
    if have == need:
        return None if name.endswith(("_u", "_v")) else _refuse(name, value, wanted)
    if name.endswith(("_u", "_v")):
        return None
    same_rows = value.dim() == 4 and value.shape[0] == wanted.shape[0]
    if network == "D" and same_rows and wanted.shape[1] * have == value.shape[1] * need:
        # D's first convolution: (out, images * have, k, k) -> (out, images * need, k, k)
        images = value.shape[1] // have
        grouped = value.view(value.shape[0], images, have, *value.shape[2:])
        merged = grouped.sum(dim=2, keepdim=True) if need < have else grouped / need
        return (
            merged.expand(-1, -1, need, -1, -1).reshape(wanted.shape).clone()
            if need > have
            else merged.reshape(wanted.shape)
        )
    if network == "G" and same_rows and value.shape[1] == have and wanted.shape[1] == need:  # last (in, C, k, k)
        return value.mean(dim=1, keepdim=True).expand_as(wanted).clone()
    if network == "G" and value.dim() == 1 and value.shape[0] == have and wanted.shape[0] == need:  # its bias
        return value.mean().expand(need).clone()
    return _refuse(name, value, wanted)


def _refuse(name: str, value: torch.Tensor, wanted: torch.Tensor):
    raise ProductganError(
        f"--init-from: the source run's {name} is {tuple(value.shape)} where this run needs {tuple(wanted.shape)}; "
        f"it is not this architecture."
    )


def describe_start(record: dict[str, Any]) -> str:
    """One line for the start of a run that starts from another."""
    added = (
        f"; new categories from the mean of the others: {', '.join(record['classes_added'])}"
        if record["classes_added"]
        else ""
    )
    return (
        f"Starting from {record['run']} ({record['checkpoint']}.pt, step {record['step']:,}; channels "
        f"{record['channels']}){added}."
    )
