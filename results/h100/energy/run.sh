#!/usr/bin/env bash
# Produces results/h100/energy/* on one H100 80GB, in parts that each stay under 9 minutes and
# write at most 8 files to $OUT. Usage (repo root, GPU machine):
#   OUT=<dir> bash results/h100/energy/run.sh ctx128    # phase sweep, ctx 128  x gen {64, 256}
#   OUT=<dir> bash results/h100/energy/run.sh ctx512    # phase sweep, ctx 512  x gen {64, 256}
#   OUT=<dir> bash results/h100/energy/run.sh ctx2048   # phase sweep, ctx 2048 x gen {64, 256} + timeline PNG
#   OUT=<dir> bash results/h100/energy/run.sh zeus      # wattlens vs Zeus, 11 windows 0.5-30 s (carry .whl)
# Afterwards, here: bash results/h100/energy/merge.sh <dir with the parts' files>
set -u
part=$1
export PYTHONPATH=src PYTHONUNBUFFERED=1 CUDA_DEVICE_ORDER=PCI_BUS_ID
W="python3 -m wattlens"
case "$part" in
  ctx128|ctx512|ctx2048)
    ctx=${part#ctx}
    db=/tmp/energy-$part.sqlite
    sed "s/^ctx: .*/ctx: $ctx/" results/h100/energy/sweep-phases.yaml > /tmp/sweep-$part.yaml
    [ "$part" = ctx128 ] && $W env --json > "$OUT/env.json" 2> /dev/null
    timeout 480 $W sweep /tmp/sweep-$part.yaml --db $db --cooldown-s 10 --phases > "$OUT/sweep-$part.log" 2>&1
    echo "sweep exit $?" >> "$OUT/sweep-$part.log"
    $W export --db $db --format json --table all --out "$OUT/store-$part.json"
    $W report --db $db --out "$OUT/report-$part.md"
    if [ "$part" = ctx2048 ]; then
      tid=$(python3 -c "
from wattlens.store.sqlite import ResultStore
with ResultStore('$db') as s:
    ok = [t for t in s.load_trials() if t.status == 'ok' and t.spec.gen_tokens == 64]
    print(ok[0].trial_id if ok else '')")
      [ -n "$tid" ] && $W plot timeline "$tid" --db $db --out "$OUT/timeline-llama-3.1-8b-ctx2048-gen64.png"
    fi
    tail -n 20 "$OUT/sweep-$part.log"
    ;;
  zeus)
    if ! python3 -c "import zeus.monitor" 2> /dev/null; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "zeus wheels missing: run results/h100/energy/fetch_wheels.sh here and carry .whl"; exit 3; }
      export PYTHONPATH=src:/tmp/site
    fi
    timeout 420 python3 benchmarks/zeus_crosscheck.py --out "$OUT" > "$OUT/zeus_crosscheck.log" 2>&1
    echo "crosscheck exit $?" >> "$OUT/zeus_crosscheck.log"
    tail -n 30 "$OUT/zeus_crosscheck.log"
    ;;
  *) echo "unknown part $part"; exit 2 ;;
esac
