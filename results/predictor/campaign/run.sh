#!/usr/bin/env bash
# Predictor dataset campaign, one or more parts per call (each part estimated < 7 min on one H100;
# see plan.md; parts of ~230 s can share a call).
# Usage (repo root, GPU machine, OUT = output folder):
#   OUT=<dir> bash results/predictor/campaign/run.sh <gpu-tag> <tier> <part> [<part> ...]
#   e.g. OUT=$OUT bash results/predictor/campaign/run.sh h100 core 00        (tiers: core, extended, mixed)
#        OUT=$OUT bash results/predictor/campaign/run.sh h100 core 06 07
# Writes per part $OUT/<gpu-tag>-<tier>-p<part>.json (store export, all tables: token times, token
# energy reads, power timeline) and .log, and once per GPU $OUT/env-<gpu-tag>.json. The whole call
# stops its sweeps at BUDGET_S (default 560 s) so that the exports always happen: trials finished by
# then are stored, and re-running the same part resumes where it stopped.
set -u
gpu=$1; tier=$2; shift 2
export PYTHONPATH=src PYTHONUNBUFFERED=1
W="python3 -m wattlens"
budget_s=${BUDGET_S:-560}
[ -f "$OUT/env-$gpu.json" ] || $W env --json > "$OUT/env-$gpu.json" 2> /dev/null
shopt -s nullglob
for part in "$@"; do
  name=$gpu-$tier-p$part
  db=/tmp/predictor-$name.sqlite
  specs=(results/predictor/campaign/parts-$tier/p$part-*.yaml)
  [ ${#specs[@]} -gt 0 ] || { echo "no specs for tier $tier part $part" >&2; exit 2; }
  for spec in "${specs[@]}"; do
    left=$(( budget_s - SECONDS ))
    if [ $left -lt 30 ]; then echo "== $spec skipped: call budget spent" >> "$OUT/$name.log"; continue; fi
    echo "== $spec $(date -u +%FT%TZ) (${left} s left)" >> "$OUT/$name.log"
    timeout $left $W sweep "$spec" --db "$db" --cooldown-s 5 --token-energy-reads 24 >> "$OUT/$name.log" 2>&1
    echo "sweep exit $? $(date -u +%FT%TZ)" >> "$OUT/$name.log"
  done
  [ -f "$db" ] && $W export --db "$db" --format json --table all --out "$OUT/$name.json"
  tail -n 5 "$OUT/$name.log"
done
