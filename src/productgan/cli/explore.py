"""The commands that explore a generator's latent space and what it learned: ``interpolate``,
``variants``, ``project``, ``neighbours``, ``synth`` (a checked synthetic training set) and
``uplift`` (whether such a set helps a classifier)."""

from __future__ import annotations

from functools import partial
from typing import Literal, Optional

from jsonargparse import ArgumentParser

from productgan.cli.common import (
    BACKGROUND_HELP,
    CROP_HELP,
    REF_HELP,
    SOURCE_HELP,
    TEMPERATURE_HELP,
    Command,
    add_shared_options,
    call,
    new_parser,
    parse,
)
from productgan.explore.commands import (
    image_refs,
    read_photo,
    write_neighbours,
    write_projection,
    write_variants,
    write_walk,
)
from productgan.explore.latent import FRAME_FORMATS
from productgan.explore.names import DEFAULT_SPREAD
from productgan.explore.neighbours import NeighbourIndex
from productgan.explore.projection import DEFAULT_RESTARTS, DEFAULT_STEPS
from productgan.explore.synth import MAX_ATTEMPTS, synth_run
from productgan.explore.uplift import DEFAULT_RECIPE, uplift
from productgan.generator.latents import chosen_label
from productgan.generator.sampler import load_generator

INTERPOLATE = "a walk between images: an animated GIF or WebP, a PNG strip, or the frames"
VARIANTS = "images near one you like ('more like this')"
PROJECT = "find the latent vector (and category) that reproduces a product photo"
NEIGHBOURS = "the nearest training images of generated ones, with a flag for likely copies"
SYNTH = "a labelled synthetic training set: images by category, checked, with a manifest"
UPLIFT = "does a synth set help a classifier? per-category verdicts on the validation split"


def _interpolate_parser() -> ArgumentParser:
    parser = new_parser("interpolate", INTERPOLATE)
    parser.add_argument("source", type=str, help=SOURCE_HELP)
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
    add_shared_options(parser, overwrite="Replace an existing output.")
    return parser


def run_interpolate(args: list[str]) -> int:
    with parse(_interpolate_parser(), args) as options:
        sampler = call(load_generator, options)
        refs = [options.start, *(options.via or []), options.end]
        path = call(write_walk, options, sampler=sampler, refs=refs)
        print(f"Wrote a walk of {options.frames} frames through {' -> '.join(refs)} to {path}")
    return 0


def _variants_parser() -> ArgumentParser:
    parser = new_parser("variants", VARIANTS)
    parser.add_argument("source", type=str, help=SOURCE_HELP)
    parser.add_argument("--of", dest="ref", type=str, required=True, help="The image to vary. " + REF_HELP)
    parser.add_argument("--n", type=int, default=16, help="Number of variants.")
    parser.add_argument(
        "--spread",
        type=float,
        default=DEFAULT_SPREAD,
        help="How far from the image, above 0 and at most 1: 0.1 nearly the same, 0.5 (the default) other "
        "products of its kind, 1 unrelated images.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the variations: same seed, same variants.")
    parser.add_argument("--label", type=str, default=None, help="Make the variants in this category instead.")
    parser.add_argument(
        "--out", type=str, required=True, help="NAME.png (a grid), NAME.npy (uint8 N x C x H x W) or a folder of PNGs."
    )
    parser.add_argument("--save_latents", type=str, default=None, help="Also write their latent vectors (N x nz .npy).")
    add_shared_options(parser, overwrite="Replace an existing output.")
    return parser


def run_variants(args: list[str]) -> int:
    with parse(_variants_parser(), args) as options:
        sampler = call(load_generator, options)
        path = call(write_variants, options, sampler=sampler, label=chosen_label(options.label))
        print(f"Wrote {options.n} variants of {options.ref} (spread {options.spread:g}, seed {options.seed}) to {path}")
    return 0


def _project_parser() -> ArgumentParser:
    parser = new_parser("project", PROJECT)
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
    add_shared_options(parser, overwrite="Replace an earlier projection in --out.", progress="No progress bar.")
    return parser


def run_project(args: list[str]) -> int:
    with parse(_project_parser(), args) as options:
        photo = read_photo(options.photo)
        sampler = call(load_generator, options, source=options.run_dir)
        index = partial(call, NeighbourIndex.from_run, options)  # built once every input is judged
        out, record = call(
            write_projection, options, sampler=sampler, index=index, photo=photo, label=chosen_label(options.label)
        )
        category = f" as {record['label']!r}" if record["label"] else ""
        print(
            f"Projected {options.photo}{category}: feature distance {record['feature_distance']:.3f} against "
            f"{record['typical_real_distance']:.3f} between a held-out real image and its nearest training image."
        )
        print(record["verdict"])
        print(f"Wrote {out} (comparison.png, latent.npy); walk or vary it as {out / record['ref']}")
    return 0


def _neighbours_parser() -> ArgumentParser:
    parser = new_parser("neighbours", NEIGHBOURS)
    parser.add_argument("run_dir", type=str, help="A run directory (its training split and evaluator are used).")
    parser.add_argument("--of", dest="refs", type=str, default=None, nargs="+", help="Images to check. " + REF_HELP)
    parser.add_argument("--n", type=int, default=None, help="Without --of: the first N images of --seed (default 8).")
    parser.add_argument("--seed", type=int, default=0, help="Without --of: the seed of the images to check.")
    parser.add_argument("--k", type=int, default=3, help="Nearest training images shown per image.")
    parser.add_argument(
        "--out", type=str, required=True, help="NAME.png: the side-by-side sheet (NAME.json beside it)."
    )
    add_shared_options(parser, overwrite="Replace an existing sheet.", progress="No progress messages.")
    return parser


def run_neighbours(args: list[str]) -> int:
    with parse(_neighbours_parser(), args) as options:
        refs = call(image_refs, options)
        sampler = call(load_generator, options, source=options.run_dir)
        index = partial(call, NeighbourIndex.from_run, options)  # built once every input is judged
        out, summary = call(write_neighbours, options, sampler=sampler, index=index, refs=refs)
    records = summary["images"]
    copies = [r["name"] for r in records if r["likely_copy"]]
    for record in records:
        nearest = record["neighbours"][0]
        flag = "  LIKELY COPY" if record["likely_copy"] else ""
        where = f"nearest training image {nearest['index']:>7}  distance {nearest['distance']:.3f}"
        print(f"{record['name']:>16}  {where}{flag}")
    print(
        f"{len(copies)} of {len(records)} image(s) closer to a training image than {summary['copy_threshold']:.3f} "
        f"(features) or {summary['thumbnail_threshold']:.1f} (thumbnails), which 99.5% of held-out real images exceed; "
        f"sheet: {out}"
    )
    return 0


def _synth_parser() -> ArgumentParser:
    parser = new_parser("synth", SYNTH)
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
    whole = " The PNGs only: --packed stays whole and opaque, as the generator made it."
    parser.add_argument("--crop", type=Literal["none", "product"], default="none", help=CROP_HELP + whole)
    parser.add_argument(
        "--background", type=Literal["keep", "transparent"], default="keep", help=BACKGROUND_HELP + whole
    )
    add_shared_options(
        parser,
        overwrite="Replace an earlier synth output at --out (never a folder holding files synth did not write).",
        progress="No progress bar.",
    )
    return parser


def run_synth(args: list[str]) -> int:
    with parse(_synth_parser(), args) as options:
        summary = call(synth_run, options)
    dropped = ", ".join(f"{reason} {count:,}" for reason, count in summary["dropped"].items())
    state = "guardrails on" if summary["guardrails"]["enabled"] else "guardrails OFF (flags only)"
    print(
        f"Kept {summary['kept']:,} of {summary['candidates']:,} candidates ({state}; dropped: {dropped}) "
        f"at {summary['kept_per_second']:,} kept images/s."
    )
    print(f"Wrote {summary['out']} (manifest.csv, synth.json{', packed/' if options.packed else ''}).")
    return 0


def _uplift_parser() -> ArgumentParser:
    parser = new_parser("uplift", UPLIFT)
    parser.add_argument("run_dir", type=str, help="A run directory (its training and validation splits).")
    parser.add_argument("--synth", type=str, required=True, help="A folder productgan synth made from this run.")
    parser.add_argument(
        "--out", type=Optional[str], default=None, help="The JSON report (default RUN/uplift/<synth folder>.json)."
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="Classifier pairs trained (2 to 10); more, narrower intervals."
    )
    parser.add_argument(
        "--steps",
        type=Optional[int],
        default=None,
        help="SGD steps of each classifier (default: two passes, 300-3,000).",
    )
    parser.add_argument(
        "--recipe",
        type=Literal["auto", "soft", "half", "pooled", "bridged"],
        default=DEFAULT_RECIPE,
        help="How the synthetic images join training (docs/synth.md); auto: soft for even categories, else half.",
    )
    add_shared_options(
        parser, device=False, overwrite="Replace an earlier report at --out.", progress="No progress bar."
    )
    return parser


def run_uplift(args: list[str]) -> int:
    with parse(_uplift_parser(), args) as options:
        report = call(uplift, options)
    print(f"uplift of {report['synth']}: the {report['recipe']} recipe ({report['recipe_reason']}),")
    print(f"{report['seeds']} seeds of {report['steps']} steps,", end=" ")
    print(f"scored on {report['scored_on']}; recall in %, mean over seeds, difference ± 95% interval:")
    print(
        f"  {'category':<16} {'real':>6} {'synth':>6} {'real only':>10} {'with synth':>11} {'difference':>14}  verdict"
    )
    for name, row in report["categories"].items():
        diff = row["difference"]
        if diff is None:
            print(f"  {name[:16]:<16} {row['real_images']:>6,} {row['synthetic_images']:>6,}  no validation images")
            continue
        print(
            f"  {name[:16]:<16} {row['real_images']:>6,} {row['synthetic_images']:>6,} "
            f"{100 * row['recall_real']['mean']:>10.1f} {100 * row['recall_with_synthetic']['mean']:>11.1f} "
            f"{100 * diff['mean']:>+7.1f} ± {100 * (diff['ci95'] or 0):>4.1f}  {row['verdict']}"
        )
    accuracy = report["accuracy"]
    print(
        f"  {'accuracy':<16} {'':>6} {'':>6} {100 * accuracy['real']['mean']:>10.1f} "
        f"{100 * accuracy['with_synthetic']['mean']:>11.1f} {100 * accuracy['difference']['mean']:>+7.1f} ± "
        f"{100 * (accuracy['difference']['ci95'] or 0):>4.1f}  {accuracy['verdict']}"
    )
    for line in report["recommendation"]:
        print(line)
    print(f"Wrote {report['out']} ({report['seconds']:.0f} s).")
    return 0


COMMANDS = [
    Command("interpolate", INTERPOLATE, run_interpolate),
    Command("variants", VARIANTS, run_variants),
    Command("project", PROJECT, run_project),
    Command("neighbours", NEIGHBOURS, run_neighbours),
    Command("synth", SYNTH, run_synth),
    Command("uplift", UPLIFT, run_uplift),
]
