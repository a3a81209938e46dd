#!/usr/bin/env bash
# Produces results/h100/core/* on one H100 80GB; each part is one GPU command (< 10 min).
# Usage (repo root, GPU machine, OUT = the folder that comes back):
#   OUT=<dir> bash results/h100/core/run.sh 8b          # Llama-3.1-8B sweep: eager, static, compiled
#   OUT=<dir> bash results/h100/core/run.sh benchmark   # compiled decode vs roofline + harness overhead (+ kernel profile)
#   OUT=<dir> bash results/h100/core/run.sh gpt-oss     # GPT-OSS-20B sweep: eager, compiled
#   OUT=<dir> bash results/h100/core/run.sh qwen3-32b   # Qwen3-32B sweep: eager, compiled
# The first H100 session ran "8b" with the benchmark inside it, and "large" (= both big models in one
# command, sweep-large.yaml), which hit its time limit.
# BENCH_VARIANTS picks the compiled loop's decode attention(s) to compare (default: reductions,flex);
# BENCH_GENS the output length(s), each its own compile (default: 256); BENCH_MODEL the model
# (default llama-3.1-8b); BENCH_EXPERTS the MoE decode experts kernel(s) (auto, batched_mm, gathered).
set -u
part=$1
export PYTHONPATH=src PYTHONUNBUFFERED=1
W="python3 -m wattlens"
$W env --json > "$OUT/env.json" 2> /dev/null
if [ "$part" = benchmark ]; then
  python3 benchmarks/decode_roofline.py --profile --model "${BENCH_MODEL:-llama-3.1-8b}" \
    --decode-attention "${BENCH_VARIANTS:-reductions,flex}" --decode-experts "${BENCH_EXPERTS:-auto}" \
    --gen "${BENCH_GENS:-256}" --out "$OUT" > "$OUT/benchmark.log" 2>&1
  echo "benchmark exit $?" >> "$OUT/benchmark.log"
  tail -n 60 "$OUT/benchmark.log"
  # GPU busy vs wall time per step, for the DVFS what-if (issue #6), in what is left of the 10 minutes
  timeout $((570 - SECONDS)) python3 benchmarks/busy_time.py --model llama-3.1-8b --modes eager,static \
    --out "$OUT/busy-8b.json" > "$OUT/busy-8b.log" 2>&1
  echo "busy_time exit $?" >> "$OUT/busy-8b.log"
  tail -n 5 "$OUT/busy-8b.log"
  exit 0
fi
db=/tmp/core-$part.sqlite
timeout 540 $W sweep results/h100/core/sweep-$part.yaml --db $db --cooldown-s 10 > "$OUT/sweep-$part.log" 2>&1
echo "sweep exit $?" >> "$OUT/sweep-$part.log"
# Exported even when the sweep hit its time limit: finished trials are in the database.
$W export --db $db --format json --table all --out "$OUT/store-$part.json"
$W report --db $db --out "$OUT/report-$part.md"
grep -v "━\|│\|┃" "$OUT/sweep-$part.log" | tail -n 25

