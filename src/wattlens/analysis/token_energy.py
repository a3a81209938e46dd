"""Energy at many output lengths from one long generation (the per-token-read trick).

A request that generates N tokens passes through the state of a request that generates n < N
tokens: same prefill, same first n-1 decode steps. So if the cumulative energy counter is read
at the timestamps of selected tokens, one repetition of a long generation yields the energy of
every shorter one. This module is the arithmetic only (no NVML): it takes the window start, the
token timestamps, and counter reads (time, cumulative joules since the window start) taken at
some tokens, and returns energy at the requested output lengths with an uncertainty.

Uncertainty model (the counter of A100/H100-class GPUs advances every `update_period_s`,
~100 ms, see DESIGN.md section 4):
* quantisation: a read at time t reflects the energy up to the last update before t, so each
  read is low by between 0 and one period's energy; we correct by half a period at the local
  power and carry +-(half a period x power) as a uniform error (sd = half-width / sqrt(3));
* interpolation: between two reads the energy is interpolated linearly in time (decode power is
  nearly constant); the error bound grows with the distance to the nearest read, taken as
  `interp_rel_power_sd` x local power x that distance (default 5% of power: decode power varies
  slowly, prefill spikes are bracketed by the first read at token 1);
* lengths past the last read are not extrapolated (the answer is None for them).
The errors of different reads are treated as independent and added in quadrature.
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
    source: str  # "read" (a counter read at this token) | "interpolated" | "beyond last read"


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
    if not times:
        raise BadInput("no token timestamps")
    if any(b < a for a, b in zip(times, times[1:])):
        raise BadInput("token timestamps must be non-decreasing")
    if update_period_s <= 0:
        raise BadInput("update_period_s must be positive")
    pts = sorted((int(k), float(t), float(e)) for k, t, e in reads)
    if not pts:
        raise BadInput("no counter reads")
    for k, t, e in pts:
        if not 1 <= k <= len(times):
            raise BadInput(f"read at token {k} outside 1..{len(times)}")
    if any(b[2] < a[2] for a, b in zip(pts, pts[1:])):
        raise BadInput("counter reads go backwards")
    # Local power between consecutive reads (and from the window start to the first read).
    anchors = [(0, 0.0, 0.0)] + pts
    powers = []
    for (k0, t0, e0), (k1, t1, e1) in zip(anchors, anchors[1:]):
        powers.append((e1 - e0) / (t1 - t0) if t1 > t0 else 0.0)
    # Correct each read for the counter lag (half a period on average) and give it its error.
    half = update_period_s / 2.0
    corrected = [(0, 0.0, 0.0, 0.0)]  # token, time, energy, sd of energy
    for i, (k, t, e) in enumerate(pts):
        p = powers[i]
        corrected.append((k, t, e + half * p, half * p / math.sqrt(3.0)))
    out = []
    for n in output_lengths:
        n = int(n)
        if not 1 <= n <= len(times):
            raise BadInput(f"output length {n} outside 1..{len(times)}")
        t_n = times[n - 1]
        exact = next((c for c in corrected[1:] if c[0] == n), None)
        if exact is not None:
            out.append(PrefixEnergy(n, t_n, exact[2], exact[3], "read"))
            continue
        if n > corrected[-1][0]:
            out.append(PrefixEnergy(n, t_n, None, None, "beyond last read"))
            continue
        j = next(i for i, c in enumerate(corrected) if c[0] > n)
        (k0, t0, e0, s0), (k1, t1, e1, s1) = corrected[j - 1], corrected[j]
        frac = (t_n - t0) / (t1 - t0) if t1 > t0 else 0.0
        energy = e0 + frac * (e1 - e0)
        p = powers[j - 1]
        dist = min(t_n - t0, t1 - t_n)
        sd = math.sqrt(((1 - frac) * s0) ** 2 + (frac * s1) ** 2 + (interp_rel_power_sd * p * dist) ** 2)
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
