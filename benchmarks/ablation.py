"""Ablation: what each element of the training recipe does on Fashion-MNIST, one change at a time.

Every variant trains for the same number of steps from the same seed, two at a time (one thread
each, so both cores are used and the pair runs under equal conditions), and is then scored on the
validation split (fid_productgan of N generated images, precision, recall, rarest class share).
The images/s column is per single thread and comparable only within this table. Prints a table
and writes benchmarks/results/ablation.json.

    python benchmarks/ablation.py --steps 2000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

VARIANTS = {
    "baseline (defaults)": [],
    "no EMA": ["--train.ema", "false"],
    "conditional": ["--model.conditional", "true"],
    "hinge + spectral norm D": ["--loss.name", "hinge", "--model.d-norm", "spectral"],
    "least squares": ["--loss.name", "lsgan"],
    "R1 (gamma 0.1)": ["--loss.r1-gamma", "0.1"],
    "DiffAugment": ["--train.augment", "on"],
    "batch 128, lr 4e-4": ["--batch-size", "128", "--optim.lr-g", "4e-4", "--optim.lr-d", "4e-4"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="runs/ablation")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()

    from productgan.reports.evaluation import evaluate_run

    work = Path(args.work)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    names = list(args.variants)
    folders = {name: work / "".join(c if c.isalnum() else "-" for c in name).strip("-") for name in names}
    for start in range(0, len(names), 2):
        pair = names[start : start + 2]
        procs = []
        for name in pair:
            if (folders[name] / "generator").is_dir():
                continue  # trained by an earlier call
            cmd = [
                sys.executable,
                "-m",
                "productgan",
                "train",
                "--out",
                str(folders[name]),
                "--steps",
                str(args.steps),
                "--seed",
                str(args.seed),
                "--train.threads",
                "1",
                "--train.log-every",
                "100",
                "--no-progress",
                *VARIANTS[name],
            ]
            procs.append(
                (name, subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
            )
        for name, proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed:\n{err[-2000:]}")
            print(f"trained: {name}", flush=True)

    rows = []
    for name in names:
        log = [json.loads(line) for line in (folders[name] / "metrics.jsonl").read_text().splitlines()]
        speeds = [r["images_per_s"] for r in log if "images_per_s" in r][1:] or [0.0]
        metrics = evaluate_run(folders[name], split="val", n=args.n, seed=args.seed, floor=False, progress=False)[
            "metrics"
        ]
        rows.append(
            {
                "variant": name,
                "flags": VARIANTS[name],
                "images_per_s_1_thread": sum(speeds) / len(speeds),
                **{k: metrics[k] for k in ("fid_productgan", "precision", "recall", "rarest_class_share")},
            }
        )
        print(f"scored: {name}", flush=True)

    base = rows[0]["fid_productgan"] if names[0] == "baseline (defaults)" else None
    print(f"\n{'variant':<26}{'img/s (1 thr)':>14}{'val fid':>9}{'vs base':>8}{'prec':>7}{'recall':>7}{'rarest':>7}")
    for r in rows:
        ratio = f"{r['fid_productgan'] / base:.2f}" if base else "-"
        print(
            f"{r['variant']:<26}{r['images_per_s_1_thread']:>14.0f}{r['fid_productgan']:>9.3f}{ratio:>8}"
            f"{r['precision']:>7.3f}{r['recall']:>7.3f}{r['rarest_class_share']:>7.3f}"
        )
    import torch

    from productgan.train.precision import cpu_has_native_bf16

    RESULTS.mkdir(exist_ok=True)
    machine = {"torch": torch.__version__, "native_bf16": cpu_has_native_bf16()}  # bfloat16 under auto when True
    (RESULTS / "ablation.json").write_text(
        json.dumps(
            {
                "benchmark": "ablation",
                "steps": args.steps,
                "n": args.n,
                "seed": args.seed,
                "machine": machine,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
