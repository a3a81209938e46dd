#!/usr/bin/env bash
# Predictor dataset campaign, one or more parts per call (each part estimated < 7 min on one H100;
# see plan.md).
# Usage (repo root, GPU machine, OUT = output folder):
#   OUT=<dir> bash results/predictor/campaign/run.sh <gpu-tag> <tier> <part> [<part> ...]
#   e.g. OUT=$OUT bash results/predictor/campaign/run.sh h100 core 00        (tiers: core, extended, capacity, families, mixed, mixed-graphed)
#        OUT=$OUT bash results/predictor/campaign/run.sh h100 core 06 07
#   On a host with several GPUs, GPUS="0 1" runs the parts side by side, one GPU each (dealt out in
#   turn; each process sees only its GPU, so its energy meter reads only that GPU):
#        OUT=$OUT GPUS="0 1" bash results/predictor/campaign/run.sh h200 core 00 01 02 03
# Writes per part $OUT/<gpu-tag>-<tier>-p<part>.json (store export, all tables: token times, token
# energy reads, power timeline), once per GPU tag $OUT/env-<gpu-tag>.json, and at the end one
# $OUT/logs-<gpu-tag>-<tier>-<parts>.tar.gz of the per-part logs (the device tool brings back at most
# 8 files per call: keep to <= 6 parts per call). Every GPU's
# sweeps stop at BUDGET_S (default 560 s from the call's start) so that the exports always happen:
# trials finished by then are stored, and re-running the same part resumes where it stopped.
set -u
gpu=$1; tier=$2; shift 2
export PYTHONPATH=src PYTHONUNBUFFERED=1 CUDA_DEVICE_ORDER=PCI_BUS_ID
W="python3 -m wattlens"
budget_s=${BUDGET_S:-560}
read -r -a gpus <<< "${GPUS:-}"
[ -f "$OUT/env-$gpu.json" ] || $W env --json > "$OUT/env-$gpu.json" 2> /dev/null
shopt -s nullglob
for part in "$@"; do  # check every part before running any
  specs=(results/predictor/campaign/parts-$tier/p$part-*.yaml)
  [ ${#specs[@]} -gt 0 ] || { echo "no specs for tier $tier part $part" >&2; exit 2; }
done

run_parts() {  # run_parts PART...: the parts one after another, in this shell's GPU environment
  for part in "$@"; do
    name=$gpu-$tier-p$part
    db=/tmp/predictor-$name.sqlite
    for spec in results/predictor/campaign/parts-$tier/p$part-*.yaml; do
      left=$(( budget_s - SECONDS ))
      if [ $left -lt 30 ]; then echo "== $spec skipped: call budget spent" >> "$OUT/$name.log"; continue; fi
      echo "== $spec $(date -u +%FT%TZ) (${left} s left, CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-all})" >> "$OUT/$name.log"
      timeout $left $W sweep "$spec" --db "$db" --cooldown-s 5 --token-energy-reads 24 >> "$OUT/$name.log" 2>&1
      echo "sweep exit $? $(date -u +%FT%TZ)" >> "$OUT/$name.log"
    done
    [ -f "$db" ] && $W export --db "$db" --format json --table all --out "$OUT/$name.json"
    tail -n 5 "$OUT/$name.log"
  done
}

pack_logs() {  # pack_logs PART...: the parts' logs in one archive (fewer files to bring back)
  local logs=() part
  for part in "$@"; do [ -f "$OUT/$gpu-$tier-p$part.log" ] && logs+=("$gpu-$tier-p$part.log"); done
  [ ${#logs[@]} -gt 0 ] && tar czf "$OUT/logs-$gpu-$tier-$(IFS=-; echo "$*").tar.gz" -C "$OUT" "${logs[@]}" \
    && (cd "$OUT" && rm -f "${logs[@]}")
}

if [ ${#gpus[@]} -le 1 ]; then
  [ ${#gpus[@]} -eq 1 ] && export CUDA_VISIBLE_DEVICES=${gpus[0]}
  run_parts "$@"
  pack_logs "$@"
  exit 0
fi
parts=("$@")
for i in "${!gpus[@]}"; do
  mine=()
  for j in "${!parts[@]}"; do
    [ $(( j % ${#gpus[@]} )) -eq "$i" ] && mine+=("${parts[$j]}")
  done
  [ ${#mine[@]} -gt 0 ] && CUDA_VISIBLE_DEVICES=${gpus[$i]} run_parts "${mine[@]}" &
done
wait
pack_logs "$@"
