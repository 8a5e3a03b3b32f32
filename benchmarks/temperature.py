"""Latent temperature: one trained generator scored at several temperatures.

The temperature is the standard deviation of the latent vectors (1: as trained). Each row is
`productgan evaluate RUN --split S --n N --temperature T`, so the figures are what a user gets;
the real-data floor is computed once. Writes benchmarks/results/temperature-<split>.json.

    python benchmarks/temperature.py runs/quality/fmnist-32-10min --split val
    python benchmarks/temperature.py runs/quality/fmnist-32-10min --split test --temperatures 1 1.2 1.3
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

from productgan.generator.sampler import load_generator
from productgan.reports.evaluation import evaluate_run

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ("fid_productgan", "precision", "recall", "density", "coverage", "rarest_class_share")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "run",
        nargs="?",
        default="runs/quality/fmnist-32-10min",
        help="A run directory (default: the one benchmarks/quality.py leaves).",
    )
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.8, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    info = load_generator(args.run).info
    rows, floor = [], None
    print(f"{'temperature':>12}" + "".join(f"{k:>20}" for k in KEYS) + f"{'recall / floor':>16}", flush=True)
    for temperature in args.temperatures:
        report = evaluate_run(
            args.run,
            split=args.split,
            n=args.n,
            seed=args.seed,
            floor=floor is None,
            progress=False,
            temperature=temperature,
        )
        floor = floor or {k: report["real_data_floor"][k] for k in KEYS}
        row = {"temperature": temperature, **{k: report["metrics"][k] for k in KEYS}}
        row["recall_share_of_floor"] = row["recall"] / floor["recall"]
        rows.append(row)
        print(
            f"{temperature:>12g}"
            + "".join(f"{row[k]:>20.4f}" for k in KEYS)
            + f"{row['recall_share_of_floor']:>16.1%}",
            flush=True,
        )
    print(f"{'real floor':>12}" + "".join(f"{floor[k]:>20.4f}" for k in KEYS))

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"temperature-{args.split}.json"
    result = {
        "benchmark": "temperature",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": args.run,
        "images_seen": info.get("images_seen"),
        "step": info.get("step"),
        "split": args.split,
        "n": args.n,
        "seed": args.seed,
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "rows": rows,
        "real_data_floor": floor,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
