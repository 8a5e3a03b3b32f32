#!/usr/bin/env bash
# The GPU checks as one command, for a lent GPU machine whose minutes are counted: the CUDA tests
# (training in each precision, the step as a CUDA graph against the eager step, a graphed run
# resumed on the CPU), then the throughput cases that say how near the step comes to the card's
# limit (the reference loop, the canonical step with and without its graph, the photo presets at
# growing batches, against the card's data-sheet bfloat16 peak). At most nine minutes: each
# phase has its own time limit, within a ten-minute command.
#
#   scripts/gpu-kit.sh                  # first, where there is network: fills .gpu-kit/
#   scripts/gpu-check.sh [OUT_FOLDER]   # on the GPU machine, from the repository root
#
# .gpu-kit/ is ignored by git: whatever copies the tree to the GPU machine must take it along.
# It writes gpu.txt, tests.log, throughput.log and throughput-cuda.json to OUT_FOLDER ($OUT, or
# ./gpu-check); a phase that fails is reported and the next one still runs; the throughput JSON
# is rewritten after every case, so a phase cut short keeps the cases it finished.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-check}}
mkdir -p "$out"
kit=.gpu-kit
python=${PYTHON:-python3}
if ! "$python" -c "import jsonargparse" 2>/dev/null; then
  if [ ! -d "$kit/wheels" ]; then
    echo "jsonargparse is missing and there is no $kit/wheels: run scripts/gpu-kit.sh and bring $kit along" >&2
    exit 2
  fi
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/productgan-site "$kit"/wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/productgan-site
fi
if [ ! -f "$kit/fashion-mnist/train-images-idx3-ubyte.gz" ]; then
  echo "no Fashion-MNIST in $kit/fashion-mnist: run scripts/gpu-kit.sh and bring $kit along" >&2
  exit 2
fi
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export PRODUCTGAN_DATA="$PWD/$kit/fashion-mnist" PRODUCTGAN_CACHE=/tmp/productgan-cache
status=0

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$python" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
} >"$out/gpu.txt" 2>&1
cat "$out/gpu.txt"

echo "== CUDA tests"
per_test=()
"$python" -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout 90)  # one hung capture cannot take the phase
timeout 150 "$python" -m pytest -q -p no:cacheprovider "${per_test[@]}" tests/test_cuda.py 2>&1 |
  tee "$out/tests.log" || status=1

echo "== throughput"
timeout 360 "$python" benchmarks/throughput.py --device cuda --steps 50 --warmup 10 --results "$out/throughput-cuda.json" --cases \
  reference-64 canonical-fp32 canonical-fp32-eager canonical-bf16 canonical-bf16-eager \
  products64-bf16-b64 products64-bf16-b256 products64-bf16-b1024 products128-bf16-b64 products128-bf16-b256 \
  2>&1 | tee "$out/throughput.log" || status=1
[ -f "$out/throughput-cuda.json" ] || status=1
exit $status
