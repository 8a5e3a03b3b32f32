"""The optional standard FID/KID path: the Inception-v3 structure, loading a weights file, errors.

The real pt_inception-2015-12-05 file cannot be downloaded here, so the loading path is tested
with a randomly initialised network saved in the same format (a plain state dict)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_config

from productgan.cli import main
from productgan.errors import ProductganError
from productgan.metrics.inception import FEATURE_DIM, FIDInception, inception_features, load_inception
from productgan.reports.evaluation import evaluate_run
from productgan.train import train


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    torch.manual_seed(0)
    net = FIDInception()
    for module in net.modules():  # BatchNorm statistics of a trained net, roughly
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.fill_(4.0)
    path = tmp_path_factory.mktemp("inception") / "pt_inception-random.pth"
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path)
    return path


def test_the_network_has_the_published_size_and_output():
    net = FIDInception()
    # Inception-v3 without the auxiliary head, with the 1008-way classifier of the 2015 weights.
    assert sum(p.numel() for p in net.parameters()) == 23_850_960
    assert net.fc.in_features == FEATURE_DIM == 2048


def test_a_file_in_the_right_format_loads_and_is_flagged_non_standard(weights_file):
    net, info = load_inception(weights_file)
    assert info["standard"] is False and len(info["sha256"]) == 64
    images = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    features = inception_features(net, images)
    assert features.shape == (3, FEATURE_DIM) and features.dtype == torch.float64
    assert torch.isfinite(features).all() and (features >= 0).all()  # a ReLU network's pooled output
    assert torch.equal(features, inception_features(net, images))  # deterministic
    rgb = np.repeat(images, 3, axis=1)
    assert torch.allclose(inception_features(net, rgb), features)  # grey is read as equal RGB


def test_wrong_files_are_refused_with_a_reason(tmp_path):
    text = tmp_path / "weights.pth"
    text.write_text("not weights")
    with pytest.raises(ProductganError, match="is not a PyTorch weights file"):
        load_inception(text)
    other = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)
    with pytest.raises(ProductganError, match="is not the FID Inception-v3 weights: .*missing.*unexpected"):
        load_inception(other)
    with pytest.raises(ProductganError, match="does not exist"):
        load_inception(tmp_path / "nowhere.pth")
    net = FIDInception()
    state = net.state_dict()
    state["fc.weight"] = torch.zeros(1000, 2048)  # torchvision's ImageNet head, not the FID one
    torch.save(state, other)
    with pytest.raises(ProductganError, match="of another shape \\(e.g. fc.weight\\)"):
        load_inception(other)


def test_evaluate_adds_the_standard_metrics(weights_file, fake_packed, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRODUCTGAN_CACHE", str(tmp_path / "cache"))
    train(tiny_config(fake_packed, tmp_path / "run", steps=2), progress=False)
    report = evaluate_run(tmp_path / "run", split="val", n=6, progress=False, inception_weights=weights_file)
    metrics, floor = report["metrics"], report["real_data_floor"]
    assert metrics["fid_inception"] > 0 and np.isfinite(metrics["kid_inception_mean"])
    assert floor["fid_inception"] >= 0
    assert "NOT the standard file" in report["protocol"]["inception"]["note"]
    assert "fid_productgan" in metrics  # the evaluator's numbers stay beside them
    bad = tmp_path / "bad.pth"
    bad.write_text("x")
    assert main(["evaluate", str(tmp_path / "run"), "--n", "6", "--inception-weights", str(bad), "--no-progress"]) == 1
    assert "not a PyTorch weights file" in capsys.readouterr().err
    assert not (tmp_path / "run" / "evaluation").exists()


class _Payload:
    def __reduce__(self):
        return (print, ("inception payload ran",))


def test_a_weights_file_holding_objects_is_refused_and_never_run(tmp_path, capsys):
    evil = tmp_path / "evil.pth"
    torch.save({"w": _Payload()}, evil)
    with pytest.raises(ProductganError, match=r"holds objects other than tensors and plain values \(print\)") as raised:
        load_inception(evil)
    assert "weights_only" not in str(raised.value)
    assert "payload ran" not in capsys.readouterr().out
