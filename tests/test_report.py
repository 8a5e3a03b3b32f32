"""report: a self-contained HTML page with the run's curves, grids and evaluation tables."""

from __future__ import annotations

import json
import re

from helpers import tiny_config

from productgan.cli import main
from productgan.reports.html import FIGURE_FILES, build_report, read_metrics
from productgan.train import train


def test_report_embeds_curves_grids_and_evaluation(fake_packed, tmp_path, monkeypatch):
    monkeypatch.setenv("PRODUCTGAN_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    config = tiny_config(fake_packed, run, steps=4)
    config.train.eval_every, config.train.eval_n = 2, 20
    train(config, progress=False)
    assert main(["evaluate", str(run), "--n", "20", "--no-progress"]) == 0
    assert main(["evaluate", str(run), "--n", "20", "--no-progress", "--no-floor", "--temperature", "1.3"]) == 0

    page = build_report(run)
    text = page.read_text()
    assert page == run / "report" / "index.html"
    figures = (
        "losses.png",
        "discriminator.png",
        "augmentation.png",
        "speed.png",
        "validation.png",
        "validation_pr.png",
    )
    for figure in figures:
        assert (page.parent / figure).is_file(), figure
    images = re.findall(r'src="data:image/png;base64,', text)
    # 6 figures + final grid + reals + labelled grid + neighbours sheet + the sample grids of steps 3 and 4
    assert len(images) == 6 + 2 + 1 + 1 + 2
    assert (page.parent / "labelled_samples.png").is_file()
    assert "Nearest training images" in text and "likely copies" in text
    assert "the class the evaluator sees in it" in text  # evaluate cached the evaluator
    step = json.loads((run / "generator" / "config.json").read_text())["step"]  # best.pt's
    assert "fid_productgan" in text and f"test-n20-seed0-step{step}.json" in text and "real floor" in text
    assert f"test-n20-seed0-t1.3-step{step}.json" in text and text.count("latent temperature 1.3") == 1
    # Nothing to fetch: readable offline. The embedded images' base64 is left out of the look,
    # since four of its characters spell "http" now and then (their figures hold timings).
    markup = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert "<script" not in markup and "http" not in markup
    assert {p.name for p in page.parent.glob("*.png")} == set(FIGURE_FILES)
    # A report file a crash left under its temporary name is not shown as another evaluation.
    finished = next((run / "evaluation").glob("test-*.json"))
    (run / "evaluation" / f".{finished.name}.tmp-h-1-.json").write_text(finished.read_text())
    assert ".tmp-h-1-" not in build_report(run).read_text()
    assert build_report(run) == page  # the run's own report is rebuilt in place


def test_report_out_never_replaces_files_without_asking(fake_packed, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(fake_packed, run, steps=2), progress=False)
    (tmp_path / "losses.png").write_bytes(b"mine")
    assert main(["report", str(run), "--out", str(tmp_path / "page.html")]) == 1
    assert "already holds losses.png" in capsys.readouterr().err
    assert (tmp_path / "losses.png").read_bytes() == b"mine" and not (tmp_path / "page.html").exists()
    assert main(["report", str(run), "--out", str(tmp_path / "figure.png")]) == 2
    assert "give a path ending in .html" in capsys.readouterr().err
    assert main(["report", str(run), "--out", str(tmp_path / "page.html"), "--overwrite"]) == 0
    assert (tmp_path / "losses.png").read_bytes() != b"mine"


def test_read_metrics_splits_training_and_validation_lines(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "loss_d": 1.0}) + "\n" + json.dumps({"step": 2, "val_fid_productgan": 3.0}) + "\n{cut"
    )
    train_lines, val_lines = read_metrics(tmp_path)
    assert [r["step"] for r in train_lines] == [1] and [r["step"] for r in val_lines] == [2]


def test_read_metrics_skips_lines_that_are_not_json_objects(tmp_path):
    lines = ["3", "[1, 2]", "null", '"text"', json.dumps({"step": 1, "loss_d": 1.0})]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    train_lines, val_lines = read_metrics(tmp_path)
    assert train_lines == [{"step": 1, "loss_d": 1.0}] and val_lines == []


SCRIPT = "<script>alert(1)</script>"


def a_hostile_run(folder):
    """A run folder whose files carry markup where names and numbers belong."""
    folder.mkdir()
    (folder / "config.yaml").write_text("data: x\n")
    (folder / "samples").mkdir()
    (folder / "samples" / f"step-{SCRIPT.replace('/', '')}.png").write_bytes(b"png")
    records = [
        {"step": 1, "loss_d": 1.0, "loss_g": 2.0},
        {"step": SCRIPT, "loss_d": SCRIPT, "images_seen": SCRIPT, "elapsed_s": SCRIPT},
        {"step": 2, "val_fid_productgan": SCRIPT},
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "evaluation").mkdir()
    report = {
        "metrics": {SCRIPT: 1.5, "fid_productgan": 2.0, "class_shares": {SCRIPT: 0.5, "Bag": SCRIPT}},
        "real_data_floor": {"fid_productgan": SCRIPT},
        "protocol": {
            "extractor": SCRIPT,
            "num_generated": SCRIPT,
            "num_reference": 10,
            "reference_split": SCRIPT,
            "seed": SCRIPT,
            "latent_temperature": SCRIPT,
        },
    }
    (folder / "evaluation" / "test-n10-seed0.json").write_text(json.dumps(report))
    return folder


def test_report_escapes_everything_it_reads_from_files(tmp_path):
    text = build_report(a_hostile_run(tmp_path / "run")).read_text()
    assert "<script" not in text.lower()
    assert "&lt;script&gt;" in text  # shown as text, not dropped
    assert "fid_productgan" in text and "2" in text


def test_report_names_evaluation_reports_it_cannot_show(tmp_path):
    run = a_hostile_run(tmp_path / "run")
    (run / "evaluation" / "list-metrics.json").write_text(json.dumps({"metrics": [1], "protocol": {}}))
    (run / "evaluation" / "list-protocol.json").write_text(
        json.dumps({"metrics": {"fid_productgan": 1}, "protocol": [1]})
    )
    (run / "evaluation" / "a-list.json").write_text("[1, 2]")
    text = build_report(run).read_text()
    for name in ("list-metrics.json", "list-protocol.json", "a-list.json"):
        assert f"{name} is not an evaluation report" in text
    assert "test-n10-seed0.json" in text  # the readable report is still shown


def test_report_of_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "not a productgan run directory" in capsys.readouterr().err


def test_report_labels_a_conditional_generator_by_row(fake_packed, tmp_path, monkeypatch):
    from PIL import Image

    from productgan.config import ModelConfig
    from productgan.reports.html import LABELLED_COLUMNS, labelled_samples

    monkeypatch.setenv("PRODUCTGAN_CACHE", str(tmp_path / "cache"))
    config = tiny_config(
        fake_packed, tmp_path / "run", steps=2, model=ModelConfig(nz=8, ngf=4, ndf=4, conditional=True)
    )
    config.train.grid_size = 10
    train(config, progress=False)
    path, caption = labelled_samples(tmp_path / "run", tmp_path)
    assert "one row per class" in caption
    width, height = Image.open(path).size
    assert height > width  # ten class rows of LABELLED_COLUMNS images
    assert LABELLED_COLUMNS == 8
    unconditional = tmp_path / "plain"
    train(tiny_config(fake_packed, unconditional, steps=2), progress=False)
    assert "once `productgan evaluate`" in labelled_samples(unconditional, tmp_path)[1]  # no evaluator yet
