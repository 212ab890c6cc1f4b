#!/usr/bin/env bash
# CUDA checks for a machine with a GPU, most telling first (a lease can end mid-run; each step writes its
# own file): the latency table of benchmarks/test_bench_latency.py on CUDA (reference and fast paths: BN
# folded, channels-last, bf16 weights, CUDA graphs; the demo child also compiled) and the demo child's
# throughput with 1 and 4 frames in flight, with the card's name and the matmul peaks in the JSON; the
# gpu-marked tests; then where a frame's time goes (benchmarks/gpu_profile.py).
# Usage: benchmarks/gpu_check.sh OUT_DIR [PYTHON] [SELECT]
# (SELECT: a pytest -k expression ANDed with "cuda", default "1024"; e.g. "1024 and NAS" for the child alone.)
# On the lent device machines pydantic etc. travel as wheels (.library/device/README.md): install
# them into a folder on PYTHONPATH before calling this script.
set -uo pipefail
OUT=${1:?usage: gpu_check.sh OUT_DIR [PYTHON] [SELECT]}
PY=${2:-python3}
SELECT=${3:-1024}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
  | tee -a "$OUT/gpu.txt"
$PY -m pytest -q benchmarks/test_bench_latency.py -o addopts='' --benchmark-only -p no:cacheprovider \
  -k "cuda and ($SELECT)" --benchmark-columns=min,median,max,rounds --benchmark-json="$OUT/bench_latency.json" \
  2>&1 | tail -40 | tee "$OUT/bench.txt"
$PY -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider > "$OUT/gpu_tests.txt" 2>&1
tail -5 "$OUT/gpu_tests.txt"
$PY -m benchmarks.gpu_profile "$OUT" 2>&1 | grep -v "Warning\|warn" | tee "$OUT/gpu_profile.txt"
