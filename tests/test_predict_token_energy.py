"""Energy at many output lengths from one generation: arithmetic and uncertainty."""

import pytest

from wattlens.analysis.token_energy import cumulative_reads_from_power, energy_at_output_lengths, select_read_tokens
from wattlens.core.errors import BadInput

PERIOD = 0.1


def steady(n_tokens=100, prefill_s=0.2, step_s=0.02, p_prefill=400.0, p_decode=250.0):
    times = [prefill_s + k * step_s for k in range(n_tokens)]  # token k+1 at prefill + k steps

    def energy(t):  # true cumulative energy
        return p_prefill * min(t, prefill_s) + p_decode * max(0.0, t - prefill_s)

    return times, energy


def lagged_read(energy, t, p):  # what a counter updating every PERIOD reports at t (read phase: mid-period)
    return energy(t) - p * PERIOD / 2


def test_reads_are_corrected_for_counter_lag_and_interpolated():
    times, energy = steady()
    reads = [(k, times[k - 1], lagged_read(energy, times[k - 1], 250.0 if k > 1 else 400.0)) for k in (1, 50, 100)]
    out = energy_at_output_lengths(times, reads, [1, 25, 50, 75, 100], PERIOD)
    assert [o.source for o in out] == ["read", "interpolated", "read", "interpolated", "read"]
    for o in out[1:]:
        assert abs(o.energy_j - energy(o.time_s)) <= 3 * o.uncertainty_j  # truth inside the stated error
        assert 0 < o.uncertainty_j < 0.05 * o.energy_j
    # an interpolated point far from reads is less certain than a read
    assert out[3].uncertainty_j > out[4].uncertainty_j * 0.5
    # the half-period uniform error at a read: sd = (P x period / 2) / sqrt(3)
    assert out[2].uncertainty_j == pytest.approx(250.0 * 0.05 / 3**0.5, rel=0.05)


def test_no_extrapolation_beyond_last_read():
    times, energy = steady()
    out = energy_at_output_lengths(times, [(1, times[0], energy(times[0])), (40, times[39], energy(times[39]))], [60],
                                   PERIOD)
    assert out[0].energy_j is None and out[0].source == "beyond last read"


def test_bad_inputs():
    times, energy = steady()
    with pytest.raises(BadInput):
        energy_at_output_lengths(times, [(1, 0.2, 50.0), (10, 0.38, 40.0)], [5], PERIOD)  # counter goes backwards
    with pytest.raises(BadInput):
        energy_at_output_lengths(times, [(101, 3.0, 1.0)], [5], PERIOD)
    with pytest.raises(BadInput):
        energy_at_output_lengths([0.2, 0.1], [(1, 0.2, 1.0)], [1], PERIOD)


def test_read_tokens_log_spaced_with_ends():
    toks = select_read_tokens(1024, 12)
    assert toks[0] == 1 and toks[-1] == 1024 and toks == sorted(set(toks))
    assert len([t for t in toks if t <= 32]) >= len([t for t in toks if t > 32]) - 1


def test_power_timeline_fallback_integrates():
    times, energy = steady()
    t = [i * 0.05 for i in range(60)]
    p = [400.0 if x < 0.2 else 250.0 for x in t]
    reads = cumulative_reads_from_power(t, p, times, [1, 50])
    assert reads[1][2] == pytest.approx(energy(times[49]), rel=0.03)
