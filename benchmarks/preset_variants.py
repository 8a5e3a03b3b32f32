"""Variants of the fmnist-32 preset under one budget: how a change trades speed (images seen in
the minutes) against quality, or, with an image budget, what it does per image seen.

Each variant trains `--preset fmnist-32` (as the preset is now: each row records it) plus its
flags, once per seed; its exported (EMA) generator is then scored on the validation split with N
images. The test split stays untouched, for benchmarks/quality.py. With a minutes budget the
variants train one at a time with every thread of this machine; with an image budget speed does
not count, so `--parallel P` may train P of them at once (a GPU is mostly idle under one process
at batch 128). A variant whose run folder already holds an export is scored again, not
retrained. Prints a table and writes benchmarks/results/preset_variants.json (10 minutes on a
float32 CPU) or preset_variants-<budget>-<device>.json (device "cpu-bf16" on a CPU with native
bfloat16, where the runs train in it); rows measured by an earlier call are kept unless run again.

    python benchmarks/preset_variants.py --minutes 10 --variants "D width 16 (the preset before)"
    python benchmarks/preset_variants.py --images 730112 --device cuda --parallel 8 \\
        --variants fmnist-32 "Adam betas (0.5, 0.999) (the preset before)" --seeds 0 1 2 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from statistics import mean

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ("fid_productgan", "precision", "recall", "rarest_class_share")

VARIANTS = {
    "fmnist-32": [],
    "D width 16 (the preset before)": ["--model.ndf", "16"],
    "D width 32": ["--model.ndf", "32"],
    "D width 16, G width 48": ["--model.ndf", "16", "--model.ngf", "48"],
    "G width 16": ["--model.ngf", "16"],
    "D width 16, R1 0.1": ["--model.ndf", "16", "--loss.r1-gamma", "0.1"],
    "D width 16, batch 256, lr 6e-4": [
        "--model.ndf",
        "16",
        "--batch-size",
        "256",
        "--optim.lr-g",
        "6e-4",
        "--optim.lr-d",
        "6e-4",
    ],
    "D width 16, batch 64, lr 2e-4": [
        "--model.ndf",
        "16",
        "--batch-size",
        "64",
        "--optim.lr-g",
        "2e-4",
        "--optim.lr-d",
        "2e-4",
    ],
    "Adam betas (0.5, 0.999) (the preset before)": ["--optim.beta2", "0.999"],
    "Adam betas (0.5, 0.99)": ["--optim.beta2", "0.99"],
    "Adam betas (0, 0.99)": ["--optim.beta1", "0.0", "--optim.beta2", "0.99"],
    "Adam betas (0.5, 0.9)": ["--optim.beta2", "0.9"],
    "Adam betas (0, 0.9)": ["--optim.beta1", "0.0", "--optim.beta2", "0.9"],
    "Adam betas (0.5, 0.99), lr 3e-4": ["--optim.beta2", "0.99", "--optim.lr-g", "3e-4", "--optim.lr-d", "3e-4"],
    "Adam betas (0.5, 0.99), lr 4e-4 (the preset before)": [
        "--optim.beta2",
        "0.99",
        "--optim.lr-g",
        "4e-4",
        "--optim.lr-d",
        "4e-4",
    ],
    "Adam betas (0.5, 0.99), lr 6e-4": ["--optim.beta2", "0.99", "--optim.lr-g", "6e-4", "--optim.lr-d", "6e-4"],
    "Adam betas (0.5, 0.99), lr 8e-4": ["--optim.beta2", "0.99", "--optim.lr-g", "8e-4", "--optim.lr-d", "8e-4"],
    "Adam betas (0.5, 0.99), lr 1.2e-3": ["--optim.beta2", "0.99", "--optim.lr-g", "1.2e-3", "--optim.lr-d", "1.2e-3"],
    "D learning rate 2e-4": ["--optim.lr-d", "2e-4"],
    "label smoothing 0.9": ["--loss.label-smoothing", "0.9"],
    "linear lr decay": ["--optim.lr-decay", "linear"],
    "linear lr decay from 6e-4": ["--optim.lr-decay", "linear", "--optim.lr-g", "6e-4", "--optim.lr-d", "6e-4"],
    "D width 32, pack 2": ["--model.ndf", "32", "--model.d-pack", "2"],
    "D width 32, pack 4": ["--model.ndf", "32", "--model.d-pack", "4"],
    "D width 48, pack 2": ["--model.ndf", "48", "--model.d-pack", "2"],
    "float32 (no autocast)": ["--train.precision", "fp32"],
}


def results_path(budget_name: str, device_name: str) -> Path:
    if (budget_name, device_name) == ("10min", "cpu"):
        return RESULTS / "preset_variants.json"
    return RESULTS / f"preset_variants-{budget_name}-{device_name}.json"


def fingerprint(preset: dict) -> str:
    """The preset's values as canonical text: rows and runs of one preset share it."""
    return json.dumps(preset, sort_keys=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=10.0)
    budget.add_argument("--images", type=int, help="Train each variant on this many images instead.")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--device", default="cpu", help="Where to train and score (cpu, cuda, cuda:1, ...).")
    parser.add_argument("--parallel", type=int, default=1, help="Variants trained at once (image budgets only).")
    parser.add_argument("--work", default="runs/preset-variants")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    if args.parallel < 1:
        parser.error("--parallel must be at least 1.")
    if args.parallel > 1 and args.images is None:
        parser.error(
            "--parallel needs an image budget (--images): under a minutes budget runs must not share the machine."
        )
    if args.images is not None:
        args.minutes = None

    from productgan.config import PRESETS
    from productgan.reports.evaluation import evaluate_run

    preset = PRESETS["fmnist-32"]
    preset_id = hashlib.sha1(fingerprint(preset).encode()).hexdigest()[:6]
    budget_flags = ["--images", str(args.images)] if args.images is not None else ["--minutes", str(args.minutes)]
    budget_name = f"{args.images}img" if args.images is not None else f"{args.minutes:g}min"
    from productgan.train.precision import cpu_has_native_bf16

    # On a CPU with native bfloat16 the runs train in it (--train.precision auto): a machine of its own.
    device_name = args.device.replace(":", "") + ("-bf16" if args.device == "cpu" and cpu_has_native_bf16() else "")
    work = Path(args.work)
    jobs = []
    for name in dict.fromkeys(args.variants):
        for seed in dict.fromkeys(args.seeds):
            slug = "".join(c if c.isalnum() else "-" for c in name)
            # The preset's fingerprint in the name: a run of an older preset is never scored as the current one.
            jobs.append((name, seed, work / f"{slug}-preset{preset_id}-{budget_name}-{device_name}-seed{seed}"))

    pending = [job for job in jobs if not (job[2] / "generator" / "config.json").is_file()]
    unfinished = [str(folder) for _, _, folder in pending if folder.exists()]
    if unfinished:
        raise SystemExit(
            f"These folders hold unfinished runs; remove them to train those variants again: {', '.join(unfinished)}"
        )
    for name, seed, folder in jobs:
        if (name, seed, folder) not in pending:
            print(f"{name} (seed {seed}): {folder} holds an export already; scoring it again", flush=True)

    # Train what is missing, at most --parallel at a time; each run's messages go to a log beside it.
    running: list[tuple[str, int, Path, subprocess.Popen]] = []

    def finish(entry: tuple[str, int, Path, subprocess.Popen]) -> None:
        name, seed, log, process = entry
        if process.wait() != 0:
            for *_, other in running:
                other.kill()
                other.wait()
            raise SystemExit(f"{name} (seed {seed}) failed; the end of {log}:\n{log.read_text()[-2000:]}")

    work.mkdir(parents=True, exist_ok=True)
    for name, seed, folder in pending:
        if len(running) == args.parallel:
            finish(running.pop(0))
        cmd = [
            sys.executable,
            "-m",
            "productgan",
            "train",
            "--preset",
            "fmnist-32",
            *VARIANTS[name],
            "--out",
            str(folder),
            *budget_flags,
            "--seed",
            str(seed),
            "--train.device",
            args.device,
            "--train.log-every",
            "100",
            "--no-progress",
        ]
        if args.parallel > 1:
            cmd += ["--train.threads", "2"]
        log = folder.with_name(folder.name + ".log")
        with log.open("w") as stream:
            running.append((name, seed, log, subprocess.Popen(cmd, stdout=stream, stderr=subprocess.STDOUT)))
    while running:
        finish(running.pop(0))

    import torch

    path = results_path(budget_name, device_name)
    previous = json.loads(path.read_text()) if path.is_file() else {}

    def key(row: dict) -> tuple:
        return row["variant"], row["seed"], fingerprint(row["preset"]), row["n"]

    rows = {key(r): r for r in previous.get("rows", [])}
    threads = 2 if args.parallel > 1 else torch.get_num_threads()
    for name, seed, folder in jobs:
        report = evaluate_run(folder, split="val", n=args.n, seed=0, floor=False, progress=False, device=args.device)
        exported = json.loads((folder / "generator" / "config.json").read_text())
        row = {
            "variant": name,
            "preset": preset,
            "flags": VARIANTS[name],
            "seed": seed,
            "n": args.n,
            "threads": threads,
            "images_seen": exported["images_seen"],
            **{k: report["metrics"][k] for k in KEYS},
        }
        rows[key(row)] = row
        print(
            f"{name} (seed {seed}): {exported['images_seen']:,} images, "
            + ", ".join(f"{k} {report['metrics'][k]:.4f}" for k in KEYS),
            flush=True,
        )

    print(
        f"\n{'variant (' + budget_name + ', ' + device_name + ')':<44}{'runs':>5}{'images':>10}{'val fid':>9}"
        f"{'prec':>7}{'recall':>7}{'rarest':>7}"
    )
    groups: dict[tuple, list[dict]] = {}
    for r in rows.values():  # seeds of one variant, preset and n together
        groups.setdefault((r["variant"], fingerprint(r["preset"]), r["n"]), []).append(r)
    for (name, group_preset, n), group in groups.items():
        label = (
            name
            + ("" if group_preset == fingerprint(preset) else " (older preset)")
            + ("" if n == args.n else f" (n {n})")
        )
        means = {k: mean(r[k] for r in group) for k in ("images_seen", *KEYS)}
        print(
            f"{label:<44}{len(group):>5}{means['images_seen']:>10,.0f}{means['fid_productgan']:>9.3f}"
            f"{means['precision']:>7.3f}{means['recall']:>7.3f}{means['rarest_class_share']:>7.3f}"
        )
    RESULTS.mkdir(exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "benchmark": "preset_variants",
                "minutes": args.minutes,
                "images": args.images,
                "device": args.device,
                "gpu": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else None,
                "rows": list(rows.values()),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
