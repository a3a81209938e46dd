"""Agreement of the two prefill/decode methods for every phase-measured trial in a results database.

    PYTHONPATH=src python benchmarks/phase_agreement.py --db energy.sqlite --out phase_agreement.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from wattlens.analysis.phase_agreement import phase_agreement_markdown
    from wattlens.store.sqlite import ResultStore

    with ResultStore(args.db) as store:
        trials = store.load_trials()
    text = ("# Prefill / decode energy: subtraction vs in-run boundary\n\n"
            "Energies are gross GPU J per generation ± 1 sigma; diff % = (boundary - subtraction) / subtraction; "
            "diff/σ = |difference| / combined 1-sigma uncertainty.\n\n" + phase_agreement_markdown(trials))
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
