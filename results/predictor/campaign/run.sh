#!/usr/bin/env bash
# Predictor dataset campaign, one part per call (each estimated < 7 min on one H100; see plan.md).
# Usage (repo root, GPU machine, OUT = output folder):
#   OUT=<dir> bash results/predictor/campaign/run.sh <gpu-tag> <tier> <part>
#   e.g. OUT=$OUT bash results/predictor/campaign/run.sh h100 core 00     (tiers: core, extended)
# Writes $OUT/<gpu-tag>-<tier>-p<part>.json (store export, all tables: token times, power timeline),
# $OUT/<gpu-tag>-<tier>-p<part>.log and, once per GPU, $OUT/env-<gpu-tag>.json.
set -u
gpu=$1; tier=$2; part=$3
export PYTHONPATH=src PYTHONUNBUFFERED=1
W="python3 -m wattlens"
name=$gpu-$tier-p$part
db=/tmp/predictor-$name.sqlite
[ -f "$OUT/env-$gpu.json" ] || $W env --json > "$OUT/env-$gpu.json" 2> /dev/null
shopt -s nullglob
specs=(results/predictor/campaign/parts-$tier/p$part-*.yaml)
[ ${#specs[@]} -gt 0 ] || { echo "no specs for tier $tier part $part" >&2; exit 2; }
for spec in "${specs[@]}"; do
  echo "== $spec $(date -u +%FT%TZ)" >> "$OUT/$name.log"
  $W sweep "$spec" --db "$db" --cooldown-s 5 --token-energy-reads 24 >> "$OUT/$name.log" 2>&1
  echo "sweep exit $? $(date -u +%FT%TZ)" >> "$OUT/$name.log"
done
$W export --db "$db" --format json --table all --out "$OUT/$name.json"
tail -n 5 "$OUT/$name.log"
