"""ONNX Runtime against PyTorch on the CPU: images/s of the exported generator, and how far apart
their images are.

    python benchmarks/onnx_speed.py                      # the fmnist-32 preset's generator, untrained
    python benchmarks/onnx_speed.py --run runs/00000-fmnist-32-32 --batches 1 64 --threads 2

Without --run, the generator is built from the fmnist-32 preset's model settings (conditional,
nz 100, ngf 32, 32x32, 10 classes, Fashion-MNIST's pad to 28x28), with seeded initial weights:
the shape of the network is what sets its speed. With --run, the run's exported generator is
copied to a temporary folder and exported there, so the run is left as it was.

Both sides make the same images from the same latent vectors: PyTorch through the Sampler
(``Sampler.from_noise``, size native, one batch), ONNX Runtime through model.onnx with its uint8
output (and its float output for the float parity). Rounds alternate between the two, each
lasting at least --seconds; the median round counts. Both use --threads threads. Prints the
CPU model, the versions, a table of images/s per batch size, and the parity figures.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from productgan.config import PRESETS, ModelConfig, from_dict
from productgan.errors import ProductganError
from productgan.generator.export import CONFIG_FILE, WEIGHTS_FILE, find_export
from productgan.generator.export import write_export as export_generator
from productgan.generator.onnx import OPSET, check_inputs, export_onnx, require_onnx, torch_images
from productgan.generator.sampler import Sampler, load_generator
from productgan.machine import busy_cpus, cpu_model, usable_cpus
from productgan.models import Generator, init_weights

PRESET = "fmnist-32"
FASHION_MNIST_CLASSES = 10
FMNIST_INFO = {
    "class_names": [f"class {i}" for i in range(FASHION_MNIST_CLASSES)],
    "native_size": [28, 28],
    "fit": "pad",
    "padded_size": [32, 32],
    "pad": [2, 2, 2, 2],
    "background": 0,
    "dataset": "fashion-mnist",
    "step": 0,
    "images_seen": 0,
    "ema": True,
    "seed": 0,
}
PARITY_IMAGES = 256


def preset_export(folder: Path) -> Path:
    """An export of a seeded, untrained generator of the fmnist-32 preset's shape."""
    model = from_dict(ModelConfig, PRESETS[PRESET].get("model", {}))
    torch.manual_seed(0)
    generator = Generator(model, 32, 1, FASHION_MNIST_CLASSES)
    init_weights(generator)
    return export_generator(generator.eval(), folder / "generator", FMNIST_INFO)


def copied_export(run: str, folder: Path) -> Path:
    source = find_export(run)
    target = folder / "generator"
    target.mkdir(parents=True)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        shutil.copy2(source / name, target / name)
    return target


def rate(work, images: int, seconds: float) -> float:
    """Images/s of ``work()`` (which makes ``images`` images), repeated for at least ``seconds``."""
    calls, started = 0, time.perf_counter()
    while True:
        work()
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return calls * images / elapsed


def session(path: Path, threads: int):
    _, onnxruntime = require_onnx()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def speeds(sampler: Sampler, ort_session, batch: int, rounds: int, seconds: float) -> tuple[float, float]:
    inputs = check_inputs(sampler, batch, seed=1)
    z = torch.from_numpy(inputs["z"])
    labels = torch.from_numpy(inputs["class_index"]) if "class_index" in inputs else None

    def with_torch():
        sampler.from_noise(z, "native", batch_size=batch, labels=labels)

    def with_onnx():
        ort_session.run(["images"], inputs)

    for work in (with_torch, with_onnx):  # warm-up: first calls allocate and plan
        for _ in range(3):
            work()
    torch_rates, onnx_rates = [], []
    for _ in range(rounds):
        torch_rates.append(rate(with_torch, batch, seconds))
        onnx_rates.append(rate(with_onnx, batch, seconds))
    return statistics.median(torch_rates), statistics.median(onnx_rates)


def parity(sampler: Sampler, path: Path, output: str, threads: int) -> tuple[float, float]:
    """(largest |ONNX - PyTorch|, share of values that differ) over PARITY_IMAGES images."""
    inputs = check_inputs(sampler, PARITY_IMAGES, seed=2)
    ours = torch_images(sampler, inputs, output).astype(np.float64)
    theirs = session(path, threads).run(["images"], inputs)[0].astype(np.float64)
    difference = np.abs(theirs - ours)
    return float(difference.max()), float((difference > 0).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="A run directory or exported generator (default: the preset's shape).")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 256], help="Batch sizes to time.")
    parser.add_argument("--threads", type=int, default=usable_cpus(), help="Threads for both (default: the CPUs).")
    parser.add_argument("--rounds", type=int, default=5, help="Alternating timed rounds per side and batch.")
    parser.add_argument("--seconds", type=float, default=0.5, help="Least duration of one timed round.")
    args = parser.parse_args(argv)
    onnx, onnxruntime = require_onnx()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = copied_export(args.run, Path(tmp)) if args.run else preset_export(Path(tmp))
        sampler = load_generator(folder)
        exported = {}
        started = time.perf_counter()
        for output in ("float", "uint8"):  # uint8 last: it is the file timed below
            exported[output] = export_onnx(folder, output)
            exported[output].path = exported[output].path.rename(folder / f"model-{output}.onnx")
        export_seconds = (time.perf_counter() - started) / 2
        config = sampler.generator.config
        load = busy_cpus()
        busy = "" if load is None else f"; load average {load:.1f} on {usable_cpus()} CPU(s) before timing"
        print(f"CPU: {cpu_model()}; {args.threads} thread(s) for each side{busy}")
        print(
            f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}, opset {OPSET}"
        )
        what = args.run or f"the {PRESET} preset's generator (untrained, seeded)"
        print(
            f"generator: {what}: nz {config.nz}, ngf {config.ngf}, {sampler.generator.image_size}x"
            f"{sampler.generator.image_size}, {sampler.generator.num_classes} classes; output uint8 at native "
            f"{'x'.join(map(str, sampler.native_size[::-1]))}; export {export_seconds:.1f} s per file"
        )
        print()
        print(f"{'batch':>6} {'PyTorch img/s':>15} {'ONNX Runtime img/s':>20} {'ratio':>7}")
        ort_session = session(exported["uint8"].path, args.threads)
        for batch in args.batches:
            torch_rate, onnx_rate = speeds(sampler, ort_session, batch, args.rounds, args.seconds)
            print(f"{batch:>6} {torch_rate:>15,.0f} {onnx_rate:>20,.0f} {onnx_rate / torch_rate:>6.2f}x")
        print()
        for output in ("float", "uint8"):
            largest, share = parity(sampler, exported[output].path, output, args.threads)
            unit = "levels" if output == "uint8" else ""
            print(
                f"parity, {output} output, {PARITY_IMAGES} images: max abs difference {largest:.3g} {unit}".rstrip()
                + f"; values that differ: {share:.4%}"
            )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ProductganError as error:
        print(f"onnx_speed.py: {error}", file=sys.stderr)
        sys.exit(1)
