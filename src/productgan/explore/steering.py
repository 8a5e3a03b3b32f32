"""The steering commands: ``directions`` (measure and store a run's directions), ``colourways``
(one product in other colours) and ``steer`` (one product along one slider, -2...+2). Each checks
its inputs before any work, writes whole or not at all, and never replaces an earlier output
without ``overwrite`` (``files.Outputs``).

Typical use::

    sampler = load_generator("runs/00000-products-64")        # after `productgan directions RUN`
    ways = colourways(sampler, point(sampler, "7:3:Sneaker"), parse_colours("navy,#c0392b"))
    strip = slider_images(sampler, point(sampler, "7:3:Sneaker"), "size")
    images = sampler(n=16, seed=7, edit="size=+1,hue=-0.5")
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from productgan.data.colour import parse_colours
from productgan.errors import UsageError
from productgan.evaluator import Evaluator
from productgan.evaluator.inference import class_probabilities
from productgan.evaluator.training import CLASSES_TASK
from productgan.explore.colourways import ROUNDS, colourways
from productgan.explore.directions import fit_directions
from productgan.explore.latent import render
from productgan.explore.names import Point, edited_name, point
from productgan.files import FolderKind, Outputs, output_path
from productgan.generator.directions import Directions, check_amount
from productgan.generator.export import find_export
from productgan.generator.grid import make_grid, save_png, to_pil
from productgan.generator.sampler import Sampler, load_generator
from productgan.run import CONFIG_FILE, load_run_config, locked, open_recorded_dataset

COLOURWAYS = FolderKind("colourways", r"colourway-\d{2,}-[0-9a-f]{6}\.png|colourways\.json")
STRIP = FolderKind("a slider strip", r"step-\d{2,}\.png|strip\.json")
DEFAULT_AMOUNTS = (-2.0, -1.0, 0.0, 1.0, 2.0)
MAX_STRIP = 41


def measure_directions(
    source: str | os.PathLike,
    samples: int = 4000,
    probe: int = 200,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[Path, Directions]:
    """Measure the directions of a run's generator (or an export folder's) and store them beside
    its weights as directions.json; a run's evaluator (loaded, or trained once) checks the category."""
    folder = find_export(source)
    sampler = load_generator(folder, device=device)
    classify = None
    run_dir = Path(source) if (Path(source) / CONFIG_FILE).is_file() else None
    if run_dir is not None and sampler.conditional:
        config = load_run_config(run_dir)
        evaluator = Evaluator(config.data, open_recorded_dataset(config, run_dir), progress=progress, device=device)
        if evaluator.info.get("task", CLASSES_TASK) == CLASSES_TASK:
            classify = _classifier(evaluator)
    directions = fit_directions(sampler, samples, probe, seed, classify, progress)
    with locked(run_dir, "directions") if run_dir is not None else nullcontext():
        return directions.save(folder), directions


def _classifier(evaluator: Evaluator):
    def classify(images: np.ndarray) -> np.ndarray:
        return class_probabilities(evaluator.net, images).argmax(1).numpy()

    return classify


def write_colourways(
    sampler: Sampler,
    ref: str,
    colours: str | list[str],
    out: str | os.PathLike,
    rounds: int = ROUNDS,
    overwrite: bool = False,
) -> tuple[Path, list[dict[str, Any]]]:
    """The product ``ref`` names in each of ``colours``: a PNG strip (the product first), a .npy
    (uint8 N x C x H x W, the product first) or a folder of PNGs with colourways.json (each image's
    name, the colour asked and reached, and the CIEDE2000 between them)."""
    out = output_path(out)
    kind = out.suffix.lower() if out.suffix.lower() in (".png", ".npy") else "dir"
    wanted = parse_colours(colours)
    with Outputs("colourways") as outputs:
        out = outputs.claim(out, overwrite, COLOURWAYS if kind == "dir" else None)
        sampler.require_directions()
        base = point(sampler, ref)
        ways = colourways(sampler, base, wanted, rounds)
        images = render(sampler, [base, *(way.point for way in ways)]).numpy()
        records = [{"name": way.name(sampler), **way.describe()} for way in ways]

        files = [f"colourway-{i:02d}-{way.colour[1:]}.png" for i, way in enumerate(ways)]
        fill = _strip_fill(kind, images, files, "colourways.json", {"of": str(ref), "colourways": records}, first=1)
        outputs.write({out: fill})
    return out, records


def check_amounts(
    amounts: str | list[float] | tuple[float, ...] | None, along: str = "the slider"
) -> tuple[float, ...]:
    """A slider strip's amounts: comma-separated numbers (or a list), -5 to 5, at most MAX_STRIP."""
    if amounts is None:
        return DEFAULT_AMOUNTS
    parts = str(amounts).split(",") if isinstance(amounts, str) else list(amounts)
    if not parts or len(parts) > MAX_STRIP:
        raise UsageError(f"A strip has 1 to {MAX_STRIP} steps, not {len(parts)}.")
    return tuple(check_amount(part, along) for part in parts)


def slider_images(
    sampler: Sampler, base: Point, direction: str, amounts: tuple[float, ...] = DEFAULT_AMOUNTS
) -> tuple[torch.Tensor, list[Point]]:
    """The image at ``base`` moved by each of ``amounts`` along ``direction``: (uint8 images, points)."""
    directions = sampler.require_directions()
    directions.check(((direction, 0.0),))
    labels = None if base.label is None else torch.as_tensor(base.label)[None]
    points = []
    for amount in amounts:
        check_amount(amount, direction)
        moved = directions.edit(base.z[None], ((direction, amount),), labels) if amount else base.z[None]
        points.append(Point(moved[0], base.label))
    return render(sampler, points), points


def write_strip(
    sampler: Sampler,
    ref: str,
    along: str,
    out: str | os.PathLike,
    amounts: str | list[float] | None = None,
    overwrite: bool = False,
) -> Path:
    """The image ``ref`` names at each of ``amounts`` along the direction ``along``: a PNG strip, a
    .npy, or a folder of PNGs with strip.json (the name of each image: ``REF^ALONG=AMOUNT``)."""
    out = output_path(out)
    kind = out.suffix.lower() if out.suffix.lower() in (".png", ".npy") else "dir"
    values = check_amounts(amounts, along)
    with Outputs("steer") as outputs:
        out = outputs.claim(out, overwrite, STRIP if kind == "dir" else None)
        direction = along.strip().lower()
        images, _ = slider_images(sampler, point(sampler, ref), direction, values)
        images = images.numpy()
        names = [edited_name(str(ref), f"{direction}={v!r}") if v else str(ref) for v in values]

        files = [f"step-{i:02d}.png" for i in range(len(values))]
        steps = [{"file": f, "amount": v, "name": n} for f, v, n in zip(files, values, names)]
        fill = _strip_fill(kind, images, files, "strip.json", {"of": str(ref), "along": along, "steps": steps})
        outputs.write({out: fill})
    return out


def _strip_fill(
    kind: str, images: np.ndarray, files: list[str], manifest_file: str, manifest: dict, first: int = 0
) -> Callable[[Path], None]:
    """What writes a strip of ``images``: a .npy, one .png strip, or a folder with one PNG each
    (``files``, for the images from ``first`` on) and ``manifest`` as ``manifest_file``."""

    def fill(tmp: Path) -> None:
        if kind == ".npy":
            np.save(tmp, images)
        elif kind == ".png":
            to_pil(make_grid(images, len(images))).save(tmp, format="PNG")
        else:
            for file, image in zip(files, images[first:]):
                save_png(image, tmp / file)
            (tmp / manifest_file).write_text(json.dumps(manifest, indent=2) + "\n")

    return fill


def direction_table(directions: Directions) -> list[str]:
    """The directions as lines of a plain table: name, kind, own effect, monotone, category kept."""
    lines = [f"{'direction':<11} {'kind':<6} {'monotone':<9} {'category kept':<14} what one unit does"]
    for d in directions.directions.values():
        monotone = "-" if d.monotone is None else "yes" if d.monotone else "no"
        kept = "-" if d.category_kept is None else f"{d.category_kept:.0%}"
        what = d.description.split("; per unit: ", 1)[-1]
        lines.append(f"{d.name:<11} {d.kind:<6} {monotone:<9} {kept:<14} {what}")
    return lines
