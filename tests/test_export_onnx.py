"""export --format onnx: model.onnx gives the Sampler's images with ONNX Runtime alone, for any
batch size; the docs' example and the model card's run as written; a missing extra or a bad flag
is one sentence."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_config

from productgan.cli import main
from productgan.data import prepare
from productgan.errors import ProductganError
from productgan.generator import onnx as export_onnx_module
from productgan.generator.latents import noise
from productgan.generator.onnx import MISSING_EXTRA, OPSET, export_onnx, recorded_output
from productgan.generator.sampler import load_generator
from productgan.train import train

HAS_ONNX = all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime", "onnxscript"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="the onnx extra is not installed: pip install 'productgan[onnx]'")

DOCS = Path(__file__).resolve().parent.parent / "docs" / "serving.md"
DOCS_SECTION = "## Running the generator without productgan (ONNX)"
DOCS_MODEL_PATH = "runs/00000-fashion-mnist-32/generator/model.onnx"


def session(path: Path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_images(path: Path, z: torch.Tensor, labels: torch.Tensor | None) -> np.ndarray:
    inputs = {"z": z.numpy()} | ({} if labels is None else {"class_index": labels.numpy()})
    return session(path).run(["images"], inputs)[0]


def check_parity(run: Path, conditional: bool) -> None:
    """Batches of 1 and 5 through one file, uint8 then float, against the Sampler in PyTorch."""
    sampler = load_generator(run)
    classes = sampler.generator.num_classes
    path = run / "generator" / "model.onnx"
    for n in (1, 5):
        z = noise(n, 8, 3)
        labels = (torch.arange(n) * 3 % classes) if conditional else None  # not every class in turn
        expected = sampler.from_noise(z, "native", labels=labels).numpy()
        got = onnx_images(path, z, labels)
        assert got.dtype == np.uint8 and got.shape == expected.shape == (n, 1, 28, 28)
        # Equal, not merely close: ONNX Runtime's float images differ from PyTorch's by under 1e-9
        # for these generators, too little to move a pixel across a rounding boundary (measured
        # over 2,000 images of each: not one of 1.6 million uint8 values differed).
        assert np.array_equal(got, expected)
    written = export_onnx(run, "float")
    assert written.output == "float" and written.shape == (
        1,
        sampler.generator.image_size,
        sampler.generator.image_size,
    )
    assert written.max_difference <= 1e-4
    for n in (1, 5):
        z = noise(n, 8, 4)
        labels = torch.arange(n) % classes if conditional else None
        with torch.no_grad():
            expected = sampler.generator(z, labels).numpy()
        got = onnx_images(path, z, labels)
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-4
        assert got.min() >= -1 and got.max() <= 1  # tanh's range, as the export's pixel_range says


def docs_example() -> str:
    """The Python example of the docs' ONNX section, as it stands there."""
    text = DOCS.read_text()
    section = text[text.index(DOCS_SECTION) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def check_docs_example(run: Path, workdir: Path) -> None:
    """The docs' example, run on ``run``'s model.onnx by a Python that never imports productgan or
    torch, writes the images productgan makes for seed 7."""
    code = docs_example()
    assert code.count(DOCS_MODEL_PATH) == 1 and len(code.strip().splitlines()) <= 15
    code = code.replace(DOCS_MODEL_PATH, str(run / "generator" / "model.onnx"))
    code += "\nimport sys\nassert not {'productgan', 'torch'} & set(sys.modules), sorted(sys.modules)\n"
    subprocess.run([sys.executable, "-c", code], cwd=workdir, check=True, timeout=120)
    images = np.load(workdir / "products.npy")
    expected = load_generator(run)(n=16, seed=7).numpy()
    assert images.shape == (16, 1, 28, 28) and np.array_equal(images, expected)


CARD_SECTION = "### With ONNX Runtime alone"


def check_card_example(run: Path) -> str:
    """The model card's ONNX example, run in the export folder (where a hub reader has it) by a
    Python that never imports productgan or torch, gives the images productgan makes for seed 7.
    Returns the card."""
    folder = run / "generator"
    card = (folder / "README.md").read_text()
    section = card[card.index(CARD_SECTION) :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    # Nothing a hub reader lacks: no file of productgan's repository (a web address is fine).
    assert len(code.strip().splitlines()) <= 12 and re.search(r"(?<![/\w])docs/", card) is None
    code += "numpy.save('card-images.npy', images)\n"
    code += "import sys\nassert not {'productgan', 'torch'} & set(sys.modules), sorted(sys.modules)\n"
    subprocess.run([sys.executable, "-c", code], cwd=folder, check=True, timeout=120)
    images = np.load(folder / "card-images.npy")
    (folder / "card-images.npy").unlink()
    assert np.array_equal(images, load_generator(run)(n=16, seed=7).numpy())
    return card


@needs_onnx
def test_a_conditional_generator_exported_to_onnx_gives_the_samplers_images(fake_packed, tmp_path, capsys):
    config = tiny_config(fake_packed, tmp_path / "run")
    config.model.conditional = True
    train(config, progress=False)
    run = tmp_path / "run"

    weights = (run / "generator" / "model.safetensors").stat().st_mtime_ns
    assert main(["export", str(run), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert f"{run / 'generator' / 'model.onnx'} (opset {OPSET}; output uint8 images of 28x28, 1 channel;" in out
    assert "largest difference from PyTorch on 4 images: 0)" in out and "Exported generator to" not in out
    assert (run / "generator" / "model.safetensors").stat().st_mtime_ns == weights  # converted, not exported again
    inputs = session(run / "generator" / "model.onnx").get_inputs()
    assert [(i.name, i.type) for i in inputs] == [("z", "tensor(float)"), ("class_index", "tensor(int64)")]
    assert isinstance(inputs[0].shape[0], str) and inputs[0].shape[1] == 8  # a free batch size, nz 8
    assert recorded_output(run / "generator" / "model.onnx") == "uint8"
    card = check_card_example(run)
    assert "output: `images`, uint8 N x C x H x W at the native size (28x28)" in card and "- onnx\n" in card
    assert "class_index = numpy.arange(n, dtype=numpy.int64) % 10" in card

    check_docs_example(run, tmp_path)
    check_parity(run, conditional=True)


@needs_onnx
def test_an_unconditional_generator_at_64_pixels_exported_to_onnx_gives_the_samplers_images(
    fake_fmnist, tmp_path, capsys
):
    # At 64 pixels the native images come from an antialiased downscale (64 -> 32) and a crop: the
    # ONNX graph has to resize exactly as to_native does.
    packed = prepare(fake_fmnist, tmp_path / "packed-64", image_size=64, val_size=20, seed=0)
    train(tiny_config(packed, tmp_path / "run", steps=2), progress=False)
    run = tmp_path / "run"
    weights = (run / "generator" / "model.safetensors").stat().st_mtime_ns
    # With --checkpoint, the generator is exported from it first, then converted.
    assert main(["export", str(run), "--format", "onnx", "--checkpoint", "last"]) == 0
    out = capsys.readouterr().out
    assert f"Exported generator to {run / 'generator'}\n" in out
    assert "output uint8 images of 28x28, 1 channel; largest difference from PyTorch on 4 images: 0)" in out
    assert (run / "generator" / "model.safetensors").stat().st_mtime_ns != weights
    assert [i.name for i in session(run / "generator" / "model.onnx").get_inputs()] == ["z"]
    assert "class_index" not in check_card_example(run)
    check_parity(run, conditional=False)
    assert main(["export", str(run), "--format", "onnx", "--onnx-output", "float"]) == 0
    assert recorded_output(run / "generator" / "model.onnx") == "float"
    card = (run / "generator" / "README.md").read_text()
    assert (
        "output: `images`, float32 N x C x S x S at the training size (64x64) in the generator's range -1 to 1" in card
    )
    assert "`images` then gives, once mapped to 0..255, the images" in card


def test_a_missing_onnx_extra_is_one_sentence(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # an import of it raises ImportError
    with pytest.raises(ProductganError) as caught:
        export_onnx(tmp_path)
    assert str(caught.value) == MISSING_EXTRA
    stub = tmp_path / "run"
    stub.mkdir()
    (stub / "config.yaml").write_text("{}\n")
    assert main(["export", str(stub), "--format", "onnx"]) == 1
    assert capsys.readouterr().err.strip().endswith(MISSING_EXTRA)


def test_bad_onnx_flags_and_a_run_without_an_export_are_refused(tmp_path, capsys, monkeypatch):
    stub = tmp_path / "run"
    stub.mkdir()
    (stub / "config.yaml").write_text("{}\n")
    assert main(["export", str(stub), "--onnx-output", "float"]) == 2
    assert "--onnx-output applies to --format onnx" in capsys.readouterr().err
    assert main(["export", str(stub), "--format", "onnx", "--onnx-output", "float16"]) == 2
    capsys.readouterr()
    with pytest.raises(ProductganError, match="must be uint8 or float"):
        export_onnx(stub, "float16")
    monkeypatch.setattr(export_onnx_module, "require_onnx", lambda: (None, None))  # refused before any import
    assert main(["export", str(stub), "--format", "onnx"]) == 1
    err = capsys.readouterr().err
    assert "holds no exported generator" in err and "productgan export RUN_DIR" in err
    assert sorted(p.name for p in stub.iterdir()) == [".productgan.lock", "config.yaml"]
