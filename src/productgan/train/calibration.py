"""Precision chosen by measurement: ``--train.precision auto`` times this run's own training step
in each precision the device offers and trains in the fastest one whose losses stay finite.

A CPU flag is not a measurement: bfloat16 has run at four times float32's speed on one CPU that
lists avx512_bf16 and at half of it on another. The result is cached per device, torch version
and step shape in the user cache, so the measurement costs seconds once, and it is recorded in
the run's config.yaml (the precision itself, and the rates measured), so a resume trains in the
same precision whatever the machine measures then.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from productgan.config import RunConfig, to_dict
from productgan.data import PackedDataset
from productgan.errors import ProductganError
from productgan.evaluator.cache import cache_root
from productgan.files import write_text_atomic
from productgan.machine import busy_elsewhere, cpu_model
from productgan.train import distributed
from productgan.train.distributed import SINGLE, Context
from productgan.train.logs import StepStats
from productgan.train.trainer import Trainer

CACHE_FILE = "precision.json"
WARMUP_STEPS = 2
MIN_TIMED, MAX_TIMED, TIMED_SECONDS = 3, 20, 1.0  # steps timed: at least, at most, for about
PROBE_IMAGES, PROBE_MARGIN = 4, 3


def candidates(device: torch.device) -> tuple[str, ...]:
    """The precisions worth timing on ``device``: float32 and the half precision it offers."""
    if device.type == "cuda":
        return ("fp32", "bf16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")
    return ("fp32", "bf16")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({torch.get_num_threads()} threads)"


def step_key(config: RunConfig, dataset: PackedDataset, device: torch.device, world_size: int) -> dict[str, Any]:
    """Everything the speed of a training step depends on: the device, torch, the networks, the
    batch per process, the update schedule and what runs inside the step."""
    c = to_dict(config)
    inside = ("channels_last", "compile", "cuda_graph", "augment", "augment_policy", "hflip", "ema")
    train = {k: c["train"][k] for k in inside}
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "model": c["model"],
        "loss": c["loss"],
        "updates": [config.optim.d_steps_per_g_step, config.optim.g_steps_per_d_step],
        "batch_per_process": config.batch_size // world_size,
        "images": [dataset.channels, dataset.image_size, dataset.num_classes],
        "train": train,
    }


def images_per_second(
    config: RunConfig, dataset: PackedDataset, device: torch.device, precision: str, batch: int | None = None
) -> float | None:
    """Training images per second of this run's step in ``precision`` on ``device`` (its own
    networks and data, freshly initialised and thrown away), or None when its losses do not stay
    finite. With ``batch``, a probe: one warm step and one timed step of that many images."""
    trial = copy.deepcopy(config)
    trial.train.precision, trial.train.device = precision, str(device)
    trial.batch_size = batch or config.batch_size
    if trial.train.cuda_graph == "on":
        trial.train.cuda_graph = "auto"  # a precision the graph cannot take (float16) is still timed
    warmup, least, most, seconds = (1, 1, 1, 0.0) if batch else (WARMUP_STEPS, MIN_TIMED, MAX_TIMED, TIMED_SECONDS)
    trainer = Trainer(trial, Path("unused"), dataset, device=device)
    if trainer.graph is not None and not batch:
        warmup = max(warmup, trainer.graph.steps_before_replay)  # time the replayed graph, as the run will run
    stats = StepStats.zeros(device)
    for _ in range(warmup):
        trainer.train_step(stats)
    stats.means()  # waits for the device, so the clock starts after the warm steps
    timed, start = 0, time.perf_counter()
    while timed < least or (timed < most and time.perf_counter() - start < seconds):
        trainer.train_step(stats)
        timed += 1
    values = stats.means()
    elapsed = time.perf_counter() - start
    trainer.graph = None  # it refers back to the trainer: without it the trial's memory goes at once
    del trainer
    gc.collect()
    if not all(math.isfinite(values[k]) for k in ("loss_d", "loss_g")):
        return None
    return timed * trial.batch_size * trial.optim.d_steps_per_g_step / elapsed


def choose_precision(
    config: RunConfig, dataset: PackedDataset, device: torch.device, context: Context = SINGLE, measure=None
) -> dict[str, Any]:
    """Decide ``--train.precision auto`` for this run (in place: config.train.precision becomes
    the choice and config.train.precision_measured what it rests on); returns that record.

    Each precision is first probed with a few images; one that falls PROBE_MARGIN times behind
    the fastest probe cannot win and is not timed further (an emulated bfloat16 can be fifty
    times slower than float32, and a full step of it would take a minute). The others are timed
    on the run's own batch. Rank 0 measures (or finds the cached measurement) and every rank
    takes its decision, so all processes of a torchrun job train alike.
    """
    measure = measure or images_per_second
    options = candidates(device)
    record = None
    if context.is_main:
        key = step_key(config, dataset, device, context.world_size)
        record = _cached(key)
        if record is not None and record.get("chosen") not in options:
            record = None  # a cache entry no longer meaningful here is measured again
        if record is None:
            pack = config.model.d_pack
            probe_batch = pack * -(-PROBE_IMAGES // pack)
            per_process = config.batch_size // context.world_size  # what each process will train on
            probes = {p: _timed(measure, config, dataset, device, p, probe_batch) for p in options}
            fastest = max((r for r in probes.values() if r is not None), default=None)
            contenders = [p for p in options if probes[p] is not None and probes[p] * PROBE_MARGIN >= fastest]
            rates = {
                p: _timed(measure, config, dataset, device, p, per_process) if p in contenders else None
                for p in options
            }
            finite = {p: r for p, r in rates.items() if r is not None}
            chosen = max(finite, key=finite.get) if finite else "fp32"
            record = {
                "chosen": chosen,
                "images_per_s": rates,
                "probe_images_per_s": probes,
                "probe_batch": probe_batch,
                "device": key["device"],
                "cached": False,
            }
            _store(key, record)
    index = distributed.broadcast_float(float(options.index(record["chosen"])) if record else 0.0, device, context)
    chosen = options[int(index)]
    record = record or {"chosen": chosen, "device": device_name(device), "measured_on": "rank 0"}
    config.train.precision, config.train.precision_measured = chosen, record
    return record


# Other processes keeping at least this many CPUs busy make the thread count worth measuring:
# torch's threads then wait for one another, and one thread has trained three times as fast as two
# beside three busy neighbours on a 2-core machine (docs/training.md, "A busy machine").
BUSY_CPUS = 0.5


def choose_threads(
    config: RunConfig, dataset: PackedDataset, device: torch.device, context: Context = SINGLE, measure=None
) -> dict[str, Any] | None:
    """Decide ``--train.threads 0`` for a CPU run (in place: config.train.threads becomes the
    count, so config.yaml records it and a resume trains with the same one); returns what the
    decision rests on, or None where there was nothing to decide (a GPU, a count given, torchrun,
    or torch already on one thread). On an idle machine the count is torch's default; when other
    processes keep BUSY_CPUS or more busy, this run's own step is timed with the default count and
    with one thread (a few seconds), and the faster is kept."""
    default = torch.get_num_threads()
    if device.type != "cpu" or config.train.threads > 0 or context.enabled or default == 1:
        return None
    busy = busy_elsewhere()
    record: dict[str, Any] = {"chosen": default, "busy_cpus": busy, "images_per_s": None}
    if busy is not None and busy >= BUSY_CPUS:
        measure = measure or images_per_second
        precision = "fp32" if config.train.precision == "auto" else config.train.precision
        rates = {}
        for threads in (default, 1):
            torch.set_num_threads(threads)
            rates[threads] = _timed(measure, config, dataset, device, precision, config.batch_size) or 0.0
        record["chosen"], record["images_per_s"] = max(rates, key=rates.get), rates
    torch.set_num_threads(record["chosen"])
    config.train.threads = record["chosen"]
    return record


def describe_threads(record: dict[str, Any]) -> str:
    """One line for the start of a run: the thread count and what it rests on."""
    busy = "not measured" if record["busy_cpus"] is None else f"{record['busy_cpus']:.1f} CPUs busy elsewhere"
    if not record["images_per_s"]:
        return f"Threads: {record['chosen']} ({busy})."
    rates = ", ".join(
        f"{threads} thread{'s' * (threads > 1)} {rate:,.0f}" for threads, rate in record["images_per_s"].items()
    )
    return f"Threads: {record['chosen']} ({busy}; measured {rates} images/s)."


def _timed(measure, config, dataset, device, precision: str, batch: int) -> float | None:
    """``measure``'s figure, or None when the precision cannot train here at all (an error in
    its step, or too little memory): it is then simply not chosen."""
    try:
        return measure(config, dataset, device, precision, batch)
    except (RuntimeError, ProductganError):
        return None


def describe_choice(record: dict[str, Any]) -> str:
    """One line for the start of a run: the precision chosen and the figures it rests on."""
    rates, probes = record.get("images_per_s") or {}, record.get("probe_images_per_s") or {}
    parts = []
    for precision, rate in rates.items():
        if rate is not None:
            parts.append(f"{precision} {rate:,.0f}")
        elif probes.get(precision) is not None:
            parts.append(f"{precision} ruled out by a probe ({probes[precision]:,.0f})")
        else:
            parts.append(f"{precision} not finite")
    source = "cached measurement" if record.get("cached") else "measured now"
    return (
        f"Precision {record['chosen']} ({source} on {record.get('device')}: {', '.join(parts) or 'rank 0'} images/s)."
    )


def _cache_path() -> Path:
    return cache_root() / CACHE_FILE


def _digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _cached(key: dict[str, Any]) -> dict[str, Any] | None:
    try:
        entry = json.loads(_cache_path().read_text()).get(_digest(key))
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("record"), dict):
        return None
    return {**entry["record"], "cached": True}


def _store(key: dict[str, Any], record: dict[str, Any]) -> None:
    """Add the measurement to the cache; a cache that cannot be written only costs a new one."""
    path = _cache_path()
    try:
        entries = json.loads(path.read_text()) if path.is_file() else {}
        entries = entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        entries = {}
    entries[_digest(key)] = {"key": key, "record": record}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(entries, indent=1) + "\n")
    except OSError:
        pass
