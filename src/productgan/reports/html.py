"""A run at a glance: one self-contained HTML page (figures embedded) plus the PNG figures.

Reads only what the run directory already holds: metrics.jsonl, the sample grids, reals.png,
config.yaml and any evaluation reports. Plots need matplotlib (the ``report`` extra).
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

from productgan import run
from productgan.errors import ProductganError, UsageError
from productgan.evaluator import class_probabilities, evaluator_cache_dir, find_evaluator
from productgan.explore.neighbours import NeighbourIndex, neighbour_sheet
from productgan.files import refuse_to_replace, write_atomic, write_text_atomic
from productgan.generator.grid import save_png
from productgan.generator.sampler import load_generator
from productgan.reports.sections import evaluation_tables, is_number, number, text, uplift_tables

MAX_GRIDS = 8


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ProductganError(
            "productgan report draws its figures with matplotlib; install it with "
            "`pip install 'productgan[report]'` (or `pip install matplotlib`)."
        )
    return plt


def read_metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """Training log lines and validation lines of metrics.jsonl, skipping any damaged line and
    any that is not a JSON object."""
    train, val = [], []
    path = run_dir / run.METRICS_FILE
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):  # a number or a list is no log line either
                continue
            (val if "val_fid_productgan" in record else train).append(record)
    return train, val


def _plot(plt, path: Path, title: str, series: list[tuple[str, list, list]], ylabel: str) -> Path | None:
    series = [s for s in series if s[1]]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    for label, xs, ys in series:
        ax.plot(xs, ys, label=label, linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


def make_figures(run_dir: Path, out_dir: Path) -> dict[str, Path]:
    plt = _pyplot()
    train, val = read_metrics(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def column(records, key):
        pairs = [(r["step"], r[key]) for r in records if is_number(r.get("step")) and is_number(r.get(key))]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    figures = {
        "losses": _plot(
            plt,
            out_dir / "losses.png",
            "Losses",
            [("loss_d", *column(train, "loss_d")), ("loss_g", *column(train, "loss_g"))],
            "loss",
        ),
        "discriminator": _plot(
            plt,
            out_dir / "discriminator.png",
            "Discriminator outputs",
            [("D(x) on real", *column(train, "d_real")), ("D(G(z)) on generated", *column(train, "d_fake"))],
            "probability",
        ),
        "speed": _plot(
            plt, out_dir / "speed.png", "Throughput", [("images/s", *column(train, "images_per_s"))], "images/s"
        ),
        "augmentation": _plot(
            plt,
            out_dir / "augmentation.png",
            "Augmentation strength (the probability of each transform per image)",
            [("p", *column(train, "augment_p"))],
            "p",
        ),
        "validation": _plot(
            plt,
            out_dir / "validation.png",
            "Validation fid_productgan",
            [("val fid_productgan", *column(val, "val_fid_productgan"))],
            "fid_productgan",
        ),
        "validation_pr": _plot(
            plt,
            out_dir / "validation_pr.png",
            "Validation precision / recall",
            [
                ("precision", *column(val, "val_precision")),
                ("recall", *column(val, "val_recall")),
                ("rarest class share", *column(val, "val_rarest_class_share")),
            ],
            "value",
        ),
    }
    return {name: path for name, path in figures.items() if path is not None}


LABELLED_COLUMNS = 8


def _cached_evaluator(run_dir: Path):
    """(net, info, dataset) of the run's evaluator when it is cached (a report never trains
    one), else None."""
    try:
        config = run.load_run_config(run_dir)
        dataset = run.open_recorded_dataset(config, run_dir)
        found = find_evaluator(dataset, evaluator_cache_dir(config.data, dataset)) if dataset.num_classes > 1 else None
    except ProductganError:
        return None
    return None if found is None else (*found, dataset)


def _class_predictions(run_dir: Path, images) -> list[str] | None:
    """The evaluator's predicted class name of each image, when the dataset's evaluator is cached
    (a report never trains one); None otherwise."""
    found = _cached_evaluator(run_dir)
    if found is None:
        return None
    net, _, dataset = found
    predicted = class_probabilities(net, images).argmax(dim=1).tolist()
    return [dataset.class_names[i] for i in predicted]


def labelled_samples(run_dir: Path, out_dir: Path) -> tuple[Path, str] | None:
    """A grid of the exported generator's images with their class: one row per class for a
    conditional generator, else each image with the class the evaluator sees in it."""
    try:
        sampler = load_generator(run_dir)
    except ProductganError:
        return None
    plt = _pyplot()
    if sampler.conditional:
        rows = [
            (name, sampler(LABELLED_COLUMNS, seed=0, label=index).numpy())
            for index, name in enumerate(sampler.class_names)
        ]
        images = [image for _, row in rows for image in row]
        titles = [name if column == 0 else "" for name, row in rows for column in range(len(row))]
        caption = "one row per class (the class asked for), seed 0"
    else:
        batch = sampler(5 * LABELLED_COLUMNS, seed=0).numpy()
        images, titles = list(batch), _class_predictions(run_dir, batch)
        caption = "seed 0; above each image the class the evaluator sees in it"
        if titles is None:
            titles = [""] * len(images)
            caption = "seed 0 (class labels appear once `productgan evaluate` has trained the evaluator)"
    count_rows = (len(images) + LABELLED_COLUMNS - 1) // LABELLED_COLUMNS
    fig, axes = plt.subplots(
        count_rows, LABELLED_COLUMNS, figsize=(LABELLED_COLUMNS * 1.1, count_rows * 1.25), dpi=110, squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        picture = image.transpose(1, 2, 0)
        ax.imshow(picture[..., 0] if picture.shape[2] == 1 else picture, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=6, pad=2)
    fig.tight_layout(pad=0.3)
    path = out_dir / "labelled_samples.png"
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path, caption


NEIGHBOUR_IMAGES, NEIGHBOUR_K = 8, 4


def nearest_training_sheet(run_dir: Path, out_dir: Path) -> tuple[Path, str] | None:
    """A sheet of the final generator's first images (seed 0) beside their nearest training
    images, framed in red when likely copies, with its caption; None without an evaluator."""
    found = _cached_evaluator(run_dir)
    if found is None:
        return None
    try:
        sampler = load_generator(run_dir)
        index = NeighbourIndex(*found)
    except ProductganError:
        return None
    images = sampler(NEIGHBOUR_IMAGES, seed=0).numpy()
    neighbours = index.query(images, NEIGHBOUR_K)
    path = save_png(neighbour_sheet(images, neighbours, index), out_dir / "neighbours.png")
    copies = int(neighbours.copy.sum())
    caption = (
        f"left: images 0-{NEIGHBOUR_IMAGES - 1} of seed 0; right: their {NEIGHBOUR_K} nearest training images in "
        f"the evaluator's features. {copies} of {NEIGHBOUR_IMAGES} framed in red as likely copies (closer than "
        f"{index.threshold:.3g} in features or {index.pixel_threshold:.3g} in thumbnails, which 99.5% of held-out "
        f"real images exceed)"
    )
    return path, caption


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


# The figures written beside the page.
FIGURE_FILES = (
    "losses.png",
    "discriminator.png",
    "augmentation.png",
    "speed.png",
    "validation.png",
    "validation_pr.png",
    "labelled_samples.png",
    "neighbours.png",
)


def build_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
    """Write ``RUN_DIR/report/index.html`` (or ``out``) and the figures beside it; returns the page.
    The run's own report folder is rebuilt in place; files at ``out`` are replaced only with
    ``overwrite``."""
    run_dir = run.require_run_dir(run_dir)
    page = Path(out) if out else run_dir / run.REPORT_DIR / "index.html"
    if out:
        if page.suffix.lower() not in (".html", ".htm"):
            raise UsageError(f"--out {page}: the report is an HTML page; give a path ending in .html.")
        refuse_to_replace([page, *(page.parent / f for f in FIGURE_FILES)], overwrite, where=page.parent)
    figures = make_figures(run_dir, page.parent)
    labelled = labelled_samples(run_dir, page.parent)
    neighbours = nearest_training_sheet(run_dir, page.parent)
    grids = sorted((run_dir / run.SAMPLES_DIR).glob("step-*.png"))
    shown = (
        grids
        if len(grids) <= MAX_GRIDS
        else [grids[round(i * (len(grids) - 1) / (MAX_GRIDS - 1))] for i in range(MAX_GRIDS)]
    )
    train, val = read_metrics(run_dir)
    last = train[-1] if train else {}
    elapsed = last.get("elapsed_s", 0)
    summary = (
        f"step {number(last.get('step', 0), '')}, {number(last.get('images_seen', 0), ',')} images seen, "
        f"{number(elapsed / 60 if is_number(elapsed) else elapsed, '.1f')} min of training"
        if last
        else "no training log yet"
    )
    best = min((v["val_fid_productgan"] for v in val if is_number(v["val_fid_productgan"])), default=None)
    sections = [
        f"<h1>productgan run {html.escape(run_dir.name)}</h1><p>{summary}"
        + (f"; best validation fid_productgan {best:.4g}" if best is not None else "")
        + "</p>",
        "<h2>Final samples and real images</h2><div class=row>"
        + (
            f"<figure>{_img(grids[-1], 'final samples')}<figcaption>{text(grids[-1].stem)} (EMA generator, "
            f"fixed noise)</figcaption></figure>"
            if grids
            else ""
        )
        + (
            f"<figure>{_img(run_dir / run.REALS_FILE, 'training images')}<figcaption>training images</figcaption>"
            "</figure>"
            if (run_dir / run.REALS_FILE).is_file()
            else ""
        )
        + "</div>"
        + (
            f"<h2>Final generator, with classes</h2><figure>{_img(labelled[0], 'labelled samples')}"
            f"<figcaption>{html.escape(labelled[1])}</figcaption></figure>"
            if labelled
            else ""
        ),
        "<h2>Training curves</h2>"
        + "".join(_img(figures[k], k) for k in ("losses", "discriminator", "augmentation", "speed") if k in figures),
    ]
    if "validation" in figures:
        sections.append(
            "<h2>Validation</h2>"
            + "".join(_img(figures[k], k) for k in ("validation", "validation_pr") if k in figures)
        )
    sections.append("<h2>Evaluation</h2>" + evaluation_tables(run_dir))
    uplift = uplift_tables(run_dir)
    if uplift:
        sections.append("<h2>Does synthetic data help?</h2>" + uplift)
    sections.append(
        "<h2>Nearest training images</h2>"
        + (
            f"<figure>{_img(neighbours[0], 'nearest training images')}<figcaption>{html.escape(neighbours[1])}"
            "</figcaption></figure>"
            if neighbours
            else "<p>Shown once the dataset's evaluator exists: run <code>productgan evaluate RUN_DIR</code>.</p>"
        )
    )
    if shown:
        sections.append(
            "<h2>Fixed-noise samples over time</h2><div class=row>"
            + "".join(f"<figure>{_img(g, g.stem)}<figcaption>{text(g.stem)}</figcaption></figure>" for g in shown)
            + "</div>"
        )
    sections.append(f"<h2>Configuration</h2><pre>{html.escape((run_dir / run.CONFIG_FILE).read_text())}</pre>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}img{max-width:100%}"
        ".row{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}figcaption{font-size:.8em;color:#555}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
        ".note{font-size:.85em;color:#555}"
    )
    document = (
        f"<!doctype html><html><head><meta charset=utf-8><title>productgan {html.escape(run_dir.name)}"
        f"</title><style>{style}</style></head><body>{''.join(sections)}</body></html>\n"
    )
    return write_text_atomic(page, document)
