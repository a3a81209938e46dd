"""Energy at many output lengths from one long generation (the per-token-read trick).

A request that generates N tokens passes through the state of a request that generates n < N
tokens: same prefill, same first n-1 decode steps. So if the cumulative energy counter is read
at the timestamps of selected tokens, one repetition of a long generation yields the energy of
every shorter one. This module is the arithmetic only (no NVML): it takes the window start, the
token timestamps, and counter reads (time, cumulative joules since the window start) taken at
some tokens, and returns energy at the requested output lengths with an uncertainty.

Uncertainty model (the counter of A100/H100-class GPUs advances every `update_period_s` = T,
~100 ms, DESIGN.md section 4). A counter delta read at t is E(t - l_t) - E(-l_0): both the
baseline and the read lag the truth by an unknown time in [0, T). So:
* reads that show the same value as the read before carry no news (no update since): only the
  first read of each new value is an anchor, and the update it shows happened after the previous
  read, so its lag lies in [0, w) with w = min(T, time since the previous read) -- dense early
  reads pin the update down, sparse ones leave the full period;
* an anchor is corrected by the expected lags, + P x w / 2 (read) - P x T / 2 (baseline, taking
  the power before the window as the local power P: the runner's repetitions run back to back
  after a warmup, so a window opens on the previous repetition's decode), and carries their spread as
  uniform errors: P x w / sqrt(12) of its own, and P x T / sqrt(12) from the baseline, which is
  common to every anchor and so is added once, after interpolation. With w = T the corrections
  cancel and the figure equals the plain counter delta, as the trial's energy window does;
* P is the larger of the mean power over at least four periods around the anchor (shorter spans
  are mostly lag noise) and the whole window's mean power;
* between anchors energy is interpolated linearly in time (decode power is nearly constant); the
  error grows with the distance to the nearest anchor as `interp_rel_power_sd` x P x distance;
* lengths past the last read are not extrapolated (the answer is None for them).
Before the counter's first update in the window the energy is not resolved: such lengths come out
with an uncertainty of the order of their energy, and `predict_dataset` drops them by relative
uncertainty. Errors of different anchors are treated as independent and added in quadrature.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from wattlens.core.errors import BadInput
from wattlens.meter.token_reads import select_read_tokens  # noqa: F401  (re-exported: where callers look)


@dataclass(frozen=True)
class PrefixEnergy:
    """Energy from the window start until output token `output_tokens` was emitted."""

    output_tokens: int
    time_s: float  # since the window start
    energy_j: float | None
    uncertainty_j: float | None
    source: str  # "read" (a counter anchor at this token) | "interpolated" | "beyond last read"


@dataclass(frozen=True)
class _Anchor:
    token: int
    time_s: float
    energy_j: float  # corrected for the expected lags
    sd_j: float  # of the read's own lag; the baseline's lag is common to all anchors, added once
    power_w: float


def _validated_reads(times: list[float], reads) -> list[tuple[int, float, float]]:
    if not times:
        raise BadInput("no token timestamps")
    if any(b < a for a, b in zip(times, times[1:])):
        raise BadInput("token timestamps must be non-decreasing")
    pts = sorted((int(k), float(t), float(e)) for k, t, e in reads)
    if not pts:
        raise BadInput("no counter reads")
    for k, _, _ in pts:
        if not 1 <= k <= len(times):
            raise BadInput(f"read at token {k} outside 1..{len(times)}")
    if any(b[2] < a[2] for a, b in zip(pts, pts[1:])):
        raise BadInput("counter reads go backwards")
    return pts


def _local_power_w(raw: list[tuple[float, float]], t: float, period_s: float) -> float:
    """Power for an anchor's lag at t: the larger of the mean over >= 4 periods around t and the
    whole window's mean (counter deltas over shorter spans are mostly lag noise; the larger keeps
    the stated error on the safe side)."""
    whole = raw[-1][1] / raw[-1][0] if raw[-1][0] > 0 else 0.0
    before = [p for p in raw if p[0] <= t - 2 * period_s] or [raw[0]]
    after = [p for p in raw if p[0] >= t + 2 * period_s] or [raw[-1]]
    (t0, e0), (t1, e1) = before[-1], after[0]
    local = (e1 - e0) / (t1 - t0) if t1 - t0 >= 4 * period_s else 0.0
    return max(local, whole)


def _anchors(pts: list[tuple[int, float, float]], period_s: float) -> list[_Anchor]:
    """The first read of each new counter value, corrected and with its error (module docstring)."""
    raw = [(0.0, 0.0)] + [(t, e) for _, t, e in pts]
    out, prev_t, prev_e = [], 0.0, 0.0
    for k, t, e in pts:
        if e > prev_e:
            w = min(period_s, t - prev_t)
            p = _local_power_w(raw, t, period_s)
            out.append(_Anchor(k, t, e + p * (w - period_s) / 2.0, p * w / math.sqrt(12.0), p))
            prev_e = e
        prev_t = t
    return out


def energy_at_output_lengths(
    token_times_s: Sequence[float],
    reads: Sequence[tuple[int, float, float]],
    output_lengths: Sequence[int],
    update_period_s: float,
    *,
    interp_rel_power_sd: float = 0.05,
) -> list[PrefixEnergy]:
    """Energy at each of `output_lengths` from counter reads taken at some tokens.

    token_times_s: emission time of each output token, seconds since the window start
        (token_times_s[k] is token k+1), non-decreasing.
    reads: (token_number, read_time_s, cumulative_energy_j) with read_time_s since the window
        start (just after that token's emission) and the counter delta since the window start.
    update_period_s: the counter's update period (stored with every run).
    """
    times = [float(t) for t in token_times_s]
    pts = _validated_reads(times, reads)
    if update_period_s <= 0:
        raise BadInput("update_period_s must be positive")
    anchors = _anchors(pts, update_period_s)
    last_read_token = pts[-1][0]
    mean_power = pts[-1][2] / pts[-1][1] if pts[-1][1] > 0 else 0.0
    # the window start: zero by definition; its lag is the baseline error added to every answer
    nodes = [_Anchor(0, 0.0, 0.0, 0.0, anchors[0].power_w if anchors else mean_power)] + anchors

    def period_lag_sd(power_w: float) -> float:  # a lag uniform over one period (the window start's, ...)
        return power_w * update_period_s / math.sqrt(12.0)

    out = []
    for n in output_lengths:
        n = int(n)
        if not 1 <= n <= len(times):
            raise BadInput(f"output length {n} outside 1..{len(times)}")
        t_n = times[n - 1]
        if n > last_read_token:
            out.append(PrefixEnergy(n, t_n, None, None, "beyond last read"))
            continue
        exact = next((a for a in anchors if a.token == n), None)
        if exact is not None:
            out.append(PrefixEnergy(n, t_n, exact.energy_j, math.hypot(exact.sd_j, period_lag_sd(exact.power_w)), "read"))
            continue
        i1 = next((i for i, a in enumerate(nodes) if a.time_s >= t_n and a.token >= n), None)
        if i1 is None:  # after the last new counter value but before the last read: extend at its power
            a0 = nodes[-1]
            dist = t_n - a0.time_s
            energy = a0.energy_j + a0.power_w * dist
            # the window start's lag, and this length's own over a whole period (no later read shows the next update)
            sd = math.hypot(a0.sd_j, interp_rel_power_sd * a0.power_w * dist, period_lag_sd(a0.power_w),
                            period_lag_sd(a0.power_w))
        else:
            a0, a1 = nodes[i1 - 1], nodes[i1]
            frac = (t_n - a0.time_s) / (a1.time_s - a0.time_s) if a1.time_s > a0.time_s else 1.0
            energy = a0.energy_j + frac * (a1.energy_j - a0.energy_j)
            p = max(a0.power_w, a1.power_w)
            dist = min(t_n - a0.time_s, a1.time_s - t_n)
            sd = math.hypot((1 - frac) * a0.sd_j, frac * a1.sd_j, interp_rel_power_sd * p * dist, period_lag_sd(p))
        out.append(PrefixEnergy(n, t_n, energy, sd, "interpolated"))
    return out


def cumulative_reads_from_power(times_s: Sequence[float], power_w: Sequence[float],
                                token_times_s: Sequence[float], tokens: Sequence[int]) -> list[tuple[int, float, float]]:
    """Fallback when the runner has no counter reads at tokens: integrate a power timeline.

    Trapezoid integral of (times_s, power_w) up to each selected token's time, returned in the
    `reads` format of `energy_at_output_lengths`. The power sensor averages only part of each
    update period, so pass a larger `interp_rel_power_sd` when using these (e.g. 0.15).
    """
    if len(times_s) != len(power_w) or len(times_s) < 2:
        raise BadInput("power timeline needs >= 2 samples with matching times")
    reads = []
    for k in tokens:
        t_end = float(token_times_s[k - 1])
        e = 0.0
        for (ta, pa), (tb, pb) in zip(zip(times_s, power_w), zip(times_s[1:], power_w[1:])):
            if ta >= t_end:
                break
            tb_c = min(tb, t_end)
            pb_c = pa + (pb - pa) * (tb_c - ta) / (tb - ta) if tb > ta else pb
            e += 0.5 * (pa + pb_c) * (tb_c - ta)
        reads.append((int(k), t_end, e))
    return reads
