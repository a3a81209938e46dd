"""Metric definitions (DESIGN.md section 3) on hand-made numbers: no torch, no GPU."""

from __future__ import annotations

import numpy as np
import pytest

from wattlens.core import metrics as m
from wattlens.core.errors import BadInput
from wattlens.core.results import EnergyWindow, Repetition
from wattlens.core.spec import SamplingSpec, TrialSpec, parse_override

# Request start -> each output token (s): prefill 0.25 s, then gaps 0.05, 0.07, 0.06.
TOKEN_TIMES = (0.25, 0.30, 0.37, 0.43)
E2E = 0.45


def _window(i: int, *, measured: bool, energy_j: float = 10.0, active_j: float | None = 6.0,
            duration_s: float = 0.5, unc: float = 0.2, flags: tuple[str, ...] = ()) -> EnergyWindow:
    start = 1_000_000_000 * (i + 1)
    end = start + int(duration_s * 1e9)
    if not measured:
        return EnergyWindow(name=f"rep{i}", start_ns=start, end_ns=end, flags=flags,
                            not_measured_reason="no NVIDIA GPU visible")
    return EnergyWindow(name=f"rep{i}", start_ns=start, end_ns=end, energy_gpu_j=energy_j,
                        energy_gpu_uncertainty_j=unc, energy_gpu_active_j=active_j, idle_power_w=8.0,
                        counter_updates=5, update_period_s=0.1, flags=flags)


def _rep(i: int, window: EnergyWindow, *, batch: int = 2, times=TOKEN_TIMES, e2e: float = E2E) -> Repetition:
    return Repetition(index=i, input_tokens=16, output_tokens=len(times), batch_size=batch,
                      token_times_s=tuple(times), e2e_s=e2e, energy=window)


# -- latency definitions -------------------------------------------------------------------------

def test_ttft_is_first_token_time_including_prefill():
    assert m.ttft_s(TOKEN_TIMES) == 0.25


def test_tpot_is_e2e_minus_ttft_over_n_out_minus_one():
    assert m.tpot_s(E2E, 0.25, 4) == pytest.approx((0.45 - 0.25) / 3)
    assert m.tpot_s(1.0, 0.4, 2) == pytest.approx(0.6)


def test_tpot_is_none_for_a_single_output_token():
    assert m.tpot_s(0.3, 0.3, 1) is None
    assert m.tpot_s(0.3, 0.3, 0) is None


def test_decode_throughput_is_batch_over_tpot():
    assert m.decode_tokens_per_s(0.02, 8) == pytest.approx(400.0)
    assert m.decode_tokens_per_s(0.02, 1) == pytest.approx(50.0)
    assert m.decode_tokens_per_s(None, 8) is None
    assert m.decode_tokens_per_s(0.0, 8) is None


def test_itl_is_every_gap_between_consecutive_tokens():
    gaps = m.itl_s(TOKEN_TIMES)
    assert gaps == pytest.approx([0.05, 0.07, 0.06])
    assert m.itl_s([0.1]) == []


# -- percentiles ---------------------------------------------------------------------------------

def test_p95_with_19_samples_says_n_too_small_instead_of_the_max():
    values = list(range(1, 20))
    p = m.percentile(values, 95)
    assert p["value"] is None
    assert p["n"] == 19
    assert "n too small" in p["note"]


def test_p95_with_20_samples_is_the_numpy_percentile():
    values = [float(v) for v in range(1, 21)]
    p = m.percentile(values, 95)
    assert p["n"] == 20 and p["note"] is None
    assert p["value"] == pytest.approx(float(np.percentile(values, 95)))
    assert p["value"] < max(values)  # not the max in disguise


def test_p99_needs_100_samples():
    assert m.percentile(list(range(99)), 99)["value"] is None
    assert "n too small" in m.percentile(list(range(99)), 99)["note"]
    values = [float(v) for v in range(100)]
    assert m.percentile(values, 99)["value"] == pytest.approx(float(np.percentile(values, 99)))


def test_p50_works_from_one_sample_and_empty_says_no_samples():
    assert m.percentile([3.0], 50) == {"value": 3.0, "n": 1, "note": None}
    empty = m.percentile([], 50)
    assert empty["value"] is None and empty["n"] == 0 and empty["note"]


# -- summarise_repetitions -----------------------------------------------------------------------

def test_summary_latency_figures_from_hand_made_repetitions():
    reps = [_rep(i, _window(i, measured=True)) for i in range(3)]
    s = m.summarise_repetitions(reps)
    assert s["n_repetitions"] == 3 and s["batch_size"] == 2 and s["output_tokens"] == 4
    assert s["ttft_s_median"] == pytest.approx(0.25)
    assert s["tpot_s_median"] == pytest.approx(0.2 / 3)
    assert s["decode_tokens_per_s"] == pytest.approx(2 / (0.2 / 3))
    assert s["e2e_tokens_per_s"] == pytest.approx(2 * 4 / 0.45)
    assert s["itl_s_list"] == [pytest.approx([0.05, 0.07, 0.06])] * 3
    assert s["e2e_s_p50"]["value"] == pytest.approx(0.45) and s["e2e_s_p50"]["n"] == 3
    assert s["e2e_s_p95"]["value"] is None and s["e2e_s_p95"]["n"] == 3
    assert s["e2e_s_p99"]["value"] is None
    assert s["itl_s_p50"]["n"] == 9


def test_summary_energy_with_measured_windows():
    energies = [10.0, 12.0, 11.0]
    actives = [6.0, 8.0, 7.0]
    reps = [_rep(i, _window(i, measured=True, energy_j=e, active_j=a,
                            flags=("short_window",) if i == 1 else ()))
            for i, (e, a) in enumerate(zip(energies, actives))]
    s = m.summarise_repetitions(reps)
    tokens = 2 * 4  # batch x output tokens per repetition
    assert s["energy_measured"] is True and s["energy_not_measured_reason"] is None
    assert s["energy_gpu_j_median"] == pytest.approx(11.0)
    assert s["energy_gpu_j_uncertainty"] == pytest.approx(0.2)
    assert s["energy_gpu_active_j_median"] == pytest.approx(7.0)
    assert s["energy_gpu_j_per_output_token"] == pytest.approx(11.0 / tokens)
    assert s["energy_gpu_j_per_1k_output_tokens"] == pytest.approx(1000 * 11.0 / tokens)
    assert s["energy_gpu_j_per_prompt"] == pytest.approx(11.0 / 2)
    # tokens per joule, not per watt: dividing by power (11 J / 0.5 s = 22 W) would give 8/22.
    assert s["output_tokens_per_j"] == pytest.approx(tokens / 11.0)
    assert s["output_tokens_per_j"] != pytest.approx(tokens / 22.0)
    assert s["average_power_w"] == pytest.approx(22.0)
    assert s["energy_gpu_active_j_per_output_token"] == pytest.approx(7.0 / tokens)
    assert s["energy_gpu_active_j_per_1k_output_tokens"] == pytest.approx(7000.0 / tokens)
    assert s["output_tokens_per_active_j"] == pytest.approx(tokens / 7.0)
    assert s["energy_flags"] == ["short_window"]


def test_summary_energy_unmeasured_is_none_with_reason_never_zero():
    reps = [_rep(i, _window(i, measured=False)) for i in range(3)]
    s = m.summarise_repetitions(reps, params_active=1e9)
    assert s["energy_measured"] is False
    assert s["energy_not_measured_reason"] == "no NVIDIA GPU visible"
    for key in ("energy_gpu_j_median", "energy_gpu_j_uncertainty", "energy_gpu_active_j_median",
                "energy_gpu_j_per_output_token", "energy_gpu_j_per_1k_output_tokens",
                "energy_gpu_j_per_prompt",
                "output_tokens_per_j", "average_power_w", "ape_output_tokens_per_j_per_active_b"):
        assert s[key] is None, key
    # latency is still there
    assert s["tpot_s_median"] == pytest.approx(0.2 / 3)


def test_summary_energy_one_unmeasured_window_makes_all_energy_none():
    reps = [_rep(0, _window(0, measured=True)), _rep(1, _window(1, measured=False))]
    s = m.summarise_repetitions(reps)
    assert s["energy_measured"] is False
    assert s["energy_gpu_j_median"] is None and s["output_tokens_per_j"] is None
    assert s["energy_not_measured_reason"]


def test_ape_is_per_active_billion_parameters():
    reps = [_rep(i, _window(i, measured=True, energy_j=8.0)) for i in range(2)]
    s = m.summarise_repetitions(reps, params_active=2.5e9, peak_memory_bytes=4e9)
    decode = 2 / (0.2 / 3)  # 30 tok/s
    assert s["ape_decode_tokens_per_s_per_active_b"] == pytest.approx(decode / 2.5)
    assert s["ape_output_tokens_per_j_per_active_b"] == pytest.approx((8 / 8.0) / 2.5)
    assert s["ape_inv_ttft_per_s_per_active_b"] == pytest.approx((1 / 0.25) / 2.5)
    assert s["decode_tokens_per_s_per_peak_gb"] == pytest.approx(decode / 4.0)


def test_ape_and_per_gb_are_none_without_params_or_memory():
    s = m.summarise_repetitions([_rep(0, _window(0, measured=True))])
    assert s["ape_decode_tokens_per_s_per_active_b"] is None
    assert s["ape_inv_ttft_per_s_per_active_b"] is None
    assert s["decode_tokens_per_s_per_peak_gb"] is None


def test_roofline_percentages_on_hand_numbers():
    reps = [_rep(i, _window(i, measured=False)) for i in range(2)]
    # decode: 30 tok/s achieved (batch 2, TPOT 1/15 s); bound = 2 x 1e12 B/s / 1e10 B = 200 tok/s -> 15 %.
    # prefill: 1e12 FLOPs at 1e13 FLOP/s = 0.1 s bound; TTFT 0.25 s -> 40 %.
    s = m.summarise_repetitions(reps, decode_bytes_per_step=1e10, hbm_bytes_per_s=1e12,
                                prefill_flops=1e12, peak_flops_per_s=1e13)
    assert s["decode_roofline_tokens_per_s"] == pytest.approx(200.0)
    assert s["decode_roofline_pct"] == pytest.approx(15.0)
    assert s["prefill_roofline_s"] == pytest.approx(0.1)
    assert s["prefill_roofline_pct"] == pytest.approx(40.0)


def test_roofline_is_none_without_gpu_figures():
    s = m.summarise_repetitions([_rep(0, _window(0, measured=False))], decode_bytes_per_step=1e10,
                                prefill_flops=1e12)
    assert s["decode_roofline_pct"] is None and s["prefill_roofline_pct"] is None


def test_summary_of_single_token_outputs_has_no_tpot_or_decode_rate():
    reps = [_rep(i, _window(i, measured=False), times=(0.2,), e2e=0.2) for i in range(2)]
    s = m.summarise_repetitions(reps)
    assert s["tpot_s_median"] is None
    assert s["decode_tokens_per_s"] is None
    assert s["itl_s_list"] == [[], []]


def test_summary_of_nothing_is_empty():
    assert m.summarise_repetitions([]) == {}


# -- TrialSpec identity --------------------------------------------------------------------------

def test_trial_id_is_stable_across_equal_instances():
    a = TrialSpec(model="tiny-llama", ctx_tokens=16, gen_tokens=4, overrides=(("num_hidden_layers", 2),))
    b = TrialSpec(model="tiny-llama", ctx_tokens=16, gen_tokens=4, overrides=(("num_hidden_layers", 2),))
    assert a is not b and a.trial_id == b.trial_id
    assert len(a.trial_id) == 16 and int(a.trial_id, 16) >= 0
    assert TrialSpec.from_dict(a.to_dict()).trial_id == a.trial_id


@pytest.mark.parametrize("change", [
    {"model": "tiny-gqa"}, {"ctx_tokens": 17}, {"gen_tokens": 5}, {"batch_size": 2}, {"dtype": "fp32"},
    {"mode": "static"}, {"sampling": SamplingSpec(temperature=0.7)},
    {"overrides": (("num_hidden_layers", 3),)},
    {"repeats": 6}, {"warmups": 2}, {"prompt": "text"}, {"device": "cpu"}, {"seed": 1},
])
def test_trial_id_changes_when_any_field_changes(change):
    base = TrialSpec(model="tiny-llama", ctx_tokens=16, gen_tokens=4)
    assert base.with_(**change).trial_id != base.trial_id


def test_parse_override_reads_json_values_else_strings():
    assert parse_override("num_hidden_layers=16") == ("num_hidden_layers", 16)
    assert parse_override("rope_theta=1e6") == ("rope_theta", 1e6)
    assert parse_override("tie_word_embeddings=false") == ("tie_word_embeddings", False)
    assert parse_override("layer_types=[\"full_attention\"]") == ("layer_types", ["full_attention"])
    assert parse_override("hidden_act=silu") == ("hidden_act", "silu")
    assert parse_override(" k =a=b") == ("k", "a=b")


@pytest.mark.parametrize("text", ["num_hidden_layers", "=3", " =3"])
def test_parse_override_rejects_missing_key_or_equals(text):
    with pytest.raises(BadInput, match="key=value"):
        parse_override(text)
