"""How well the two phase methods agree, per trial and overall (markdown).

For each trial measured with phases: prefill and decode energy by subtraction and by boundary,
their relative difference (boundary vs subtraction) and that difference in units of the combined
1-sigma uncertainty. Reports render stored figures; nothing is recomputed from raw data.
"""

from __future__ import annotations

import math
from typing import Sequence

from wattlens.core.results import TrialResult


def _f(x: float | None, nd: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _compare(sm: dict, phase: str) -> tuple[float | None, float | None]:
    a, b = sm.get(f"{phase}_energy_gpu_j_subtraction"), sm.get(f"{phase}_energy_gpu_j_boundary")
    if a is None or b is None or a == 0:
        return None, None
    sa = sm.get(f"{phase}_energy_gpu_uncertainty_j_subtraction") or 0.0
    sb = sm.get(f"{phase}_energy_gpu_uncertainty_j_boundary") or 0.0
    sigma = math.hypot(sa, sb)
    return 100.0 * (b - a) / a, (abs(b - a) / sigma if sigma > 0 else None)


def phase_agreement_markdown(trials: Sequence[TrialResult]) -> str:
    rows = [t for t in trials if t.status == "ok" and "phase_methods" in t.summary]
    rows.sort(key=lambda t: (t.spec.model, t.spec.mode, t.spec.ctx_tokens, t.spec.gen_tokens))
    out = ["| model | mode | ctx | gen | prefill ms | decode ms | prefill J subtraction | prefill J boundary | "
           "prefill diff % | diff/σ | decode J subtraction | decode J boundary | decode diff % | diff/σ | "
           "Pre% sub / bnd | flags |", "|" + "---|" * 16]
    diffs: dict[str, list[tuple[float, float | None]]] = {"prefill": [], "decode": []}
    for t in rows:
        sm, s = t.summary, t.spec
        cells = [s.model, s.mode, str(s.ctx_tokens), str(s.gen_tokens),
                 _f(None if sm.get("prefill_time_s") is None else 1e3 * sm["prefill_time_s"], 1),
                 _f(None if sm.get("decode_time_s") is None else 1e3 * sm["decode_time_s"], 1)]
        for phase in ("prefill", "decode"):
            rel, nsig = _compare(sm, phase)
            if rel is not None:
                diffs[phase].append((rel, nsig))
            for m in ("subtraction", "boundary"):
                e, u = sm.get(f"{phase}_energy_gpu_j_{m}"), sm.get(f"{phase}_energy_gpu_uncertainty_j_{m}")
                cells.append("—" if e is None else f"{_f(e)} ± {_f(u)}")
            cells += [_f(rel), _f(nsig, 1)]
        cells.append(f"{_f(sm.get('prefill_share_pct_subtraction'))} / {_f(sm.get('prefill_share_pct_boundary'))}")
        flags = [f"{m}:{f}" for m in ("subtraction", "boundary") for f in sm.get(f"phase_flags_{m}") or []]
        cells.append(", ".join(flags))
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    for phase, ds in diffs.items():
        if not ds:
            out.append(f"{phase}: no trial has both methods measured.")
            continue
        worst = max(abs(r) for r, _ in ds)
        within = sum(1 for _, n in ds if n is not None and n <= 2.0)
        out.append(f"{phase}: methods differ by at most {worst:.2f}% (boundary vs subtraction); "
                   f"{within} of {len(ds)} trials agree within 2 combined sigma.")
    return "\n".join(out) + "\n"
