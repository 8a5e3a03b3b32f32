#!/usr/bin/env bash
# Make sure the Fashion-MNIST idx files are where productgan looks for them; on Debian/Ubuntu,
# install them with apt when they are missing. Nothing is downloaded from anywhere else.
set -euo pipefail

files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
folders=()
[ -n "${PRODUCTGAN_DATA:-}" ] && folders+=("$PRODUCTGAN_DATA")
folders+=(/usr/share/datasets/fashion-mnist "$HOME/.cache/productgan/fashion-mnist")

has_all() {
  local f
  for f in "${files[@]}"; do
    [ -f "$1/$f.gz" ] || [ -f "$1/$f" ] || return 1
  done
}

for folder in "${folders[@]}"; do
  if has_all "$folder"; then
    echo "Fashion-MNIST found in $folder"
    exit 0
  fi
done

if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
  echo "Fashion-MNIST is missing; installing the Debian package dataset-fashion-mnist"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist
  has_all /usr/share/datasets/fashion-mnist && exit 0
fi

echo "Fashion-MNIST was not found in: ${folders[*]}." >&2
echo "Install it with 'apt-get install dataset-fashion-mnist' (Debian/Ubuntu), or download the four" >&2
echo "idx .gz files from https://github.com/zalandoresearch/fashion-mnist into ~/.cache/productgan/fashion-mnist" >&2
echo "(or any folder, then set PRODUCTGAN_DATA to it)." >&2
exit 1
