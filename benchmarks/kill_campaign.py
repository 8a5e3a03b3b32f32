"""A repeatable kill -9 campaign: SIGKILL real training and export processes at seeded-random
moments, resume them, and check that every interrupted run ends where an uninterrupted one does.

    .venv/bin/python benchmarks/kill_campaign.py --kills 35 --seed 0 [--out DIR] [--work DIR]

It trains an uninterrupted reference run on a tiny synthetic dataset, then draws chains of one to
four kills each (a random delay, short ones included, or the moment a checkpoint, a sample grid or
the final export is being written; a third of the chains also kill an export) until ``--kills``
kills are spent, and runs them. The starting, killing, resuming and checking are tests/kill.py's
(tests/test_kill.py runs two short chains of it); its docstring lists what is checked after each
kill and at the end of each chain. It prints a table (where each kill landed, how many steps a
kill cost) and exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from productgan.machine import cpu_model

# The campaign's machinery is the kill test's, kept with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from kill import CHECKPOINT_EVERY, SAMPLE_EVERY, Campaign, ChainResult, ChainSpec, Command, Plan  # noqa: E402


def draw_train_plan(rng: random.Random) -> Plan:
    trigger = rng.choices(["early", "delay", "checkpoint", "samples", "export"], weights=[1, 3, 3, 2, 1])[0]
    if trigger == "early":
        return Plan("early", rng.uniform(0.0, 1.0))
    if trigger == "delay":
        return Plan("delay", rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.03))
    if trigger == "export":
        return Plan("export", 0.0, rng.uniform(0.0, 0.008))
    return Plan(trigger, rng.uniform(0.0, 0.95), rng.uniform(0.0, 0.002))


def draw_export_plan(rng: random.Random) -> Plan:
    """A quarter inside start-up, the rest while the export is being written."""
    if rng.random() < 0.25:
        return Plan("early", rng.uniform(0.0, 1.0))
    return Plan("export", 0.0, rng.uniform(0.0, 0.008))


def draw_chain(rng: random.Random, kills_left: int) -> ChainSpec:
    """One to four kills; a third of the chains spend one of them on an export."""
    kills = min(kills_left, rng.randint(1, 4))
    exports = 1 if kills > 1 and rng.random() < 1 / 3 else 0
    return ChainSpec(
        [draw_train_plan(rng) for _ in range(kills - exports)], [draw_export_plan(rng) for _ in range(exports)]
    )


def steps_lost(command: Command) -> int:
    """Steps a kill cost: those logged past the checkpoint it left."""
    return max(0, (command.step_logged or 0) - (command.checkpoint_step or 0)) if command.killed else 0


def summary_table(results: list[ChainResult]) -> str:
    rows = ["chain  kills  resumes  refused  exports  most steps lost  failures  where the kills landed"]
    for r in results:
        refused = sum(c.note is not None and c.note.startswith("refused") for c in r.commands)
        landed = ", ".join(c.landed for c in r.commands if c.killed) or "-"
        lost = max((steps_lost(c) for c in r.commands), default=0)
        rows.append(
            f"{r.index:5d}  {r.kills:5d}  {r.count('resume'):7d}  {refused:7d}  {r.count('export'):7d}  "
            f"{lost:15d}  {len(r.failures):8d}  {landed}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=35, help="Kills in all (chains are added until there are).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the kill moments.")
    parser.add_argument("--steps", type=int, default=120, help="Steps of each run (~10-20 s on 2 CPU cores).")
    parser.add_argument("--grid-size", type=int, default=16, help="Images in each sample grid.")
    parser.add_argument("--out", help="Folder to write the results to, as kill-campaign-seed<S>.json.")
    parser.add_argument("--work", help="Folder for the dataset and runs (default: a temporary one, kept on failure).")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="kill-campaign-"))
    campaign = Campaign(work, steps=args.steps, grid_size=args.grid_size, log=functools.partial(print, flush=True))
    campaign.reference()
    rng = random.Random(args.seed)
    results: list[ChainResult] = []
    while sum(r.kills for r in results) < args.kills and len(results) < 4 * args.kills:
        spec = draw_chain(rng, args.kills - sum(r.kills for r in results))
        results.append(campaign.chain(len(results), spec))
        if results[-1].failures:
            for failure in results[-1].failures:
                print(f"  chain {results[-1].index}: FAILURE: {failure}", flush=True)
    wall = time.perf_counter() - started

    failures = campaign.failures + [f"chain {r.index}: {f}" for r in results for f in r.failures]
    landings = Counter(c.landed for r in results for c in r.commands if c.killed)
    print()
    print(summary_table(results))
    print()
    print(
        f"{len(results)} chains, {sum(r.kills for r in results)} kills, "
        f"{sum(r.count('resume') for r in results)} resumes, "
        f"{sum(r.count('export') for r in results)} exports, {len(failures)} failures, {wall:.0f} s wall, "
        f"{os.cpu_count()} CPUs ({cpu_model()}), torch {torch.__version__}"
    )
    print("where the kills landed: " + ", ".join(f"{k} {n}" for k, n in landings.most_common()))
    lost = max((steps_lost(c) for r in results for c in r.commands), default=0)
    print(f"most steps lost to one kill: {lost} (a checkpoint every {CHECKPOINT_EVERY})")
    for note in sorted({n for r in results for n in r.notes}):
        print(f"note: {note}")
    for failure in failures:
        print(f"FAILURE: {failure}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        report = {
            "seed": args.seed,
            "kills_asked": args.kills,
            "steps": args.steps,
            "grid_size": args.grid_size,
            "checkpoint_every": CHECKPOINT_EVERY,
            "sample_every": SAMPLE_EVERY,
            "machine": cpu_model(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "reference_train_s": round(campaign.train_s, 3),
            "reference_start_up_s": round(campaign.start_up_s, 3),
            "wall_s": round(wall, 1),
            "chains": [r.as_dict() for r in results],
            "landings": dict(landings),
            "most_steps_lost": lost,
            "failures": failures,
        }
        path = out / f"kill-campaign-seed{args.seed}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results: {path}")
    if failures:
        print(f"runs kept in {work}")
    elif not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
