#!/usr/bin/env bash
# Run HERE after the GPU parts: copy their files into results/h100/energy, merge the stores,
# write the combined report and the two methods' agreement table. Usage: merge.sh [DIR...]
# (no DIR: re-merge the files already committed here), e.g. PY=/work/venv/bin/python bash merge.sh
set -eu
dest=results/h100/energy
for d in "$@"; do cp -f "$d"/* "$dest"/; done
export PYTHONPATH=src
PY=${PY:-python3}  # e.g. PY=/work/venv/bin/python
db=$(mktemp -d)/energy.sqlite
$PY -m wattlens import --db "$db" $dest/store-ctx*.json
$PY -m wattlens report --db "$db" --out $dest/report.md
$PY benchmarks/phase_agreement.py --db "$db" --out $dest/phase_agreement.md
