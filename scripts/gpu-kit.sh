#!/usr/bin/env bash
# Gather, on a machine with network, what scripts/gpu-check.sh needs on a GPU machine that has
# PyTorch but nothing else of productgan's and no network: the pure-Python wheels of the
# dependencies such a machine lacks, and the Fashion-MNIST idx files. Everything goes in
# .gpu-kit/ (ignored by git, about 31 MB): copy it to the GPU machine with the working tree.
#
#   scripts/gpu-kit.sh            # wheels for Python 3.12 (the GPU image's), then the data
set -euo pipefail
cd "$(dirname "$0")/.."
kit=.gpu-kit
python=${PYTHON:-.venv/bin/python}
mkdir -p "$kit/wheels" "$kit/fashion-mnist"
# jsonargparse and what its signatures extra needs; PyYAML, numpy, Pillow, safetensors and tqdm
# come with a PyTorch image.
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  -d "$kit/wheels" jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0
bash scripts/ensure-fashion-mnist.sh >/dev/null
for folder in "${PRODUCTGAN_DATA:-}" /usr/share/datasets/fashion-mnist "$HOME/.cache/productgan/fashion-mnist"; do
  if [ -n "$folder" ] && [ -f "$folder/train-images-idx3-ubyte.gz" ]; then
    cp "$folder"/*-ubyte.gz "$kit/fashion-mnist/"
    break
  fi
done
ls "$kit/fashion-mnist"/train-images-idx3-ubyte.gz >/dev/null
du -sh "$kit"
