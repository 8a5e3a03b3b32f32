"""Train the evaluator that ships with the package for Fashion-MNIST, and write it into the package.

    python benchmarks/ship_evaluator.py [--data FOLDER_OF_IDX_FILES] [--threads 2]

Fashion-MNIST at the default packing and split (32x32, 5,000 validation images, split seed 0) is
trained with productgan's own code and the default ``EvaluatorConfig``, exactly as the first
``productgan evaluate`` would, and written to ``src/productgan/evaluator/shipped/fashion-mnist-32/``
with the same ``evaluator.json`` a cache holds, so the cache's own checks (data fingerprint,
recipe, weights hash) decide when it is used. The weights are stored as float16 when that keeps
the test accuracy within 0.1 percentage point of float32, else as float32.

Training is seeded and runs on the CPU with a fixed thread count, so the same torch version gives
the same weights; run it again after any change to the recipe, the network or the data path, or
the shipped file stops matching and is ignored (the first evaluation then trains, as before).
"""

from __future__ import annotations

import argparse

import torch

from productgan.data import open_dataset
from productgan.data.prepare import DEFAULT_IMAGE_SIZE, DEFAULT_SPLIT_SEED, DEFAULT_VAL_SIZE
from productgan.evaluator.cache import SHIPPED_DIR, EvaluatorRequest, store_evaluator
from productgan.evaluator.inference import accuracy, native_images
from productgan.evaluator.network import EvaluatorNet

OUT = SHIPPED_DIR / f"fashion-mnist-{DEFAULT_IMAGE_SIZE}"
MAX_HALF_PRECISION_LOSS = 0.001  # test accuracy float16 may lose against float32: 0.1 percentage point
CHECK_SLICE = 1000  # the first test images, whose accuracy the tests re-measure


def rounded(net: EvaluatorNet, dtype: torch.dtype) -> EvaluatorNet:
    """A float32 copy of ``net`` whose floating-point tensors went through ``dtype``: what loading a
    file stored in ``dtype`` gives."""
    copy = EvaluatorNet(**net.config)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    copy.load_state_dict(state, strict=True)
    return copy.eval().requires_grad_(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist", help="a folder of the idx files (default: searched)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads; part of what fixes the weights")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    dataset = open_dataset(args.data, DEFAULT_IMAGE_SIZE, DEFAULT_VAL_SIZE, DEFAULT_SPLIT_SEED)
    request = EvaluatorRequest(dataset)
    net, info = request.train(progress=True)
    half = rounded(net, torch.float16)
    accuracy32, accuracy16 = info["test_accuracy"], request.test_accuracy(half)
    keep_half = accuracy32 - accuracy16 <= MAX_HALF_PRECISION_LOSS
    shipped, dtype = (half, torch.float16) if keep_half else (net, torch.float32)

    test_images = native_images(dataset, "test")[:CHECK_SLICE]
    test_labels = dataset.labels[dataset.indices("test")][:CHECK_SLICE]
    info = {
        **info,
        "test_accuracy": accuracy16 if keep_half else accuracy32,
        "test_accuracy_float32": accuracy32,
        "weights_dtype": str(dtype).removeprefix("torch."),
        "check_slice": {"first_test_images": CHECK_SLICE, "accuracy": accuracy(shipped, test_images, test_labels)},
        "torch_threads": args.threads,
        "written_by": "benchmarks/ship_evaluator.py",
    }
    info = store_evaluator(shipped, info, OUT, dtype)
    size_kb = (OUT / "evaluator.safetensors").stat().st_size / 1024
    print(
        f"test accuracy: float32 {accuracy32:.4%}, float16 {accuracy16:.4%}; shipped {info['weights_dtype']} "
        f"({size_kb:.0f} KiB) to {OUT}\nweights {info['weights_sha256']}\ntrain fingerprint {info['train_fingerprint']}"
    )


if __name__ == "__main__":
    main()
