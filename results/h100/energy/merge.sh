#!/usr/bin/env bash
# Run HERE after the GPU parts: copy their files into results/h100/energy, merge the stores,
# write the combined report and the two methods' agreement table. Usage: merge.sh DIR [DIR...]
set -eu
dest=results/h100/energy
for d in "$@"; do cp -f "$d"/* "$dest"/; done
export PYTHONPATH=src
db=$(mktemp -d)/energy.sqlite
python3 -m wattlens import --db "$db" $dest/store-ctx*.json
python3 -m wattlens report --db "$db" --out $dest/report.md
python3 benchmarks/phase_agreement.py --db "$db" --out $dest/phase_agreement.md
