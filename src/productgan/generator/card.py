"""The model card: README.md in Hugging Face's model-card layout, beside every exported generator.

``model_card`` turns what an export records (its config.json), what its run recorded (the
resolved configuration of config.yaml) and the run's evaluation reports into markdown: YAML
front matter (license, library_name, tags, datasets), then the sections of
``productgan.generator.card_sections`` in order. It chooses the reports that describe this
export and reads no file, so the same inputs give the same card. ``write_model_card`` puts the
card into an export folder; the run layer gathers the inputs and writes it at every export and
after every evaluation.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from productgan.files import write_text_atomic
from productgan.generator.card_sections import (
    KNOWN_DATASETS,
    data_section,
    evaluation_section,
    intended_use_section,
    is_conditional,
    limitations_section,
    loading_section,
    title_section,
    training_section,
)
from productgan.generator.export import CONFIG_FILE, ONNX_FILE, README_FILE

# Licence names the Hugging Face hub knows as identifiers; any other recorded licence is "other".
HUB_LICENCES = {
    "mit",
    "apache-2.0",
    "bsd-2-clause",
    "bsd-3-clause",
    "cc0-1.0",
    "cc-by-4.0",
    "cc-by-sa-4.0",
    "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0",
    "cc-by-nd-4.0",
    "cc-by-nc-nd-4.0",
    "gpl-3.0",
    "lgpl-3.0",
    "agpl-3.0",
    "mpl-2.0",
    "openrail",
    "unlicense",
}

# When several reports scored this export's step, the first shown is of the first split here.
_SPLIT_ORDER = ("test", "val", "train")


def licence_id(licence: str | None) -> str:
    """The hub's identifier for a recorded licence: its own name when the hub knows it (``MIT``
    -> ``mit``, ``CC BY 4.0`` -> ``cc-by-4.0``), ``other`` for any other text, ``unknown`` for none."""
    if not licence or not str(licence).strip():
        return "unknown"
    key = re.sub(r"[\s_]+", "-", str(licence).strip().lower())
    return key if key in HUB_LICENCES else "other"


def model_card(
    export: dict[str, Any],
    run: dict[str, Any] | None = None,
    reports: Sequence[tuple[str, dict[str, Any]]] = (),
    onnx: bool = False,
) -> str:
    """The model card of an export, as markdown.

    ``export``: the export's config.json; ``run``: the run's resolved configuration as a dict
    (``config.to_dict``), None when unknown; ``reports``: (file name, report) pairs of the run's
    evaluation reports, of which those that scored this export's training step are shown;
    ``onnx``: whether the folder holds model.onnx.
    """
    run = run or {}
    shown = _reports_of_this_export(export, reports)
    sections = [
        _front_matter(export, onnx),
        title_section(export),
        data_section(export, run),
        training_section(export, run),
        evaluation_section(export, shown, len(reports) - len(shown)),
        intended_use_section(export),
        limitations_section(export, shown[0][1] if shown else None),
        loading_section(export, onnx),
    ]
    return "\n\n".join(section.strip("\n") for section in sections) + "\n"


def write_model_card(
    folder: str | os.PathLike,
    run: dict[str, Any] | None = None,
    reports: Sequence[tuple[str, dict[str, Any]]] = (),
) -> Path:
    """Write the card of the export in ``folder`` (its README.md, replaced atomically)."""
    folder = Path(folder)
    export = json.loads((folder / CONFIG_FILE).read_text())
    text = model_card(export, run, reports, onnx=(folder / ONNX_FILE).is_file())
    return write_text_atomic(folder / README_FILE, text)


def _front_matter(export: dict[str, Any], onnx: bool) -> str:
    licence = export.get("licence")
    header: dict[str, Any] = {"license": licence_id(licence)}
    if header["license"] == "other":
        header["license_name"] = re.sub(r"[^a-z0-9]+", "-", str(licence).lower()).strip("-")[:64] or "other"
    header["library_name"] = "productgan"
    tags = ["productgan", "dcgan", "gan", "image-generation"]
    tags.append("class-conditional" if is_conditional(export) else "unconditional-image-generation")
    if onnx:
        tags.append("onnx")
    header["tags"] = tags
    known = KNOWN_DATASETS.get(export.get("dataset"))
    if known:
        header["datasets"] = [known["hub"]]
    if not is_conditional(export):
        header["pipeline_tag"] = "unconditional-image-generation"
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---"


def _reports_of_this_export(
    export: dict[str, Any], reports: Sequence[tuple[str, dict[str, Any]]]
) -> list[tuple[str, dict[str, Any]]]:
    """The reports that scored this export's training step: test split first, then the most
    images, then by name."""
    step = export.get("step")
    mine = [
        (name, report)
        for name, report in reports
        if isinstance(report, dict)
        and isinstance(report.get("protocol"), dict)
        and isinstance(report.get("metrics"), dict)
        and step is not None
        and report["protocol"].get("generator_step") == step
    ]

    def order(item: tuple[str, dict[str, Any]]) -> tuple:
        protocol = item[1]["protocol"]
        split = protocol.get("reference_split")
        rank = _SPLIT_ORDER.index(split) if split in _SPLIT_ORDER else len(_SPLIT_ORDER)
        count = protocol.get("num_generated")
        return rank, -(count if isinstance(count, int) else 0), item[0]

    return sorted(mine, key=order)
