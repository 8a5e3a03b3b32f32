"""The commands that judge a run: ``evaluate`` (scores on held-out images, a JSON report) and
``report`` (the run as one HTML page)."""

from __future__ import annotations

from typing import Literal

from jsonargparse import ArgumentParser

from productgan import run
from productgan.cli.common import TEMPERATURE_HELP, Command, call, new_parser, parse
from productgan.files import check_writable, output_path, refuse_to_replace
from productgan.reports.evaluation import evaluate_run, format_report, write_report
from productgan.reports.html import build_report

EVALUATE = "score a run's generator on held-out images (productgan evaluator metrics)"
REPORT = "write a self-contained HTML page of a run: curves, sample grids, evaluation"


def _evaluate_parser() -> ArgumentParser:
    parser = new_parser("evaluate", EVALUATE)
    parser.add_argument("run_dir", type=str, help="A run directory with an exported generator.")
    parser.add_argument(
        "--split",
        type=Literal["train", "val", "test"],
        default="test",
        help="Reference images: test for the final score, val while choosing settings.",
    )
    parser.add_argument("--n", type=int, default=10_000, help="Generated images (and real ones for the floor).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=str,
        default=None,
        help="JSON report path (default RUN_DIR/evaluation/<split>-n<N>-seed<S>-step<K>.json, K the "
        "generator's training step).",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing report at --out.")
    parser.add_argument("--no_floor", action="store_true", help="Skip the real-data floor.")
    parser.add_argument(
        "--cas",
        action="store_true",
        help="Also the classification accuracy score (class-conditional generators): a classifier "
        "trained on N generated images, tested on the split, beside one trained on N real images.",
    )
    parser.add_argument(
        "--inception_weights",
        type=str,
        default=None,
        help="The FID Inception-v3 weights file (pt_inception-2015-12-05-6726825d.pth): adds the "
        "standard FID and KID (slow on a CPU: about 0.1 s per image).",
    )
    parser.add_argument("--device", type=str, default="cpu")
    parser.add_argument("--temperature", type=float, default=1.0, help=TEMPERATURE_HELP)
    parser.add_argument("--no_progress", action="store_true")
    return parser


def run_evaluate(args: list[str]) -> int:
    with parse(_evaluate_parser(), args) as options:
        # An output that cannot be written is found before the slow part, not after it. The
        # default name is never refused: the same name means the same scores.
        out, overwrite = options.out, options.overwrite
        if out is not None:  # '' is refused, not read as the default
            out = output_path(out)
            refuse_to_replace([out], overwrite)
            check_writable(out)
        else:  # never a reports folder in a folder that is no run
            check_writable(call(run.evaluation_report_path, options, run_dir=run.require_run_dir(options.run_dir)))
        report = call(evaluate_run, options, source=options.run_dir)
        step = report["protocol"].get("generator_step")
        out = out or call(run.evaluation_report_path, options, step=step)
        print(format_report(report))
        print(f"\nReport written to {call(write_report, options, report=report, path=out)}")
    return 0


def _report_parser() -> ArgumentParser:
    parser = new_parser("report", REPORT)
    parser.add_argument("run_dir", type=str, help="A run directory.")
    parser.add_argument(
        "--out",
        type=str,
        default=None,
        help="HTML path (default RUN_DIR/report/index.html, rebuilt in place); the figures go beside it.",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace existing files at --out.")
    return parser


def run_report(args: list[str]) -> int:
    with parse(_report_parser(), args) as options:
        out = None if options.out is None else output_path(options.out)  # '' is refused, not read as the default
        print(f"Report written to {call(build_report, options, out=out)}")
    return 0


COMMANDS = [Command("evaluate", EVALUATE, run_evaluate), Command("report", REPORT, run_report)]
