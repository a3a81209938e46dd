#!/usr/bin/env bash
# Session 10: resume a part's committed store on a fresh machine and run one extra spec into it.
# Usage (repo root, GPU machine): OUT=<dir> BUDGET_S=<s> bash results/predictor/campaign/extra/run_extra.sh <store-name> <spec.yaml>
#   e.g. ... run_extra.sh h200-families-3-p02 results/predictor/campaign/extra/falcon-7b-c1000-b8.yaml
# The committed export (campaign/store/<store-name>.json.gz) is imported first, so trials it holds for
# this GPU are skipped, and the export written to $OUT/<store-name>.json holds the old and new runs.
set -u
name=$1; spec=$2
export PYTHONPATH=src PYTHONUNBUFFERED=1
db=/tmp/predictor-$name.sqlite
gunzip -c results/predictor/campaign/store/$name.json.gz > /tmp/$name.json
python3 -m wattlens import /tmp/$name.json --db "$db" > /dev/null
timeout "${BUDGET_S:-560}" python3 -m wattlens sweep "$spec" --db "$db" --cooldown-s 5 --token-energy-reads 24 >> "$OUT/$name-extra.log" 2>&1
echo "sweep exit $?" >> "$OUT/$name-extra.log"
python3 -m wattlens export --db "$db" --format json --table all --out "$OUT/$name.json"
tail -n 4 "$OUT/$name-extra.log"
