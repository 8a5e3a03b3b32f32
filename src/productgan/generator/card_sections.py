"""The text of the model card's sections: the title, the data, the training, the evaluation, the
intended use, the limitations, and how to load the generator.

Each ``*_section`` function turns what an export records (its config.json), what its run
recorded (the resolved configuration as a dict) and the evaluation reports chosen for it into one
markdown section, writing "not recorded" for whatever is missing; ``productgan.generator.card``
puts them together. Nothing here reads a file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from productgan.data.prepare import FASHION_MNIST
from productgan.generator.export import ONNX_FILE

# Public datasets productgan reads by name: how the card names them, and their hub id.
KNOWN_DATASETS = {
    FASHION_MNIST: {
        "title": "Fashion-MNIST",
        "origin": "Zalando Research, https://github.com/zalandoresearch/fashion-mnist",
        "hub": "zalando-datasets/fashion_mnist",
    }
}

# Licence names the Hugging Face hub knows as identifiers; any other recorded licence is "other".
# fmt: off
HUB_LICENCES = {
    "mit", "apache-2.0", "bsd-2-clause", "bsd-3-clause", "cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-4.0", "gpl-3.0", "lgpl-3.0", "agpl-3.0", "mpl-2.0", "openrail",
    "unlicense",
}
# fmt: on


def licence_id(licence: str | None) -> str:
    """The hub's identifier for a recorded licence: its own name when the hub knows it (``MIT``
    -> ``mit``, ``CC BY 4.0`` -> ``cc-by-4.0``), ``other`` for any other text, ``unknown`` for none."""
    if not licence or not str(licence).strip():
        return "unknown"
    key = re.sub(r"[\s_]+", "-", str(licence).strip().lower())
    return key if key in HUB_LICENCES else "other"


# How to read each figure of an evaluation report (docs/evaluation.md has the full account).
READINGS = {
    "fid_productgan": "Fréchet distance in the evaluator's features; lower is better",
    "kid_productgan_mean": "kernel distance in the evaluator's features; lower is better",
    "fid_inception": "the standard FID (Inception-v3 file); lower is better",
    "kid_inception_mean": "the standard KID (Inception-v3 file); lower is better",
    "precision": "realism (k=3); higher is better",
    "recall": "diversity (k=3); higher is better",
    "density": "realism (k=5); about 1 for real data",
    "coverage": "diversity (k=5); higher is better",
    "classifier_score": "the Inception-score formula with the evaluator's classifier; at most the class count",
    "rarest_class_share": "share of the least-made category: 1/classes when balanced",
    "cas": "accuracy on real images of a classifier trained on generated ones",
    "memorisation_share": "closer to a train image than train images are to each other; see Limitations",
}
# Spreads printed beside their estimate rather than as figures of their own.
_SPREADS = ("_std", "_ci95")
# A category the evaluator recognises in under this share of its real-data share is named as weak.
WEAK_CATEGORY_SHARE = 0.5
_MAX_NAMES_SHOWN = 30


def title_section(export: dict[str, Any]) -> str:
    kind = "class-conditional DCGAN generator" if is_conditional(export) else "DCGAN generator"
    nz = export.get("model", {}).get("nz", "?")
    what = f"a random vector of {nz} numbers" + (" and a category" if is_conditional(export) else "")
    colour = "grey" if export.get("channels") == 1 else "colour"
    return (
        f"# {_dataset_title(export)} {kind}, {_size(export)}\n\n"
        f"A {kind} (Radford, Metz & Chintala 2015) trained with productgan. It turns {what} into a "
        f"{_native(export)} {colour} product image; the same vector gives the same image everywhere."
    )


def data_section(export: dict[str, Any], run: dict[str, Any]) -> str:
    source = export.get("dataset")
    known = KNOWN_DATASETS.get(source)
    if known:
        name = f"{known['title']} ({known['origin']})"
    elif source == "folder":
        folder = Path(str(run.get("data", ""))).name
        name = f"a folder of product photos packed by `productgan prepare`{f' ({folder})' if folder else ''}"
    else:
        name = str(source) if source else "not recorded"
    sizes = export.get("split_sizes")
    if isinstance(sizes, dict):
        counts = " / ".join(f"{split} {sizes[split]:,}" for split in ("train", "val", "test") if split in sizes)
        unlabelled = export.get("unlabelled_images")
        if isinstance(unlabelled, int) and unlabelled > 0:
            counts += f" ({unlabelled:,} of the train images without a category, learnt from all the same)"
    else:
        counts = "not recorded"
    names = [str(n) for n in export.get("class_names") or []]
    if len(names) > 1:
        listed = ", ".join(names[:_MAX_NAMES_SHOWN])
        more = f" and {len(names) - _MAX_NAMES_SHOWN} more" if len(names) > _MAX_NAMES_SHOWN else ""
        categories = f"{len(names)}: {listed}{more}"
    else:
        categories = "one (the images carry no category)"
    fit = export.get("fit")
    sizing = f"native {_native(export)}, trained at {_size(export)}" + (f" (fit: {fit})" if fit else "")
    recorded = export.get("licence")
    licence = recorded or "not recorded (`productgan prepare --licence TEXT` records it)"
    hub_id = licence_id(recorded)
    if recorded and hub_id != "other":
        licence += f" (the hub's id: `{hub_id}`)"
    return (
        "## Data\n\n"
        "| | |\n|---|---|\n"
        f"| dataset | {_cell(name)} |\n"
        f"| images per split | {counts} |\n"
        f"| categories | {_cell(categories)} |\n"
        f"| image size | {sizing} |\n"
        f"| licence of the data | {_cell(licence)} |\n\n"
        "That is the licence of the training data, as `productgan prepare` recorded it, and it governs "
        "the data. The licence of these weights is their owner's choice: the `license` field above says "
        "`other` until the owner sets it (an id the hub lists, or `license_name` and `license_link`)."
    )


def training_section(export: dict[str, Any], run: dict[str, Any]) -> str:
    train = run.get("train") or {}
    optim, loss = run.get("optim") or {}, run.get("loss") or {}
    measured = train.get("precision_measured") or {}
    precision = str(train.get("precision", "not recorded"))
    rates = {p: r for p, r in (measured.get("images_per_s") or {}).items() if r is not None}
    if rates:
        timed = ", ".join(f"{p} {r:,.0f}" for p, r in rates.items())
        precision += f" (chosen by timing the run's own step: images/s {timed})"
    hardware = measured.get("device") or "not recorded (the precision was set, not measured)"
    model = export.get("model") or {}
    rows = [
        ("steps", _count(export.get("step"))),
        ("images seen", _count(export.get("images_seen"))),
        ("preset", run.get("preset") or ("none" if run else "not recorded")),
        ("precision", precision),
        ("hardware", hardware),
        ("batch size", _count(run.get("batch_size"))),
        ("loss", loss.get("name", "not recorded")),
        (
            "optimiser",
            f"{optim['name']}, lr G {optim.get('lr_g')}, lr D {optim.get('lr_d')}"
            if "name" in optim
            else "not recorded",
        ),
        (
            "generator",
            f"nz {model.get('nz')}, ngf {model.get('ngf')}, normalisation {model.get('g_norm')}, "
            f"output {model.get('g_output')}",
        ),
        ("weights", "the exponential moving average of the generator" if export.get("ema") else "the generator"),
        ("seed", str(export.get("seed", run.get("seed", "not recorded")))),
    ]
    source = train.get("init_source")
    if isinstance(source, dict):  # --init-from: the source, its checkpoint, what was adapted, what was kept fixed
        start = [f"{source.get('run')} ({source.get('checkpoint')}.pt at step {_count(source.get('step'))})"]
        start += [f"categories {how}: {', '.join(map(str, source.get(f'classes_{how}') or []))}" for how in _ADAPTED]
        start += [f"the discriminator's first {train['freeze_d']} blocks kept fixed"] if train.get("freeze_d") else []
        rows.insert(0, ("started from", "; ".join(part for part in start if not part.endswith(": "))))
    table = "".join(f"| {label} | {_cell(str(value))} |\n" for label, value in rows)
    return "## Training\n\n| | |\n|---|---|\n" + table


def evaluation_section(export: dict[str, Any], shown: list[tuple[str, dict[str, Any]]], others: int) -> str:
    lines = ["## Evaluation", ""]
    if not shown:
        lines.append(
            "Not evaluated yet: run `productgan evaluate RUN_DIR` to score this generator on held-out "
            "images; the card is written again with its figures."
        )
    else:
        lines.append(
            "Every figure comes from productgan's own evaluator network (`fid_productgan` is not the "
            "FID of the literature): it compares runs on this dataset with each other. The real-data "
            "floor scores real train images the same way: how good a perfect generator looks."
        )
    for name, report in shown:
        lines += ["", *_report_section(name, report)]
    if others:
        lines += [
            "",
            f"The run's evaluation folder holds {others} other report(s), of other training steps or "
            f"unreadable; they do not describe this export.",
        ]
    return "\n".join(lines)


def _report_section(name: str, report: dict[str, Any]) -> list[str]:
    protocol = report.get("protocol") or {}
    metrics, floor = report.get("metrics") or {}, report.get("real_data_floor") or {}
    split = protocol.get("reference_split", "?")
    lines = [
        f"### {split} split, {_count(protocol.get('num_generated'))} generated images (`evaluation/{name}`)",
        "",
        f"Protocol: {_count(protocol.get('num_generated'))} generated images at "
        f"{protocol.get('image_size', 'native size')} against {_count(protocol.get('num_reference'))} images "
        f"of the {split} split; seed {protocol.get('seed', '?')}; latent temperature "
        f"{protocol.get('latent_temperature', 1.0):g}; {protocol.get('extractor', 'extractor not recorded')}.",
    ]
    if protocol.get("real_data_floor"):
        lines[-1] += f" Real-data floor: {protocol['real_data_floor']}."
    if isinstance(protocol.get("inception"), dict) and protocol["inception"].get("note"):
        lines[-1] += f" Inception-v3 file: {protocol['inception']['note']}."
    lines += ["", "| metric | generated | real-data floor | reading |", "|---|---|---|---|"]
    for key, value in metrics.items():
        if not _is_figure(value) or key.endswith(_SPREADS):
            continue
        generated = _figure(value)
        interval = metrics.get(f"{key}_ci95")
        if isinstance(interval, list) and len(interval) == 2 and all(map(_is_figure, interval)):
            generated += f" (95% CI {_figure(interval[0])} to {_figure(interval[1])})"
        real = floor.get(key)
        real_shown = _figure(real) if _is_figure(real) else "-"
        lines.append(f"| `{key}` | {generated} | {real_shown} | {_cell(READINGS.get(key, ''))} |")
    return lines


def intended_use_section(export: dict[str, Any]) -> str:
    by_category = " of a chosen category" if is_conditional(export) else ""
    return (
        "## Intended use\n\n"
        f"Making new images{by_category} like those of its training data, at {_native(export)}: "
        "prototypes, illustrations, placeholders, data exploration, teaching, and research on generative "
        "models. Generated images are not photographs of real products: they must not be shown as such, "
        "as evidence of a product's look, or used where the training data's licence does not allow."
    )


def limitations_section(export: dict[str, Any], report: dict[str, Any] | None) -> str:
    lines = [
        "## Limitations",
        "",
        f"- It makes {_native(export)} images of what its training data shows and nothing else; a small "
        "DCGAN renders fine detail, text and logos poorly.",
    ]
    if report is None:
        lines.append(
            "- Memorisation (whether it reproduces training images) and the categories it renders "
            "poorly are not measured yet: `productgan evaluate` measures both."
        )
        return "\n".join(lines)
    metrics, floor = report.get("metrics") or {}, report.get("real_data_floor") or {}
    share, real_share = metrics.get("memorisation_share"), floor.get("memorisation_share")
    if _is_figure(share):
        against = f"; held-out real images: {real_share:.3f}" if _is_figure(real_share) else ""
        lines.append(
            f"- Memorisation check: `memorisation_share` {share:.3f} of generated images sit closer to a "
            f"training image than that image sits to its nearest fellow training image{against}. Near the "
            "real-data figure there is no sign of copying; well above it, towards 1, the generator "
            "reproduces training images."
        )
    else:
        lines.append("- Memorisation was not measured in this evaluation.")
    lines.append(f"- {_weak_categories(metrics, floor)}")
    return "\n".join(lines)


def _weak_categories(metrics: dict[str, Any], floor: dict[str, Any]) -> str:
    shares = metrics.get("class_shares")
    if not isinstance(shares, dict) or not shares:
        return "Categories rendered poorly: the evaluation holds no per-category figures."
    real = floor.get("class_shares") if isinstance(floor.get("class_shares"), dict) else {}
    weak = []
    for name, share in shares.items():
        expected = real.get(name, 1 / len(shares))
        if _is_figure(share) and _is_figure(expected) and share < WEAK_CATEGORY_SHARE * expected:
            weak.append(f"{name} ({share:.3f} of generated images against {expected:.3f})")
    if not weak:
        return (
            "Categories rendered poorly: none; the evaluator's classifier recognises every category in at "
            f"least {WEAK_CATEGORY_SHARE:.0%} of its real-data share of generated images."
        )
    return (
        "Categories rendered poorly or rarely: the evaluator's classifier recognises under "
        f"{WEAK_CATEGORY_SHARE:.0%} of their real-data share of generated images as " + "; ".join(weak) + "."
    )


def loading_section(export: dict[str, Any], onnx: bool | str) -> str:
    """With productgan, then ONNX Runtime alone (``onnx``: "uint8", "float", True, or False: none)."""
    conditional = is_conditional(export)
    if conditional:
        names = export.get("class_names") or ["a category"]
        call = f'sampler(n=16, seed=7, label="{names[-1]}")  # uint8 16 x C x H x W, one category'
    else:
        call = "sampler(n=16, seed=7)  # uint8 16 x C x H x W"
    lines = [
        "## How to load it",
        "",
        "With productgan installed, from this folder (no training code and no pickle):",
        "",
        "```python",
        "from productgan import load_generator",
        "",
        'sampler = load_generator("path/to/this/folder")',
        f"images = {call}",
        "```",
        "",
        "or `productgan generate path/to/this/folder --n 64 --seed 7 --out grid.png`. Images leave at the "
        "dataset's native size; the same seed gives the same images.",
        "",
        "### With ONNX Runtime alone",
        "",
    ]
    inputs = "`z` (float32, N x nz, standard normal)" + (" and `class_index` (int64, N)" if conditional else "")
    if not onnx:
        lines.append(
            f"`productgan export RUN_DIR --format onnx` writes `{ONNX_FILE}` into this folder (inputs {inputs}; "
            "output `images`); it needs `pip install 'productgan[onnx]'`. Then numpy and onnxruntime run it, "
            "with no productgan and no torch."
        )
        return "\n".join(lines)
    uint8 = f"uint8 N x C x H x W at the native size ({_native(export)}), as productgan gives them"
    low, high = export.get("pixel_range") or [-1.0, 1.0]
    floats = (
        f"float32 N x C x S x S at the training size ({_size(export)}) in the generator's range {low:g} to {high:g} "
        f"(`(images - {low:g}) * {255 / (high - low):g}` on 0..255; the `pad` of config.json lies around the "
        "native image)"
    )
    if onnx in ("uint8", "float"):
        output = f"`images`, {uint8 if onnx == 'uint8' else floats}"
    else:
        output = f"`images`, {uint8} (or, for a file exported with `--onnx-output float`, {floats})"
    lines += [
        f"`{ONNX_FILE}` needs numpy and onnxruntime only. Inputs: {inputs}; output: {output}. Latent vectors "
        "drawn as below give the images productgan makes for the same seed"
        + (
            ", with every category in turn as `productgan generate` makes them (or one category's index):"
            if conditional
            else ":"
        ),
        "",
        "```python",
        "import numpy",
        "import onnxruntime",
        "",
        f'session = onnxruntime.InferenceSession("{ONNX_FILE}")',
        f"n, nz, seed = 16, {export.get('model', {}).get('nz', 'NZ')}, 7",
        "z = numpy.random.default_rng(seed).standard_normal((n, nz), dtype=numpy.float32)",
    ]
    if conditional:
        classes = export.get("num_classes")
        names = export.get("class_names") or []
        lines += [
            f"class_index = numpy.arange(n, dtype=numpy.int64) % {classes}  # image i of category i mod {classes}",
            f"# one category instead: numpy.full(n, {len(names) - 1}, dtype=numpy.int64)"
            + (f"  ({names[-1]})" if names else ""),
            'images = session.run(["images"], {"z": z, "class_index": class_index})[0]',
        ]
    else:
        lines.append('images = session.run(["images"], {"z": z})[0]')
    same = "gives, once mapped to 0..255, the images" if onnx == "float" else "holds the images"
    lines += ["```", "", f"`images` then {same} of `productgan generate . --n 16 --seed 7`."]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- helpers

_ADAPTED = ("added", "dropped")


def is_conditional(export: dict[str, Any]) -> bool:
    return bool(export.get("num_classes"))


def _dataset_title(export: dict[str, Any]) -> str:
    known = KNOWN_DATASETS.get(export.get("dataset"))
    return known["title"] if known else "Product-photo"


def _size(export: dict[str, Any]) -> str:
    size = export.get("image_size", "?")
    return f"{size}x{size}"


def _native(export: dict[str, Any]) -> str:
    height, width = export.get("native_size") or [export.get("image_size", "?")] * 2
    return f"{width}x{height}"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "not recorded"


def _is_figure(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _figure(value: float) -> str:
    return f"{value:.4g}"


def _cell(text: str) -> str:
    """Text that stays inside one cell of a markdown table."""
    return " ".join(str(text).split()).replace("|", "\\|")
