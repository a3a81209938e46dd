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


def counter_reads(energy, times, tokens, phase_s, before_w=250.0):
    """What an NVML counter updating every PERIOD (at `phase_s` + k x PERIOD) reports as deltas from a
    baseline read at t = 0: both the baseline and each read see the energy up to the last update.
    Before the window the GPU draws `before_w`: the runner's repetitions run back to back after a
    warmup, so that is the previous repetition's decode power."""
    def shown(t):  # energy up to the last update at or before t
        last = phase_s + PERIOD * ((t - phase_s) // PERIOD)
        return energy(last) if last >= 0 else before_w * last
    return [(k, times[k - 1], shown(times[k - 1]) - shown(0.0)) for k in tokens]


def test_reads_are_corrected_for_counter_lag_and_interpolated():
    times, energy = steady()
    tokens = [1, 2, 3, 5, 8, 13, 20, 32, 50, 75, 100]
    lengths = [1, 4, 10, 25, 50, 60, 75, 90, 100]
    z = []
    for i in range(40):  # counter phases across one period
        phase = PERIOD * i / 40
        out = energy_at_output_lengths(times, counter_reads(energy, times, tokens, phase), lengths, PERIOD)
        for o in out:
            assert o.energy_j is not None and o.uncertainty_j > 0
            z.append((o.energy_j - energy(o.time_s)) / o.uncertainty_j)
        assert out[-1].source == "read" and out[-2].source == "interpolated"
        # a full-length figure: within a few percent, as the stated error says
        assert out[-1].uncertainty_j < 0.02 * out[-1].energy_j
    assert max(abs(v) for v in z) < 3.5  # the truth inside the stated error, every phase
    assert sum(abs(v) < 2 for v in z) / len(z) > 0.9
    assert abs(sum(z) / len(z)) < 0.5  # no systematic bias


def test_reads_showing_no_new_counter_value_are_not_anchors():
    times, energy = steady()
    # two reads 20 ms apart in the same counter period show the same value: only the first anchors
    reads = counter_reads(energy, times, [10, 11, 100], 0.05)
    assert reads[0][2] == reads[1][2]
    out = energy_at_output_lengths(times, reads, [10, 11], PERIOD)
    assert out[0].source == "read" and out[1].source == "interpolated"
    assert out[1].energy_j > out[0].energy_j


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


def test_lengths_after_the_last_new_counter_value_extend_at_its_power():
    times, energy = steady()
    reads = counter_reads(energy, times, [10, 11], 0.05)  # the last read shows no new value
    assert reads[0][2] == reads[1][2]
    out = energy_at_output_lengths(times, reads, [10, 11], PERIOD)
    assert out[1].source == "interpolated" and out[1].energy_j > out[0].energy_j
    assert abs(out[1].energy_j - energy(out[1].time_s)) <= 3 * out[1].uncertainty_j
