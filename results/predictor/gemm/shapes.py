"""Write the Linear shapes (out_features, in_features, bias) of the decode steps of every catalog model
and every configuration in the dataset: the shapes `wattlens.hw.gemm_table` measures on each GPU.

    PYTHONPATH=src python results/predictor/gemm/shapes.py data/predictor/energy_v1.csv \
        results/predictor/gemm/shapes.json
"""

import csv
import json
import sys
import warnings

from wattlens.analysis.predictor import config_for_row
from wattlens.models.catalog import list_catalog, resolve_model
from wattlens.models.decode_gemms import distinct_shapes


def main(dataset: str, out: str) -> None:
    warnings.filterwarnings("ignore")
    configs = {}
    for entry in list_catalog():
        config = resolve_model(entry.name).config
        configs[json.dumps(config, sort_keys=True)] = config
    with open(dataset, newline="") as f:
        for r in csv.DictReader(f):
            config = config_for_row(r["model"], r["overrides_json"], r["config_json"])
            configs[json.dumps(config, sort_keys=True)] = config
    shapes = distinct_shapes(configs.values())
    with open(out, "w") as f:
        json.dump([list(s) for s in shapes], f)
        f.write("\n")
    print(f"{len(configs)} configurations, {len(shapes)} Linear shapes -> {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
