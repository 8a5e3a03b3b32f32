"""evaluate: the report, its protocol and floor; validation during training, best.pt, early stop."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_config

from productgan.checkpoint import load_checkpoint
from productgan.cli import main
from productgan.evaluator import Evaluator
from productgan.reports.evaluation import evaluate_run
from productgan.train import train


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRODUCTGAN_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def tiny_run(fake_packed, tmp_path):
    train(tiny_config(fake_packed, tmp_path / "run", steps=2), progress=False)
    return tmp_path / "run"


def test_evaluate_reports_every_metric_with_protocol_and_floor(tiny_run, fake_packed):
    report = evaluate_run(tiny_run, split="test", n=40, seed=1, progress=False)
    metrics = report["metrics"]
    for key in (
        "fid_productgan",
        "fid_productgan_ci95",
        "kid_productgan_mean",
        "precision",
        "recall",
        "density",
        "coverage",
        "classifier_score",
        "class_shares",
        "rarest_class_share",
        "memorisation_share",
    ):
        assert key in metrics, key
    assert not any(key == "fid" or key.startswith("fid_") and "productgan" not in key for key in metrics)
    protocol = report["protocol"]
    assert protocol["reference_split"] == "test" and protocol["num_generated"] == 40
    assert protocol["num_reference"] == 50 and protocol["seed"] == 1
    assert protocol["extractor"].startswith("productgan evaluator")
    floor = report["real_data_floor"]
    assert floor["fid_productgan"] >= 0 and 0 <= floor["memorisation_share"] <= 1
    # The evaluator was trained once, next to the packed dataset, and is reused.
    assert (fake_packed / "evaluator" / "evaluator.json").is_file()
    again = evaluate_run(tiny_run, split="test", n=40, seed=1, progress=False)
    assert again["metrics"]["fid_productgan"] == metrics["fid_productgan"]


def test_evaluate_with_a_read_only_packed_dataset_keeps_the_evaluator_in_the_user_cache(
    tiny_run, fake_packed, tmp_path, monkeypatch
):
    from productgan.evaluator import cache

    # Running as root, chmod does not stop writes, so the dataset folder is made unwritable by
    # replacing the cache's writability check rather than its permissions.
    monkeypatch.setattr(cache, "writable", lambda folder: not folder.is_relative_to(fake_packed))
    report = evaluate_run(tiny_run, split="test", n=20, floor=False, progress=False)
    assert not (fake_packed / "evaluator").exists()
    (stored,) = (tmp_path / "cache" / "evaluators").glob("data-*/evaluator.json")
    assert json.loads(stored.read_text())["weights_sha256"] == report["protocol"]["evaluator_weights_sha256"]
    again = evaluate_run(tiny_run, split="test", n=20, floor=False, progress=False)
    assert again["metrics"]["fid_productgan"] == report["metrics"]["fid_productgan"]
    assert list((tmp_path / "cache" / "evaluators").iterdir()) == [stored.parent]


def test_evaluate_cli_prints_a_table_and_writes_json(tiny_run, capsys):
    assert main(["evaluate", str(tiny_run), "--split", "val", "--n", "20", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "fid_productgan" in out and "real floor" in out and "extractor: productgan evaluator" in out
    report = json.loads((tiny_run / "evaluation" / "val-n20-seed0-step2.json").read_text())
    assert report["protocol"]["reference_split"] == "val"
    assert report["protocol"]["latent_temperature"] == 1.0
    # Another temperature is another protocol: its own file, its own scores
    assert (
        main(
            [
                "evaluate",
                str(tiny_run),
                "--split",
                "val",
                "--n",
                "20",
                "--no-progress",
                "--no-floor",
                "--temperature",
                "1.5",
            ]
        )
        == 0
    )
    assert "latent temperature: 1.5" in capsys.readouterr().out
    hot = json.loads((tiny_run / "evaluation" / "val-n20-seed0-t1.5-step2.json").read_text())
    assert hot["protocol"]["latent_temperature"] == 1.5
    assert hot["metrics"]["fid_productgan"] != report["metrics"]["fid_productgan"]


def test_evaluate_never_replaces_a_file_without_asking(tiny_run, tmp_path, capsys):
    mine = tmp_path / "config.yaml"
    mine.write_text("mine")
    assert main(["evaluate", str(tiny_run), "--split", "val", "--n", "20", "--no-progress", "--out", str(mine)]) == 1
    assert "already exists; choose another --out or pass --overwrite" in capsys.readouterr().err
    assert mine.read_text() == "mine" and not (tiny_run / "evaluation").exists()
    assert (
        main(
            [
                "evaluate",
                str(tiny_run),
                "--split",
                "val",
                "--n",
                "20",
                "--no-progress",
                "--no-floor",
                "--out",
                str(mine),
                "--overwrite",
            ]
        )
        == 0
    )
    assert json.loads(mine.read_text())["protocol"]["generator_step"] == 2


def test_evaluate_bad_input(tiny_run, tmp_path, capsys):
    assert main(["evaluate", str(tiny_run), "--split", "holdout"]) == 2
    assert main(["evaluate", str(tmp_path / "nothing"), "--n", "10"]) == 1
    assert "not a productgan run directory" in capsys.readouterr().err


def test_validation_keeps_best_checkpoint_and_exports_it(fake_packed, tmp_path, monkeypatch):
    scores = iter([5.0, 3.0, 4.0])  # best at the second validation (step 4)
    real_score = Evaluator.score_features

    def scripted(self, fake_feats, fake_probs, split, **kwargs):
        results = real_score(self, fake_feats, fake_probs, split, **kwargs)
        assert split == "val" and len(fake_feats) == 20
        return {**results, "fid_productgan": next(scores)}

    monkeypatch.setattr(Evaluator, "score_features", scripted)
    config = tiny_config(fake_packed, tmp_path / "run", steps=6)
    config.train.eval_every, config.train.eval_n = 2, 20
    train(config, progress=False)
    run = tmp_path / "run"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [line for line in lines if "val_fid_productgan" in line]
    assert [(v["step"], v["val_fid_productgan"], v["best_val"]) for v in val] == [
        (2, 5.0, 5.0),
        (4, 3.0, 3.0),
        (6, 4.0, 3.0),
    ]
    assert load_checkpoint(run / "checkpoints" / "best.pt")["step"] == 4
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 6
    assert json.loads((run / "generator" / "config.json").read_text())["step"] == 4


def test_validation_vectors_are_not_the_ones_evaluate_scores(fake_packed, tmp_path, monkeypatch):
    """best.pt is picked on one set of latent vectors; `evaluate` (seed 0, the default, which is
    also the run's seed here) scores the test split on others, so the pick does not flatter it."""
    from productgan.generator.latents import noise
    from productgan.generator.sampler import Sampler

    seen = []
    real_from_noise = Sampler.from_noise
    monkeypatch.setattr(
        Sampler, "from_noise", lambda self, z, **k: seen.append(z.clone()) or real_from_noise(self, z, **k)
    )
    config = tiny_config(fake_packed, tmp_path / "run", steps=2)
    config.train.eval_every, config.train.eval_n = 2, 20
    train(config, progress=False)
    assert len(seen) == 1 and seen[0].shape == (20, config.model.nz)
    scored = noise(10_000, config.model.nz, 0)
    assert not (seen[0][:, None, :] == scored[None, :, :]).all(-1).any()


def test_early_stop_after_patience(fake_packed, tmp_path, monkeypatch):
    scores = iter([1.0, 2.0, 3.0, 4.0])
    real_score = Evaluator.score_features
    monkeypatch.setattr(
        Evaluator, "score_features", lambda self, *a, **k: {**real_score(self, *a, **k), "fid_productgan": next(scores)}
    )
    config = tiny_config(fake_packed, tmp_path / "run", steps=20)
    config.train.eval_every, config.train.eval_n, config.train.early_stop_patience = 2, 20, 2
    summary = train(config, progress=False)
    assert summary["stopped_by"] == "early stop" and summary["step"] == 6


def test_cas_for_a_conditional_run(fake_packed, tmp_path, capsys):
    from productgan.config import ModelConfig

    config = tiny_config(
        fake_packed, tmp_path / "cond", steps=2, model=ModelConfig(nz=8, ngf=4, ndf=4, conditional=True)
    )
    config.train.grid_size = 10
    train(config, progress=False)
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "cond"),
                "--split",
                "test",
                "--n",
                "40",
                "--cas",
                "--no-progress",
                "--out",
                str(tmp_path / "cas.json"),
            ]
        )
        == 0
    )
    assert "classification accuracy (CAS)" in capsys.readouterr().out
    report = json.loads((tmp_path / "cas.json").read_text())
    assert 0.0 <= report["metrics"]["cas"] <= 1.0 and 0.0 <= report["real_data_floor"]["cas"] <= 1.0
    assert report["protocol"]["cas"]["num_generated"] == 40 and report["protocol"]["cas"]["num_test"] == 50


def test_cas_refuses_an_unconditional_generator(tiny_run, capsys):
    assert main(["evaluate", str(tiny_run), "--n", "20", "--cas", "--no-progress"]) == 2
    assert "class-conditional" in capsys.readouterr().err
    assert not (tiny_run / "evaluation").exists()


def test_evaluate_on_an_unlabelled_folder_says_what_its_numbers_mean(tmp_path):
    import numpy as np
    from PIL import Image

    from productgan.data.folder import prepare_folder

    rng = np.random.default_rng(0)
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(60):
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(src / f"{i}.png")
    packed = prepare_folder(src, tmp_path / "packed", size=32, labels=False, workers=1, progress=False)
    config = tiny_config(packed, tmp_path / "run", steps=2, batch_size=8)
    train(config, progress=False)
    report = evaluate_run(tmp_path / "run", split="test", n=12, progress=False)
    assert "unlabelled dataset" in report["protocol"]["extractor"]
    assert "compare runs on this dataset" in report["protocol"]["extractor"]
    assert "fid_productgan" in report["metrics"] and "classifier_score" not in report["metrics"]
    assert "rarest_class_share" not in report["real_data_floor"]
