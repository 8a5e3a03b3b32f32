"""Variants of the fmnist-32 preset under the same wall-clock budget: how a change trades speed
(images seen in the minutes) against quality.

Each variant trains `--preset fmnist-32` plus its flags for M minutes with every thread of this
machine, one variant at a time, from the same seed; its exported (EMA) generator is then scored on
the validation split with N images. The test split stays untouched, for benchmarks/quality.py.
Prints a table and writes benchmarks/results/preset_variants.json (variants scored by an earlier
call are kept unless run again).

    python benchmarks/preset_variants.py --minutes 10 --variants "D width 16"
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ("fid_productgan", "precision", "recall", "rarest_class_share")

VARIANTS = {
    "fmnist-32": [],
    "D width 32 (the preset before)": ["--model.ndf", "32"],
    "D width 16, G width 48": ["--model.ndf", "16", "--model.ngf", "48"],
    "D width 16, R1 0.1": ["--model.ndf", "16", "--loss.r1-gamma", "0.1"],
    "D width 16, batch 256, lr 6e-4": ["--model.ndf", "16", "--batch-size", "256", "--optim.lr-g", "6e-4",
                                       "--optim.lr-d", "6e-4"],
    "D width 16, batch 64, lr 2e-4": ["--model.ndf", "16", "--batch-size", "64", "--optim.lr-g", "2e-4",
                                      "--optim.lr-d", "2e-4"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="runs/preset-variants")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()

    from productgan.evaluate import evaluate_run

    path = RESULTS / "preset_variants.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    rows = {r["variant"]: r for r in previous.get("rows", []) if previous.get("minutes") == args.minutes}
    for name in args.variants:
        folder = Path(args.work) / f"{''.join(c if c.isalnum() else '-' for c in name)}-{args.minutes:g}min"
        cmd = [sys.executable, "-m", "productgan", "train", "--preset", "fmnist-32", *VARIANTS[name],
               "--out", str(folder), "--minutes", str(args.minutes), "--seed", str(args.seed),
               "--train.log-every", "100", "--no-progress"]
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-2000:]}")
        report = evaluate_run(folder, split="val", n=args.n, seed=args.seed, floor=False, progress=False)
        exported = json.loads((folder / "generator" / "config.json").read_text())
        rows[name] = {"variant": name, "flags": VARIANTS[name], "images_seen": exported["images_seen"],
                      **{k: report["metrics"][k] for k in KEYS}}
        print(f"{name}: {exported['images_seen']:,} images, "
              + ", ".join(f"{k} {report['metrics'][k]:.4f}" for k in KEYS), flush=True)

    print(f"\n{'variant (' + format(args.minutes, 'g') + ' min)':<34}{'images':>10}{'val fid':>9}{'prec':>7}"
          f"{'recall':>7}{'rarest':>7}")
    for r in rows.values():
        print(f"{r['variant']:<34}{r['images_seen']:>10,}{r['fid_productgan']:>9.3f}{r['precision']:>7.3f}"
              f"{r['recall']:>7.3f}{r['rarest_class_share']:>7.3f}")
    RESULTS.mkdir(exist_ok=True)
    import torch

    path.write_text(json.dumps({"benchmark": "preset_variants", "minutes": args.minutes, "n": args.n,
                                "seed": args.seed, "threads": torch.get_num_threads(),
                                "rows": list(rows.values())}, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
