"""The weight-averaged generator's BatchNorm statistics: copied from the live generator against
measured on its own samples, on the same weights.

For each run, the generator of its last checkpoint is exported twice into copies of the run, once
with the statistics the checkpoint holds (copies of the live generator's, as exports had them
before) and once as ``productgan export`` now makes it (``sampling.measure_statistics``); both are
scored on the test split the same way. Prints a table and writes
benchmarks/results/ema_statistics-<machine>.json.

    python benchmarks/ema_statistics.py runs/00000-fashion-mnist-32 runs/00001-fashion-mnist-32
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from productgan.checkpoint import load_checkpoint
from productgan.generator.export import write_export as export_generator
from productgan.machine import machine_label
from productgan.reports.evaluation import evaluate_run
from productgan.run import GENERATOR_DIR, LAST_CHECKPOINT, checkpoint_generator, export_checkpoint

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("fid_productgan", "precision", "recall", "coverage")


def export_as_kept(state: dict, run_dir: Path) -> None:
    """The checkpoint's weight average exported with the statistics it holds."""
    export_generator(checkpoint_generator(state), run_dir / GENERATOR_DIR, state["export_info"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for source in args.runs:
            state = load_checkpoint(source / LAST_CHECKPOINT)
            if state.get("G_ema") is None:
                raise SystemExit(f"{source} kept no weight average (--train.ema false); nothing to compare.")
            row = {"run": str(source), "step": state["step"], "images_seen": state["images_seen"]}
            for name, export in (("copied", export_as_kept), ("measured", export_checkpoint)):
                copy = Path(work) / name
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(source, copy, ignore=shutil.ignore_patterns("samples", "evaluation"))
                export(state, copy)
                metrics = evaluate_run(copy, "test", args.n, floor=False, progress=False)["metrics"]
                row[name] = {k: metrics[k] for k in METRICS}
                print(source.name, name, "  ".join(f"{k} {metrics[k]:.4f}" for k in METRICS), flush=True)
            rows.append(row)
    print(f"\n| run (images seen) | statistics | {' | '.join(METRICS)} |\n|---|---|{'---|' * len(METRICS)}")
    for row in rows:
        for name in ("copied", "measured"):
            values = " | ".join(f"{row[name][k]:.3f}" for k in METRICS)
            print(f"| {Path(row['run']).name} ({row['images_seen']:,}) | {name} | {values} |")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"ema_statistics-{machine_label()}.json"
    path.write_text(json.dumps({"benchmark": "ema_statistics", "n": args.n, "runs": rows}, indent=2) + "\n")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
