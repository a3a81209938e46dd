"""Agreement of the two prefill/decode methods for every phase-measured trial in a results database.

    PYTHONPATH=src python benchmarks/phase_agreement.py --db energy.sqlite --out phase_agreement.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HEADER = """# Prefill / decode energy: subtraction vs in-run boundary

Energies are gross GPU J per generation ± 1 sigma. 'σ % (≤5)': that sigma in % of the energy, ✓ where
it meets the ±5% target. 'ms' and 'W': the duration each method's energy refers to and the mean power
it implies (subtraction: a prefill-only call, i.e. a whole one-token `generate`, and the full call
minus it, from the amplified passes; boundary: start to first token and first token to end of its
own runs). The '(reps)' column is the measured repetitions' median. diff % = (boundary - subtraction)
/ subtraction; diff/σ = |difference| / combined 1-sigma uncertainty; 'within 5%': |diff %| <= 5.
"""

DELAY_HEADER = """## What a late energy counter would do to the boundary fit

The boundary fit assumes that the energy between two counter ticks was drawn between them on the
host clock. For each assumed delay (the counter reporting energy that much later), the table gives
the true prefill and gap ('other') powers that would have produced the powers the fit found, and
the residual RMS that the delay alone would leave in the fit. Computed from each trial's stored
run marks and fitted powers (`wattlens.analysis.phase_agreement.delay_sensitivity`); the raw ticks of
these runs were not stored, so this is a what-if, not a measurement. A delay whose residual
exceeds the fit's measured residual is ruled out.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from wattlens.analysis.phase_agreement import (counter_lag_markdown, delay_sensitivity_markdown,
                                                   phase_agreement_markdown)
    from wattlens.store.sqlite import ResultStore

    with ResultStore(args.db) as store:
        trials = store.load_trials()
        payloads = {a.trial_id: a.payload for a in store.load_artifacts(kind="phase_energy") if a.trial_id}
    ok = [t for t in trials if t.status == "ok" and "phase_methods" in t.summary]
    text = HEADER + "\n" + phase_agreement_markdown(ok) + "\n" + DELAY_HEADER + "\n"
    text += delay_sensitivity_markdown(ok, payloads)
    scans = counter_lag_markdown(ok, payloads)
    if scans:
        text += ("\n## Counter-delay scan of the boundary runs (stored ticks)\n\nThe boundary fit repeated "
                 "for assumed delays of -20 to +50 ms; the delay with the smallest residual, and the phase "
                 "energies its fit gives.\n\n" + scans)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
