#!/usr/bin/env bash
# Produces results/h100/core/* on one H100 80GB. Usage (repo root, GPU machine):
#   OUT=<dir> bash results/h100/core/run.sh 8b      # Llama-3.1-8B sweep + decode benchmark
#   OUT=<dir> bash results/h100/core/run.sh gpt-oss    # GPT-OSS-20B sweep (one command, < 10 min)
#   OUT=<dir> bash results/h100/core/run.sh qwen3-32b  # Qwen3-32B sweep (one command, < 10 min)
# (the first H100 session ran "large" = both models in one command and hit its time limit)
set -u
part=$1
export PYTHONPATH=src PYTHONUNBUFFERED=1
W="python3 -m wattlens"
db=/tmp/core-$part.sqlite
[ "$part" = 8b ] && $W env --json > "$OUT/env.json" 2> /dev/null
$W sweep results/h100/core/sweep-$part.yaml --db $db --cooldown-s 10 > "$OUT/sweep-$part.log" 2>&1
echo "sweep exit $?" >> "$OUT/sweep-$part.log"
if [ "$part" = 8b ]; then
  python3 benchmarks/decode_roofline.py --profile --out "$OUT" > "$OUT/benchmark.log" 2>&1
  echo "benchmark exit $?" >> "$OUT/benchmark.log"
fi
$W export --db $db --format json --table all --out "$OUT/store-$part.json"
$W report --db $db --out "$OUT/report-$part.md"
tail -n 25 "$OUT/sweep-$part.log"; [ -f "$OUT/benchmark.log" ] && tail -n 40 "$OUT/benchmark.log"
