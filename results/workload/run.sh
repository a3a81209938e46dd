#!/usr/bin/env bash
# Reproduce results/workload/ from the repository root (CPU only; takes minutes).
set -euo pipefail
W="${PYTHON:-python} -m wattlens workload"
OUT=results/workload
# 1. features of the four bundled samples (Tables II-V)
$W features --out $OUT
# 2. per-query quality of two RANDOM-WEIGHT models of different sizes (quality is meaningless)
$W score --model tiny-llama --label small-random --limit 100 --gen-tokens 16 --out $OUT/quality-small.csv
OMP_NUM_THREADS=1 $W score --model tiny-gqa --label large-random --set hidden_size=256 --set intermediate_size=688 \
  --set num_hidden_layers=4 --limit 50 --gen-tokens 16 --out $OUT/quality-large.csv
# 3. routing report with measured H100 energies and the study's published DVFS savings
$W route -q $OUT/quality-small.csv -q $OUT/quality-large.csv \
  --tier small-random=llama-3.1-8b --tier large-random=qwen3-32b \
  --store results/h100/core/earlier/3-first-session/store-8b.json --store results/h100/core/earlier/3-first-session/store-large.json --mode eager \
  --dvfs "llama-3.1-8b=0.422=published, seeds/003 Table XVI (Llama-3.1-8B, RTX PRO 6000, 2842->180 MHz); not measured by wattlens" \
  --dvfs "qwen3-32b=0.440=published, seeds/003 Table XVI (Qwen2.5-32B row, nearest size, RTX PRO 6000, 2842->180 MHz); not measured by wattlens" \
  --out $OUT --note "$(cat $OUT/NOTE.md)"
