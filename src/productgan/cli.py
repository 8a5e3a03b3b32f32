"""The ``productgan`` command: one subcommand per job. Parses, validates, calls one function.

Options accept dashes or underscores (``--batch-size`` and ``--batch_size``); every field of the
run configuration is a flag (``--model.ngf 32``), and ``--config run.yaml`` /
``--print_config`` come from jsonargparse.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path
from typing import Literal, Optional

from jsonargparse import ArgumentParser

from productgan import run
from productgan.config import RunConfig, from_dict, preset_values
from productgan.data import prepare
from productgan.data.prepare import FASHION_MNIST
from productgan.errors import ProductganError, UsageError
from productgan.evaluate import evaluate_run, format_report, write_report
from productgan.explore import image_refs, read_photo, write_neighbours, write_projection, write_variants, write_walk
from productgan.export_onnx import CHECK_IMAGES, export_run_onnx
from productgan.files import check_writable, refuse_to_replace
from productgan.generate import generate_to_path
from productgan.latent import FRAME_FORMATS
from productgan.neighbours import NeighbourIndex
from productgan.projection import DEFAULT_RESTARTS, DEFAULT_STEPS
from productgan.report import build_report
from productgan.sampling import chosen_label, load_generator
from productgan.serve import serve
from productgan.serve.app import DEFAULT_MAX_IMAGES
from productgan.synth import MAX_ATTEMPTS, synth_run
from productgan.train import resume, train

COMMANDS = {
    "prepare": "pack a dataset once: decode, fit to the training size, split train / val / test",
    "train": "train a DCGAN and write a run directory",
    "generate": "make images from a run directory or an exported generator",
    "interpolate": "a walk between images: an animated GIF or WebP, a PNG strip, or the frames",
    "variants": "images near one you like ('more like this')",
    "project": "find the latent vector (and category) that reproduces a product photo",
    "neighbours": "the nearest training images of generated ones, with a flag for likely copies",
    "synth": "a labelled synthetic training set: images by category, checked, with a manifest",
    "evaluate": "score a run's generator on held-out images (productgan evaluator metrics)",
    "report": "write a self-contained HTML page of a run: curves, sample grids, evaluation",
    "export": "export a run's generator again from a checkpoint, or as ONNX (--format onnx)",
    "serve": "a web page and REST API that make images from a trained generator",
}


TEMPERATURE_HELP = (
    "Standard deviation of the latent vectors (1: as trained); above 1 gives more varied images, "
    "below 1 more typical ones."
)

# Short spellings of the switches people reach for most.
ALIASES = {
    "--conditional": "--model.conditional=true",
    "--no_conditional": "--model.conditional=false",
    "--augment": "--train.augment=true",
    "--no_augment": "--train.augment=false",
    "--tensorboard": "--train.tensorboard=true",
}


def _normalise(argv: list[str]) -> list[str]:
    """``--batch-size 8`` -> ``--batch_size 8``: dashes in option names become underscores."""
    out = []
    for token in argv:
        if token.startswith("--") and len(token) > 2:
            name, sep, value = token[2:].partition("=")
            token = "--" + name.replace("-", "_") + sep + value
            token = ALIASES.get(token, token)
        out.append(token)
    return out


def _parser(command: str) -> ArgumentParser:
    parser = ArgumentParser(
        prog=f"productgan {command}", description=COMMANDS[command], exit_on_error=False, default_env=False
    )
    parser.add_argument("--debug", action="store_true", help="Show tracebacks for errors.")
    return parser


def _train_parser() -> ArgumentParser:
    parser = _parser("train")
    parser.add_argument("--config", action="config", help="A YAML file of options (flags given after it win).")
    parser.add_argument(
        "--resume",
        type=str,
        default=None,
        help="Continue the run in this directory; --steps/--images/--minutes give the new total.",
    )
    parser.add_argument("--no_progress", action="store_true", help="No progress bar.")
    parser.add_class_arguments(RunConfig, nested_key=None)
    return parser


def _resume_parser() -> ArgumentParser:
    parser = _parser("train")
    parser.add_argument("--resume", type=str, required=True)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--no_progress", action="store_true")
    return parser


def _option(args: list[str], name: str) -> str | None:
    """The value given to ``--name`` in ``args`` (the last one wins), or None."""
    value = None
    for i, token in enumerate(args):
        if token == f"--{name}" and i + 1 < len(args):
            value = args[i + 1]
        elif token.startswith(f"--{name}="):
            value = token.partition("=")[2]
    return value


def _expand_preset(args: list[str]) -> tuple[list[str], str | None]:
    """``--preset NAME`` -> ``--config=<the preset as JSON>`` at the front of the line, so a
    --config file and every flag override the preset wherever they are written
    (``--data shop --preset products-64`` trains on shop), and its name is recorded in config.yaml.

    Without --preset or --config, the recipe measured best for the data goes first
    (``preset_for``); ``--preset none`` keeps the plain defaults. Returns the arguments and the
    name of a preset chosen by the data, if any."""
    chosen = None
    if _option(args, "preset") is None and _option(args, "config") is None and "--print_config" not in args:
        chosen = run.preset_for(_option(args, "data") or FASHION_MNIST, _option(args, "image_size"))
        args = ["--preset", chosen, *args] if chosen else args
    presets, rest, tokens = [], [], iter(args)
    for token in tokens:
        if token == "--preset" or token.startswith("--preset="):
            name = token.partition("=")[2] if "=" in token else next(tokens, "")
            if name != "none":
                presets.append("--config=" + json.dumps({**preset_values(name), "preset": name}))
        else:
            rest.append(token)
    return [*presets, *rest], chosen


def cmd_train(args: list[str]) -> int:
    if any(a == "--resume" or a.startswith("--resume=") for a in args) and not any(a in ("-h", "--help") for a in args):
        try:
            ns = _resume_parser().parse_args(args)
        except argparse.ArgumentError as error:
            raise UsageError(
                f"{error}; with --resume only --steps, --images and --minutes may be given, since the rest "
                f"comes from the run's config.yaml."
            )
        summary = resume(ns.resume, ns.steps, ns.images, ns.minutes, progress=not ns.no_progress)
    else:
        expanded, chosen = _expand_preset(args)
        ns = _train_parser().parse_args(expanded)
        if chosen:
            print(
                f"Recipe: preset {chosen}, the measured best for this data (docs/presets.md); flags given override "
                f"it, and --preset none trains the plain defaults.",
                file=sys.stderr,
            )
        values = ns.as_dict()
        for key in ("config", "resume", "no_progress", "debug", "__path__"):
            values.pop(key, None)
        summary = train(from_dict(RunConfig, values), progress=not ns.no_progress)
    # Stopped by a signal: saved and resumable, but unfinished, so a shell's `train && evaluate`
    # must not go on (under torchrun every rank says so, whichever got the signal).
    code = 128 + (summary.get("signal") or 2) if summary["stopped_by"] == "signal" else 0
    if not summary["is_main"]:
        return code  # under torchrun, rank 0 reports for all
    how = {
        "budget": "finished",
        "signal": "stopped by a signal",
        "early stop": "stopped early (validation no longer improving)",
    }[summary["stopped_by"]]
    print(
        f"Training {how} at step {summary['step']} ({summary['images_seen']:,} images, "
        f"{summary['elapsed_s'] / 60:.1f} min)."
    )
    print(f"Run directory:   {summary['run_dir']}")
    print(f"Sample grid:     {summary['samples']}")
    print(f"Generator:       {summary['export']}")
    if summary["stopped_by"] == "signal":
        print(f"Continue with:   productgan train --resume {summary['run_dir']} [--steps N]")
    return code


def cmd_prepare(args: list[str]) -> int:
    parser = _parser("prepare")
    parser.add_argument(
        "source",
        type=str,
        help="A folder of product images (one sub-folder per class), 'fashion-mnist', or a folder "
        "holding the Fashion-MNIST idx files.",
    )
    parser.add_argument("--out", type=str, required=True, help="Folder to write the packed dataset to.")
    parser.add_argument(
        "--size",
        "--image_size",
        dest="image_size",
        type=int,
        default=None,
        help="Training resolution: 32, 64, 128 or 256 (default 64 for image folders, 32 for Fashion-MNIST).",
    )
    parser.add_argument(
        "--split_seed",
        "--seed",
        dest="split_seed",
        type=int,
        default=None,
        help="Seed of the stratified split (default 0).",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing packed dataset at --out.")
    parser.add_argument(
        "--val_size",
        type=int,
        default=None,
        help="Fashion-MNIST: validation images taken from its train set (default 5000).",
    )
    parser.add_argument(
        "--split",
        type=str,
        default=None,
        help="Image folders: train,val,test fractions, stratified by class (default 0.8,0.1,0.1).",
    )
    parser.add_argument(
        "--channels", type=Optional[Literal[1, 3]], default=None, help="Image folders: 3 for RGB (default), 1 for grey."
    )
    parser.add_argument(
        "--fit",
        type=Optional[Literal["pad", "crop"]],
        default=None,
        help="Image folders: pad to a square with the background (default; keeps the whole product) or centre crop.",
    )
    parser.add_argument(
        "--background",
        type=str,
        default=None,
        help="Image folders: colour for padding and transparent pixels: white (default), black, "
        "grey, #RRGGBB or R,G,B.",
    )
    parser.add_argument(
        "--no_labels", action="store_true", help="Image folders: ignore sub-folders and put every image in one class."
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="Image folders: decoding processes (default: the CPUs, at most 8)."
    )
    parser.add_argument(
        "--licence",
        "--license",
        dest="licence",
        type=Optional[str],
        default=None,
        help="Image folders: the images' licence (such as 'CC BY 4.0'), recorded for the model cards of "
        "generators trained on them (default: not recorded; Fashion-MNIST records its own, MIT).",
    )
    parser.add_argument("--no_progress", action="store_true", help="No progress bar.")
    ns = parser.parse_args(args)
    out = prepare(
        ns.source,
        ns.out,
        image_size=ns.image_size,
        val_size=ns.val_size,
        seed=ns.split_seed,
        overwrite=ns.overwrite,
        split=ns.split,
        channels=ns.channels,
        fit=ns.fit,
        background=ns.background,
        labels=False if ns.no_labels else None,
        workers=ns.workers,
        progress=not ns.no_progress,
        licence=ns.licence,
    )
    _print_dataset_summary(out)
    return 0


def _print_dataset_summary(out: Path) -> None:
    info = json.loads((Path(out) / "dataset.json").read_text())
    meta, sizes = info["meta"], info["split_sizes"]
    shape = info["shape"]
    print(
        f"Packed dataset written to {out}: {shape[0]:,} images of {shape[3]}x{shape[2]}x{shape[1]}, "
        f"{len(info['class_names'])} class(es); train {sizes['train']:,} / val {sizes['val']:,} / "
        f"test {sizes['test']:,}."
    )
    skipped, dropped = meta.get("skipped") or [], meta.get("duplicates_dropped", 0)
    if skipped or dropped:
        print(
            f"Skipped {len(skipped)} file(s) or folder(s) and {dropped} exact duplicate(s); the reasons are listed in "
            f"{Path(out) / 'dataset.json'}."
        )
    if meta.get("empty_class_folders"):
        print(f"Class folders with no usable image (left out): {', '.join(meta['empty_class_folders'])}.")


def cmd_generate(args: list[str]) -> int:
    parser = _parser("generate")
    parser.add_argument("source", type=str, help="A run directory or an exported generator folder.")
    parser.add_argument("--n", type=int, default=64, help="Number of images.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random vectors: same seed, same images.")
    parser.add_argument(
        "--out",
        type=str,
        required=True,
        help="NAME.npy (uint8 N x C x H x W), NAME.png (one grid) or a folder (one PNG per image).",
    )
    parser.add_argument(
        "--size",
        type=Literal["native", "training"],
        default="native",
        help="'native' (the dataset's own size, 28x28 for Fashion-MNIST) or 'training'.",
    )
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda or cuda:N.")
    parser.add_argument(
        "--label",
        type=str,
        default=None,
        help="Product category (name or index) for a class-conditional generator; by default every class in turn.",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing output.")
    parser.add_argument("--temperature", type=float, default=1.0, help=TEMPERATURE_HELP)
    ns = parser.parse_args(args)
    sampler = load_generator(ns.source, device=ns.device, temperature=ns.temperature)
    path = generate_to_path(sampler, ns.out, n=ns.n, seed=ns.seed, size=ns.size, overwrite=ns.overwrite, label=ns.label)
    # The class's own name, whether it was given by index or in another case.
    label = chosen_label(ns.label)
    what = "" if label is None else f" of class {sampler.class_names[sampler.class_index(label)]!r}"
    print(f"Wrote {ns.n} images{what} to {path}")
    return 0


REF_HELP = (
    "An image: SEED:INDEX[:CLASS][@TEMPERATURE] (image INDEX of `generate --seed SEED`, e.g. 7:3 or "
    "7:3:Sneaker@0.8) or a saved latent vector PATH.npy[:CLASS]."
)


def cmd_interpolate(args: list[str]) -> int:
    parser = _parser("interpolate")
    parser.add_argument("source", type=str, help="A run directory or an exported generator folder.")
    parser.add_argument("--from", dest="start", type=str, required=True, help="The first image. " + REF_HELP)
    parser.add_argument("--to", dest="end", type=str, required=True, help="The last image (same forms as --from).")
    parser.add_argument("--via", type=str, default=None, nargs="+", help="Images to pass through on the way, in order.")
    parser.add_argument("--frames", type=int, default=24, help="Frames in the whole walk, the first and last included.")
    parser.add_argument(
        "--out",
        type=str,
        required=True,
        help=f"walk.gif or walk.webp (animated, looping), walk.png (a strip) or walk.npy (uint8 frames); "
        f"one of {', '.join(FRAME_FORMATS)}.",
    )
    parser.add_argument("--fps", type=float, default=12.0, help="Frames per second of an animation.")
    parser.add_argument("--scale", type=int, default=1, help="Enlarge each pixel this many times (1 to 16).")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda or cuda:N.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing output.")
    ns = parser.parse_args(args)
    sampler = load_generator(ns.source, device=ns.device)
    refs = [ns.start, *(ns.via or []), ns.end]
    path = write_walk(sampler, refs, ns.frames, ns.out, ns.fps, ns.scale, ns.overwrite)
    print(f"Wrote a walk of {ns.frames} frames through {' -> '.join(refs)} to {path}")
    return 0


def cmd_variants(args: list[str]) -> int:
    parser = _parser("variants")
    parser.add_argument("source", type=str, help="A run directory or an exported generator folder.")
    parser.add_argument("--of", dest="ref", type=str, required=True, help="The image to vary. " + REF_HELP)
    parser.add_argument("--n", type=int, default=16, help="Number of variants.")
    parser.add_argument(
        "--spread",
        type=float,
        default=0.3,
        help="How far from the image, above 0 and at most 1: 0.1 nearly the same, 0.3 a close family, "
        "1 unrelated images.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the variations: same seed, same variants.")
    parser.add_argument("--label", type=str, default=None, help="Make the variants in this category instead.")
    parser.add_argument(
        "--out", type=str, required=True, help="NAME.png (a grid), NAME.npy (uint8 N x C x H x W) or a folder of PNGs."
    )
    parser.add_argument("--save_latents", type=str, default=None, help="Also write their latent vectors (N x nz .npy).")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda or cuda:N.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing output.")
    ns = parser.parse_args(args)
    sampler = load_generator(ns.source, device=ns.device)
    path = write_variants(
        sampler, ns.ref, ns.n, ns.spread, ns.out, ns.seed, chosen_label(ns.label), ns.save_latents, ns.overwrite
    )
    print(f"Wrote {ns.n} variants of {ns.ref} (spread {ns.spread:g}, seed {ns.seed}) to {path}")
    return 0


def cmd_project(args: list[str]) -> int:
    parser = _parser("project")
    parser.add_argument("run_dir", type=str, help="A run directory (its data's fitting and evaluator are used).")
    parser.add_argument("photo", type=str, help="A product photo (any format Pillow reads).")
    parser.add_argument(
        "--out", type=str, required=True, help="Folder for the fitted photo, reconstruction and vector."
    )
    parser.add_argument("--label", type=str, default=None, help="The photo's category, if known (else each is tried).")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="Optimisation steps.")
    parser.add_argument(
        "--restarts", type=int, default=DEFAULT_RESTARTS, help="Random starts per category (the best is kept)."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the starting vectors.")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda or cuda:N.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an earlier projection in --out.")
    parser.add_argument("--no_progress", action="store_true", help="No progress bar.")
    ns = parser.parse_args(args)
    photo = read_photo(ns.photo)
    sampler = load_generator(ns.run_dir, device=ns.device)
    index = NeighbourIndex.from_run(ns.run_dir, progress=not ns.no_progress, device=ns.device)
    out, record = write_projection(
        sampler,
        index,
        photo,
        ns.out,
        chosen_label(ns.label),
        ns.steps,
        ns.restarts,
        ns.seed,
        ns.overwrite,
        progress=not ns.no_progress,
    )
    category = f" as {record['label']!r}" if record["label"] else ""
    print(
        f"Projected {ns.photo}{category}: feature distance {record['feature_distance']:.3f} against "
        f"{record['typical_real_distance']:.3f} between a held-out real image and its nearest training image "
        f"({record['verdict']})."
    )
    print(f"Wrote {out} (comparison.png, latent.npy); walk or vary it as {out / record['ref']}")
    return 0


def cmd_neighbours(args: list[str]) -> int:
    parser = _parser("neighbours")
    parser.add_argument("run_dir", type=str, help="A run directory (its training split and evaluator are used).")
    parser.add_argument("--of", dest="refs", type=str, default=None, nargs="+", help="Images to check. " + REF_HELP)
    parser.add_argument("--n", type=int, default=None, help="Without --of: the first N images of --seed (default 8).")
    parser.add_argument("--seed", type=int, default=0, help="Without --of: the seed of the images to check.")
    parser.add_argument("--k", type=int, default=3, help="Nearest training images shown per image.")
    parser.add_argument(
        "--out", type=str, required=True, help="NAME.png: the side-by-side sheet (NAME.json beside it)."
    )
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda or cuda:N.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing sheet.")
    parser.add_argument("--no_progress", action="store_true", help="No progress messages.")
    ns = parser.parse_args(args)
    refs = image_refs(ns.refs, ns.n, ns.seed)
    sampler = load_generator(ns.run_dir, device=ns.device)
    index = NeighbourIndex.from_run(ns.run_dir, progress=not ns.no_progress, device=ns.device)
    out, records = write_neighbours(sampler, index, refs, ns.out, ns.k, ns.overwrite)
    copies = [r["name"] for r in records if r["likely_copy"]]
    for record in records:
        nearest = record["neighbours"][0]
        flag = "  LIKELY COPY" if record["likely_copy"] else ""
        where = f"nearest training image {nearest['index']:>7}  distance {nearest['distance']:.3f}"
        print(f"{record['name']:>16}  {where}{flag}")
    print(
        f"{len(copies)} of {len(records)} image(s) closer to a training image than {index.threshold:.3f} "
        f"(features) or {index.pixel_threshold:.1f} (thumbnails), which 99.5% of held-out real images exceed; "
        f"sheet: {out}"
    )
    return 0


def cmd_synth(args: list[str]) -> int:
    parser = _parser("synth")
    parser.add_argument("run_dir", type=str, help="A run directory (its generator, training split and evaluator).")
    parser.add_argument(
        "--out", type=str, required=True, help="Folder for DIR/<category>/*.png, manifest.csv/.jsonl and synth.json."
    )
    parser.add_argument("--per_class", type=Optional[int], default=None, help="Images to make in each category.")
    parser.add_argument("--n", type=Optional[int], default=None, help="Images to make in all, split over categories.")
    parser.add_argument(
        "--balance",
        action="store_true",
        help="Top every category up to the count of the largest in the run's training split.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the latent vectors: same seed, same images.")
    parser.add_argument("--temperature", type=float, default=1.0, help=TEMPERATURE_HELP)
    parser.add_argument(
        "--packed", action="store_true", help="Also DIR/packed: a packed dataset (synthetic train, real val and test)."
    )
    parser.add_argument(
        "--no_guardrails",
        action="store_true",
        help="Keep every image: near-copies, off-category images and near-duplicates are only flagged.",
    )
    parser.add_argument(
        "--max_attempts",
        type=int,
        default=MAX_ATTEMPTS,
        help="Candidates drawn per image asked for, at most, before a category counts as impossible to fill.",
    )
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda or cuda:N.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an earlier synth output at --out.")
    parser.add_argument("--no_progress", action="store_true", help="No progress bar.")
    ns = parser.parse_args(args)
    summary = synth_run(
        ns.run_dir,
        ns.out,
        per_class=ns.per_class,
        n=ns.n,
        balance=ns.balance,
        seed=ns.seed,
        temperature=ns.temperature,
        guardrails=not ns.no_guardrails,
        packed=ns.packed,
        overwrite=ns.overwrite,
        max_attempts=ns.max_attempts,
        device=ns.device,
        progress=not ns.no_progress,
    )
    dropped = ", ".join(f"{reason} {count:,}" for reason, count in summary["dropped"].items())
    state = "guardrails on" if summary["guardrails"]["enabled"] else "guardrails OFF (flags only)"
    print(
        f"Kept {summary['kept']:,} of {summary['candidates']:,} candidates ({state}; dropped: {dropped}) "
        f"at {summary['kept_per_second']:,} kept images/s."
    )
    print(f"Wrote {summary['out']} (manifest.csv, synth.json{', packed/' if ns.packed else ''}).")
    return 0


def cmd_evaluate(args: list[str]) -> int:
    parser = _parser("evaluate")
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
    ns = parser.parse_args(args)
    # An output that cannot be written is found before the slow part, not after it.
    if ns.out:
        refuse_to_replace([Path(ns.out)], ns.overwrite)
        check_writable(ns.out)
    else:
        run_dir = run.require_run_dir(ns.run_dir)  # never a reports folder in a folder that is no run
        check_writable(run_dir / run.EVALUATION_DIR / f"{ns.split}-n{ns.n}-seed{ns.seed}.json")
    report = evaluate_run(
        ns.run_dir,
        split=ns.split,
        n=ns.n,
        seed=ns.seed,
        floor=not ns.no_floor,
        progress=not ns.no_progress,
        device=ns.device,
        cas=ns.cas,
        inception_weights=ns.inception_weights,
        temperature=ns.temperature,
    )
    # The default name tells the protocol and the generator apart, so no earlier report is replaced
    # by one of another kind (the same name means the same scores).
    at = "" if ns.temperature == 1.0 else f"-t{ns.temperature:g}"
    step = report["protocol"].get("generator_step")
    at += "" if step is None else f"-step{step}"
    out = ns.out or Path(ns.run_dir) / run.EVALUATION_DIR / f"{ns.split}-n{ns.n}-seed{ns.seed}{at}.json"
    print(format_report(report))
    print(f"\nReport written to {write_report(report, out, run_dir=ns.run_dir)}")
    return 0


def cmd_report(args: list[str]) -> int:
    parser = _parser("report")
    parser.add_argument("run_dir", type=str, help="A run directory.")
    parser.add_argument(
        "--out",
        type=str,
        default=None,
        help="HTML path (default RUN_DIR/report/index.html, rebuilt in place); the figures go beside it.",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace existing files at --out.")
    ns = parser.parse_args(args)
    print(f"Report written to {build_report(ns.run_dir, ns.out, ns.overwrite)}")
    return 0


def cmd_export(args: list[str]) -> int:
    parser = _parser("export")
    parser.add_argument("run_dir", type=str, help="A run directory with checkpoints/last.pt.")
    parser.add_argument(
        "--checkpoint",
        type=Optional[Literal["last", "best"]],
        default=None,
        help="last.pt (the default for safetensors), or best.pt (the best validation score; needs "
        "--train.eval-every). It replaces RUN_DIR/generator/ as a whole, an earlier model.onnx included.",
    )
    parser.add_argument(
        "--format",
        type=Literal["safetensors", "onnx"],
        default="safetensors",
        help="safetensors: write RUN_DIR/generator/ from the checkpoint; onnx: add model.onnx (runs with "
        "onnxruntime alone) to the generator there, exported first from --checkpoint when one is given.",
    )
    parser.add_argument(
        "--onnx_output",
        type=Optional[Literal["uint8", "float"]],
        default=None,
        help="What model.onnx gives: uint8 images at the dataset's native size (default), or float at the "
        "training size in the generator's pixel range.",
    )
    ns = parser.parse_args(args)
    if ns.format == "safetensors" and ns.onnx_output is not None:
        raise UsageError("--onnx-output applies to --format onnx; add --format onnx, or drop it.")
    if ns.format == "safetensors" or ns.checkpoint is not None:
        print(f"Exported generator to {run.export_run(ns.run_dir, ns.checkpoint or 'last')}")
    if ns.format == "onnx":
        written = export_run_onnx(ns.run_dir, ns.onnx_output or "uint8")
        channels, height, width = written.shape
        what = f"{width}x{height}, {channels} channel{'s' if channels > 1 else ''}"
        print(
            f"Exported ONNX generator to {written.path} (opset {written.opset}; output {written.output} images "
            f"of {what}; largest difference from PyTorch on {CHECK_IMAGES} images: {written.max_difference:g})"
        )
    return 0


def cmd_serve(args: list[str]) -> int:
    parser = _parser("serve")
    parser.add_argument("source", type=str, help="A run directory or an exported generator folder.")
    parser.add_argument(
        "--host", type=str, default="127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda or cuda:N.")
    parser.add_argument(
        "--max_images", type=int, default=DEFAULT_MAX_IMAGES, help="The most images one request may ask for."
    )
    parser.add_argument(
        "--workers",
        type=Optional[int],
        default=None,
        help="Image requests made at a time (default: one per CPU, at most 4).",
    )
    parser.add_argument(
        "--queue",
        type=Optional[int],
        default=None,
        help="Image requests that may wait for a worker (default 8); more get 503 and Retry-After at once.",
    )
    parser.add_argument(
        "--request_timeout",
        type=Optional[float],
        default=None,
        help="Seconds a request has to arrive whole (default 10); a slower client's connection is closed.",
    )
    parser.add_argument(
        "--cors_origin",
        type=str,
        action="append",
        default=[],
        help="A web origin whose pages may call the API (https://shop.example.com); repeat for more. None by default.",
    )
    parser.add_argument(
        "--root_path", type=str, default="", help="The path prefix a proxy serves the server under, as /gan."
    )
    ns = parser.parse_args(args)
    serve(
        ns.source,
        host=ns.host,
        port=ns.port,
        device=ns.device,
        max_images=ns.max_images,
        workers=ns.workers,
        queue=ns.queue,
        request_timeout=ns.request_timeout,
        cors_origins=ns.cors_origin,
        root_path=ns.root_path,
    )
    return 0


HANDLERS = {
    "prepare": cmd_prepare,
    "train": cmd_train,
    "generate": cmd_generate,
    "interpolate": cmd_interpolate,
    "variants": cmd_variants,
    "project": cmd_project,
    "neighbours": cmd_neighbours,
    "synth": cmd_synth,
    "evaluate": cmd_evaluate,
    "report": cmd_report,
    "export": cmd_export,
    "serve": cmd_serve,
}


def _usage() -> str:
    lines = ["usage: productgan COMMAND [options]   (productgan COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<10}{text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, args = argv[0], _normalise(argv[1:])
    debug = "--debug" in args or os.environ.get("PRODUCTGAN_DEBUG") == "1"
    if command not in HANDLERS:
        print(f"productgan: error: unknown command {command!r}; choose one of {', '.join(HANDLERS)}.", file=sys.stderr)
        return 2
    try:
        return HANDLERS[command](args)
    except ProductganError as error:
        if debug:
            raise
        print(f"productgan {command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except argparse.ArgumentError as error:
        if debug:
            raise
        message = " ".join(str(error).split())
        print(f"productgan {command}: error: {message}. See `productgan {command} --help`.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"productgan {command}: interrupted.", file=sys.stderr)
        return 130
    except OSError as error:  # a path that cannot be written or read: a full disk, no permission, no folder
        if debug:
            raise
        print(f"productgan {command}: error: {describe_os_error(error)}", file=sys.stderr)
        return 1


def describe_os_error(error: OSError) -> str:
    """An operating-system error as one sentence with the path and what to do about it."""
    where = f" ({error.filename})" if error.filename else ""
    reason = (error.strerror or str(error)).rstrip(".")
    full = error.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(error)
    fix = (
        "free some space on that disk and run the command again; earlier results are kept"
        if full
        else "check the permissions"
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
        else "check the path"
    )
    return f"{reason}{where}; {fix}."


if __name__ == "__main__":
    sys.exit(main())
