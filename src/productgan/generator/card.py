"""The model card: README.md in Hugging Face's model-card layout, beside every exported generator.

``model_card`` turns what an export records (its config.json), what its run recorded (the
resolved configuration of config.yaml) and the run's evaluation reports into markdown: YAML
front matter (license, library_name, tags, datasets, pipeline_tag; the fields of the hub's
model-card spec, https://github.com/huggingface/hub-docs/blob/main/modelcard.md), then the sections of
``productgan.generator.card_sections`` in order. It chooses the reports that describe this
export and reads no file, so the same inputs give the same card. ``write_model_card`` puts the
card into an export folder; the run layer gathers the inputs and writes it at every export and
after every evaluation.
"""

from __future__ import annotations

import json
import os
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
from productgan.generator.onnx import recorded_output

# The front matter's license_name while the weights' owner has chosen no licence (license: other).
WEIGHTS_LICENCE_NAME = "not-chosen-yet"

# When several reports scored this export's step, the first shown is of the first split here.
_SPLIT_ORDER = ("test", "val", "train")


def model_card(
    export: dict[str, Any],
    run: dict[str, Any] | None = None,
    reports: Sequence[tuple[str, dict[str, Any]]] = (),
    onnx: bool | str = False,
) -> str:
    """The model card of an export, as markdown.

    ``export``: the export's config.json; ``run``: the run's resolved configuration as a dict
    (``config.to_dict``), None when unknown; ``reports``: (file name, report) pairs of the run's
    evaluation reports, of which those that scored this export's training step are shown;
    ``onnx``: whether the folder holds model.onnx, or the output it gives ("uint8", "float").
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
    onnx = (folder / ONNX_FILE).is_file() and (recorded_output(folder / ONNX_FILE) or True)
    text = model_card(export, run, reports, onnx=onnx)
    return write_text_atomic(folder / README_FILE, text)


# The front matter's comments: what a field means here, for whoever publishes the card.
_LICENCE_COMMENT = (
    "# license: the licence of these weights, which is their owner's to choose (the hub's ids:\n"
    "# https://hf.co/docs/hub/repositories-licenses); the training data's licence is under Data.\n"
)
_CONDITIONAL_TASK_COMMENT = (
    "# pipeline_tag: the hub has no class-conditional task; the input is noise and a category\n"
    "# index (no text, no image), so the nearest is unconditional image generation.\n"
)


def _front_matter(export: dict[str, Any], onnx: bool | str) -> str:
    licence = {"license": "other", "license_name": WEIGHTS_LICENCE_NAME}
    header: dict[str, Any] = {"library_name": "productgan"}
    tags = ["productgan", "dcgan", "gan", "image-generation"]
    tags.append("class-conditional" if is_conditional(export) else "unconditional-image-generation")
    if onnx:
        tags.append("onnx")
    header["tags"] = tags
    known = KNOWN_DATASETS.get(export.get("dataset"))
    if known:
        header["datasets"] = [known["hub"]]
    task = {"pipeline_tag": "unconditional-image-generation"}
    return (
        "---\n"
        + _LICENCE_COMMENT
        + _yaml(licence)
        + _yaml(header)
        + (_CONDITIONAL_TASK_COMMENT if is_conditional(export) else "")
        + _yaml(task)
        + "---"
    )


def _yaml(fields: dict[str, Any]) -> str:
    return yaml.safe_dump(fields, sort_keys=False, allow_unicode=True)


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
