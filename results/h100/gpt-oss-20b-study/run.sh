#!/usr/bin/env bash
# GPT-OSS-20B deployment study on one NVIDIA H100 80GB, split into parts so each GPU command stays
# under 10 minutes. Usage (repo root, on the GPU machine; OUT = an empty folder that comes back):
#   OUT=<dir> bash results/h100/gpt-oss-20b-study/run.sh PART [PART ...]
# Parts (see src/wattlens/runner/studies/gpt-oss-20b.yaml): moe, moe_ablations, dense_a, dense_b.
# Per part it writes store-<part>.json, log-<part>.txt, env-<part>.json, command-<part>.txt (with any
# WATTLENS_* setting it ran under) and seconds-<part>.txt (wall seconds of the study command). With several parts they are packed into
# $OUT/study-<parts>.tar.gz (the device tool brings back at most 8 files); untar them into this folder.
# Parts run one after the other until BUDGET_S (default 560 s from the call's start): each part's
# study command is cut at the time left (at most 540 s); trials are stored as they finish, so
# whatever ran is exported. Then render the report on any machine (no GPU needed):
#   bash results/h100/gpt-oss-20b-study/run.sh report
set -u
here=results/h100/gpt-oss-20b-study
export PYTHONPATH=src PYTHONUNBUFFERED=1
W="${PY:-python3} -m wattlens"
if [ "$1" = report ]; then
  db=$(mktemp -d)/study.sqlite
  $W import $here/store-*.json --db "$db"
  $W study report gpt-oss-20b --db "$db" --out $here
  exit $?
fi
: "${OUT:?set OUT to the output folder}"
call_start=$(date +%s)
budget_s=${BUDGET_S:-560}
settings=$(env | grep -E '^WATTLENS_' | sort | tr '\n' ' ')
written=()  # parts that ran
files=()  # what they wrote to $OUT
for part in "$@"; do
  left=$(( budget_s - ($(date +%s) - call_start) - 20 ))  # 20 s kept for the export
  [ $left -gt 540 ] && left=540
  if [ $left -lt 60 ]; then echo "skipped $part: ${left} s left"; continue; fi
  db=/tmp/study-$part.sqlite
  cmd="$W study run gpt-oss-20b --part $part --db $db --cooldown-s 5"
  echo "$settings$cmd" > "$OUT/command-$part.txt"
  $W env --json > "$OUT/env-$part.json" 2> /dev/null
  start=$(date +%s)
  timeout $left $cmd > "$OUT/log-$part.txt" 2>&1
  echo "study exit $? (cut at $left s)" >> "$OUT/log-$part.txt"
  echo $(( $(date +%s) - start )) > "$OUT/seconds-$part.txt"
  $W export --db $db --format json --table all --out "$OUT/store-$part.json"
  grep -E " s  |trials stored|error" "$OUT/log-$part.txt" | tail -n 30
  written+=("$part")
  files+=("store-$part.json" "log-$part.txt" "env-$part.json" "command-$part.txt" "seconds-$part.txt")
done
if [ ${#written[@]} -gt 1 ]; then
  tar czf "$OUT/study-$(IFS=-; echo "${written[*]}").tar.gz" -C "$OUT" "${files[@]}" && (cd "$OUT" && rm -f "${files[@]}")
fi
