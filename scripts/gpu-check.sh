#!/usr/bin/env bash
# The GPU checks as one command, for a lent GPU machine whose minutes are counted: the CUDA tests
# (training in each precision, the step as a CUDA graph against the eager step, a graphed run
# resumed on the CPU), then the throughput cases that say how near the step comes to the card's
# limit (the reference loop, the canonical step with and without its graph, the photo presets at
# growing batches, against the card's data-sheet bfloat16 peak). About six minutes on an H100.
#
#   scripts/gpu-kit.sh                  # first, where there is network: fills .gpu-kit/
#   scripts/gpu-check.sh [OUT_FOLDER]   # on the GPU machine, from the repository root
#
# It writes gpu.txt, tests.log, throughput.log and throughput-cuda.json to OUT_FOLDER ($OUT, or
# ./gpu-check); a phase that fails is reported and the next one still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-check}}
mkdir -p "$out"
kit=.gpu-kit
python=${PYTHON:-python3}
if [ -d "$kit/wheels" ]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/productgan-site "$kit"/wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/productgan-site
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
timeout 300 "$python" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_graphs.py 2>&1 |
  tee "$out/tests.log" || status=1

echo "== throughput"
rm -f benchmarks/results/throughput-cuda.json  # this copy's file: only a fresh one comes back
timeout 420 "$python" benchmarks/throughput.py --device cuda --steps 100 --warmup 10 --cases \
  reference-64 canonical-fp32 canonical-fp32-eager canonical-bf16 canonical-bf16-eager \
  products64-bf16-b64 products64-bf16-b256 products64-bf16-b1024 products128-bf16-b64 products128-bf16-b256 \
  2>&1 | tee "$out/throughput.log" || status=1
cp benchmarks/results/throughput-cuda.json "$out/" 2>/dev/null || status=1
exit $status
