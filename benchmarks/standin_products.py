"""Make a colour, non-square stand-in for a folder of product photos from Fashion-MNIST.

Each item is tinted a random colour, scaled to a random aspect ratio, pasted at a random place on
a white canvas of random non-square size, and saved as JPEG or PNG in one folder per category:
what `productgan prepare` meets in a retailer's catalogue export, built from data on this machine.

    python benchmarks/standin_products.py --out /tmp/standin --per-class 1000
    productgan prepare /tmp/standin --out /tmp/standin-64 --size 64
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from productgan.data import FASHION_MNIST_CLASSES, load_fashion_mnist


def make_photo(item: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A 28x28 grey item (bright on black) -> a tinted product on a white, non-square canvas."""
    colour = rng.integers(0, 220, 3)
    alpha = item.astype(np.float32)[..., None] / 255.0
    rgb = (255.0 * (1.0 - alpha) + colour * alpha).round().astype(np.uint8)
    product = Image.fromarray(rgb, "RGB")
    side = int(rng.integers(60, 140))
    aspect = float(rng.uniform(0.7, 1.4))
    product = product.resize((max(8, int(side * aspect)), side), Image.Resampling.BICUBIC)
    canvas_w = int(product.width * rng.uniform(1.0, 1.8))
    canvas_h = int(product.height * rng.uniform(1.0, 1.5))
    canvas = Image.new("RGB", (canvas_w, canvas_h), (255, 255, 255))
    canvas.paste(
        product,
        (int(rng.integers(0, canvas_w - product.width + 1)), int(rng.integers(0, canvas_h - product.height + 1))),
    )
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Folder to write the class folders into.")
    parser.add_argument("--per-class", type=int, default=1000, help="Images per category.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None, help="Folder with the Fashion-MNIST idx files (default: search).")
    args = parser.parse_args()

    source = load_fashion_mnist(args.data)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    start, written = time.perf_counter(), 0
    for label, name in enumerate(FASHION_MNIST_CLASSES):
        folder = out / name.replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        members = np.flatnonzero(source.train_labels == label)[: args.per_class]
        for index in members:
            photo = make_photo(source.train_images[index], rng)
            if rng.random() < 0.5:
                photo.save(folder / f"{index:05d}.jpg", quality=90)
            else:
                photo.save(folder / f"{index:05d}.png")
            written += 1
    print(f"Wrote {written} stand-in product photos to {out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
