#!/usr/bin/env bash
# CUDA checks for a machine with a GPU: the gpu-marked tests, the latency benchmarks and a timed
# pipeline of the laptop config on CUDA. Usage: benchmarks/gpu_check.sh OUT_DIR [PYTHON]
set -uo pipefail
OUT=${1:?usage: gpu_check.sh OUT_DIR [PYTHON]}
PY=${2:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
  | tee -a "$OUT/gpu.txt"
$PY -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider 2>&1 | tail -5 | tee "$OUT/gpu_tests.txt"
$PY -m pytest -q benchmarks/test_bench_latency.py -o addopts='' --benchmark-only -p no:cacheprovider \
  --benchmark-columns=min,median,max,rounds --benchmark-json="$OUT/bench_latency.json" 2>&1 | tail -25 \
  | tee "$OUT/bench.txt"
start=$(date +%s)
RUN=$(mktemp -d)/pipeline
$PY -m sparseconn pipeline tasks/phase_retrieval.yaml --device cuda --out "$RUN" --quiet 2>&1 | tail -15 \
  | tee "$OUT/pipeline.txt"
echo "pipeline wall time: $(( $(date +%s) - start )) s" | tee -a "$OUT/pipeline.txt"
cp "$RUN/summary.json" "$RUN/evaluation.json" "$RUN/figures/panels.png" "$OUT/" 2>/dev/null
