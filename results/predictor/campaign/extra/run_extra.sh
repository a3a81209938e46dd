#!/usr/bin/env bash
# Run chosen specs into one part's store, resuming its committed export when there is one (sessions 10-11).
# Usage (repo root, GPU machine): OUT=<dir> BUDGET_S=<s> bash results/predictor/campaign/extra/run_extra.sh <store-name> <spec.yaml>...
#   e.g. ... run_extra.sh h200-families-3-p02 results/predictor/campaign/extra/falcon-7b-c1000-b8.yaml
#        ... run_extra.sh h200-extended-p04 results/predictor/campaign/parts-extended/p04-qwen3-30b-a3b-base-c1000-b16.yaml
# A committed export (campaign/store/<store-name>.json.gz) is imported first, so trials it holds for
# this GPU are skipped, and the export written to $OUT/<store-name>.json holds the old and new runs.
# The sweeps stop at BUDGET_S (default 560 s from the start) so that the export always happens.
# The sweep flags are run.sh's.
set -u
name=$1; shift
export PYTHONPATH=src PYTHONUNBUFFERED=1
db=/tmp/predictor-$name.sqlite
committed=results/predictor/campaign/store/$name.json.gz
if [ -f "$committed" ]; then
  gunzip -c "$committed" > "/tmp/$name.json"
  python3 -m wattlens import "/tmp/$name.json" --db "$db" > /dev/null
fi
for spec in "$@"; do
  left=$(( ${BUDGET_S:-560} - SECONDS ))
  if [ $left -lt 30 ]; then echo "== $spec skipped: budget spent" >> "$OUT/$name-extra.log"; continue; fi
  echo "== $spec $(date -u +%FT%TZ) (${left} s left)" >> "$OUT/$name-extra.log"
  timeout $left python3 -m wattlens sweep "$spec" --db "$db" --cooldown-s 5 --token-energy-reads 24 >> "$OUT/$name-extra.log" 2>&1
  echo "sweep exit $?" >> "$OUT/$name-extra.log"
done
[ -f "$db" ] && python3 -m wattlens export --db "$db" --format json --table all --out "$OUT/$name.json"
tail -n 4 "$OUT/$name-extra.log"
