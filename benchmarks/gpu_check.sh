#!/usr/bin/env bash
# CUDA checks for a machine with a GPU: the gpu-marked tests, then the latency table of
# benchmarks/test_bench_latency.py on CUDA at 1024x1024 (every model, reference and fast path: BN folded,
# channels-last, bf16, CUDA graphs; the demo child also compiled), with the card's name and the
# matmul peaks in the JSON. Usage: benchmarks/gpu_check.sh OUT_DIR [PYTHON] [SIZES]
# (SIZES: a pytest -k expression over the sizes, default "1024").
# On the lent device machines pydantic etc. travel as wheels (.library/device/README.md): install
# them into a folder on PYTHONPATH before calling this script.
set -uo pipefail
OUT=${1:?usage: gpu_check.sh OUT_DIR [PYTHON] [SIZES]}
PY=${2:-python3}
SIZES=${3:-1024}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
  | tee -a "$OUT/gpu.txt"
$PY -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider 2>&1 | tail -5 | tee "$OUT/gpu_tests.txt"
$PY -m pytest -q benchmarks/test_bench_latency.py -o addopts='' --benchmark-only -p no:cacheprovider \
  -k "cuda and ($SIZES)" --benchmark-columns=min,median,max,rounds --benchmark-json="$OUT/bench_latency.json" \
  2>&1 | tail -40 | tee "$OUT/bench.txt"
