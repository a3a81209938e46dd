"""Counter reads at output tokens give the energy of every shorter generation (FakeGPU, 100 ms counter)."""

import pytest

from wattlens.analysis.token_energy import energy_at_output_lengths
from wattlens.hw.fake import FakeClock, FakeGPU
from wattlens.meter.energy import EnergyMeter
from wattlens.meter.token_reads import TokenEnergyReader, select_read_tokens

PREFILL_S, PREFILL_W, STEP_S, DECODE_W = 0.07, 600.0, 0.02, 400.0


def test_reads_at_tokens_recover_the_energy_of_shorter_outputs():
    clock = FakeClock()
    gpu = FakeGPU(clock, 80.0, update_phase_s=0.031)
    meter = EnergyMeter([gpu], clock_ns=clock.now_ns)
    gen = 256
    reader = TokenEnergyReader(meter, select_read_tokens(gen, 16))
    start_s = clock.now_s()
    reader.start()
    start_ns = clock.now_ns()
    token_times = []
    gpu.set_power_w(PREFILL_W)
    clock.advance(PREFILL_S)
    gpu.set_power_w(DECODE_W)
    for i in range(gen):
        if i:
            clock.advance(STEP_S)
        token_times.append(clock.now_s() - start_s)
        reader(i, clock.now_ns())
    reads = reader.reads(start_ns)
    assert [r[0] for r in reads] == sorted(reader.tokens)
    assert all(0 <= r[1] <= token_times[-1] + 1e-9 for r in reads)
    lengths = [16, 64, 128, 256]
    for pe in energy_at_output_lengths(token_times, reads, lengths, update_period_s=0.1):
        truth = gpu.true_energy_j(start_s, start_s + token_times[pe.output_tokens - 1])
        assert pe.energy_j == pytest.approx(truth, abs=3 * pe.uncertainty_j), pe
        assert pe.uncertainty_j < 0.1 * truth  # a usable figure, not a shrug


def test_reader_without_gpu_returns_no_reads():
    meter = EnergyMeter([], not_measured_reason="test")
    reader = TokenEnergyReader(meter, [1, 2])
    reader.start()
    reader(0, 10)
    assert reader.reads(0) == ()
