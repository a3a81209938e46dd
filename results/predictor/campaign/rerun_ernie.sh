#!/usr/bin/env bash
# Session 15: ERNIE-4.5-21B-A3B's families-7 sweeps again, after `models.build.spread_zero_routers`
# (transformers 5.17 on the GPU machines leaves its router at zero: every token took experts 0-5).
# Usage (repo root, GPU machine): OUT=<dir> bash results/predictor/campaign/rerun_ernie.sh <gpu-tag>
# Writes $OUT/moe_routing-<gpu-tag>-ernie.json (the routing check), $OUT/<gpu-tag>-families-7-ernie.json
# (store export) and its log. Same sweep flags as run.sh; stops starting sweeps after BUDGET_S.
set -u
gpu=$1
export PYTHONPATH=src PYTHONUNBUFFERED=1 CUDA_DEVICE_ORDER=PCI_BUS_ID
budget_s=${BUDGET_S:-540}
python3 results/predictor/experiments/moe_routing.py --gen 200 --out "$OUT/moe_routing-$gpu-ernie.json" \
    "ernie-4.5-21b-a3b|{}|8|128" 2>&1 | grep -v Warning
db=/tmp/predictor-$gpu-families-7-ernie.sqlite
log=$OUT/$gpu-families-7-ernie.log
for spec in results/predictor/campaign/parts-families-7/p0[234]-ernie-*.yaml; do
  left=$(( budget_s - SECONDS ))
  if [ $left -lt 30 ]; then echo "== $spec skipped: call budget spent" >> "$log"; continue; fi
  echo "== $spec $(date -u +%FT%TZ) (${left} s left)" >> "$log"
  timeout $left python3 -m wattlens sweep "$spec" --db "$db" --cooldown-s 5 --token-energy-reads 24 >> "$log" 2>&1
  echo "sweep exit $? $(date -u +%FT%TZ)" >> "$log"
done
python3 -m wattlens export --db "$db" --format json --table all --out "$OUT/$gpu-families-7-ernie.json"
grep -c "trials stored\|failed" "$log"; tail -n 3 "$log"
