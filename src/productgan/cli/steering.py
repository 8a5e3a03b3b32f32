"""The commands that steer a generator: ``directions`` (measure its sliders once), ``colourways``
(one product in other colours) and ``steer`` (one product along one slider)."""

from __future__ import annotations

from jsonargparse import ArgumentParser

from productgan.cli.common import REF_HELP, SOURCE_HELP, Command, add_shared_options, call, new_parser, parse
from productgan.explore.colourways import MAX_ROUNDS, ROUNDS
from productgan.explore.steering import direction_table, measure_directions, write_colourways, write_strip
from productgan.generator.directions import DIRECTIONS_FILE
from productgan.generator.sampler import load_generator

DIRECTIONS = "measure a generator's sliders (colour, size, shape, its own directions) and store them"
COLOURWAYS = "the same product in other colours: navy,#c0392b,olive"
STEER = "one product along one slider, -2 to +2: a strip, a .npy or a folder"


def _directions_parser() -> ArgumentParser:
    parser = new_parser("directions", DIRECTIONS)
    parser.add_argument("source", type=str, help="A run directory (its evaluator checks the category) or an export.")
    parser.add_argument("--samples", type=int, default=4000, help="Images the directions are fitted on.")
    parser.add_argument("--probe", type=int, default=200, help="Images each direction's effects are measured on.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the images drawn: same seed, same directions.")
    add_shared_options(parser, progress="No progress bar.")
    return parser


def run_directions(args: list[str]) -> int:
    with parse(_directions_parser(), args) as options:
        path, directions = call(measure_directions, options, progress=not options.no_progress)
        print("\n".join(direction_table(directions)))
        print(f"Wrote {len(directions.directions)} directions to {path}; edit with `generate --edit size=+1,hue=-0.5`.")
    return 0


def _product_parser(name: str, help: str, out_help: str) -> ArgumentParser:
    """The parser of a command that makes images of one product: its source, --of and --out."""
    parser = new_parser(name, help)
    parser.add_argument("source", type=str, help=SOURCE_HELP + f" Its {DIRECTIONS_FILE} is needed: run `directions`.")
    parser.add_argument("--of", dest="ref", type=str, required=True, help="The product. " + REF_HELP)
    parser.add_argument("--out", type=str, required=True, help=out_help)
    add_shared_options(parser, overwrite="Replace an existing output.")
    return parser


def _colourways_parser() -> ArgumentParser:
    parser = _product_parser(
        "colourways",
        COLOURWAYS,
        "NAME.png (a strip, the product first), NAME.npy (uint8 N x C x H x W) or a folder of PNGs "
        "with colourways.json (each image's name and the colour reached).",
    )
    parser.add_argument(
        "--colours",
        type=str,
        required=True,
        help="Comma-separated colours: names (navy, olive, burgundy; docs/explore.md lists them) or #RRGGBB.",
    )
    parser.add_argument(
        "--rounds", type=int, default=ROUNDS, help=f"Rounds of measuring and stepping (1 to {MAX_ROUNDS})."
    )
    return parser


def run_colourways(args: list[str]) -> int:
    with parse(_colourways_parser(), args) as options:
        sampler = call(load_generator, options)
        path, records = call(write_colourways, options, sampler=sampler)
        for record in records:
            reached = (
                "no product"
                if record["ciede2000"] is None
                else f"{record['reached']} (CIEDE2000 {record['ciede2000']:.1f})"
            )
            print(f"{record['colour']}: reached {reached}")
        print(f"Wrote {len(records)} colourways of {options.ref} to {path}")
    return 0


def _steer_parser() -> ArgumentParser:
    parser = _product_parser(
        "steer",
        STEER,
        "NAME.png (a strip), NAME.npy (uint8 N x C x H x W) or a folder of PNGs with strip.json (each image's name).",
    )
    parser.add_argument(
        "--along", type=str, required=True, help="A direction: lightness, hue, saturation, size, aspect, main1..."
    )
    parser.add_argument(
        "--amounts", type=float, nargs="+", default=None, help="The steps, space-separated (default -2 -1 0 1 2)."
    )
    return parser


def run_steer(args: list[str]) -> int:
    with parse(_steer_parser(), args) as options:
        sampler = call(load_generator, options)
        path = call(write_strip, options, sampler=sampler)
        print(f"Wrote {options.ref} along {options.along} to {path}")
    return 0


COMMANDS = [
    Command("directions", DIRECTIONS, run_directions),
    Command("colourways", COLOURWAYS, run_colourways),
    Command("steer", STEER, run_steer),
]
