#!/usr/bin/env bash
# GPT-OSS-20B deployment study on one NVIDIA H100 80GB, one part per GPU command (each < 9 min).
# Usage (repo root, on the GPU machine; OUT = an empty folder that comes back):
#   OUT=<dir> bash results/h100/gpt-oss-20b-study/run.sh moe               # ~3-4 min (GPT-OSS-20B contexts)
#   OUT=<dir> bash results/h100/gpt-oss-20b-study/run.sh moe_ablations     # ~4-5 min (decoding, static, fp16/fp32)
#   OUT=<dir> bash results/h100/gpt-oss-20b-study/run.sh dense_a           # ~4-5 min (Qwen3-32B)
#   OUT=<dir> bash results/h100/gpt-oss-20b-study/run.sh dense_b           # ~4-5 min (Yi-34B)
#   OUT=<dir> bash results/h100/gpt-oss-20b-study/run.sh compiled_moe      # ~3-4 min
#   OUT=<dir> bash results/h100/gpt-oss-20b-study/run.sh compiled_dense_a  # ~3-4 min
#   OUT=<dir> bash results/h100/gpt-oss-20b-study/run.sh compiled_dense_b  # ~3-4 min
# Writes 5 files to $OUT: store-<part>.json, log-<part>.txt, env-<part>.json, command-<part>.txt,
# seconds-<part>.txt (wall seconds of the study command). Commit them into this folder, then render
# the report on any machine (no GPU needed):
#   bash results/h100/gpt-oss-20b-study/run.sh report
set -u
part=$1
here=results/h100/gpt-oss-20b-study
export PYTHONPATH=src PYTHONUNBUFFERED=1
W="${PY:-python3} -m wattlens"
if [ "$part" = report ]; then
  db=$(mktemp -d)/study.sqlite
  $W import $here/store-*.json --db "$db"
  $W study report gpt-oss-20b --db "$db" --out $here
  exit $?
fi
: "${OUT:?set OUT to the output folder}"
db=/tmp/study-$part.sqlite
cmd="$W study run gpt-oss-20b --part $part --db $db --cooldown-s 5"
echo "$cmd" > "$OUT/command-$part.txt"
$W env --json > "$OUT/env-$part.json" 2> /dev/null
start=$(date +%s)
# 540 s cap: trials are stored as they finish, so whatever ran is exported below.
timeout 540 $cmd > "$OUT/log-$part.txt" 2>&1
echo "study exit $?" >> "$OUT/log-$part.txt"
echo $(( $(date +%s) - start )) > "$OUT/seconds-$part.txt"
$W export --db $db --format json --table all --out "$OUT/store-$part.json"
grep -E " s  |trials stored|error" "$OUT/log-$part.txt" | tail -n 30
