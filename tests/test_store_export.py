"""Export: CSV, Parquet and JSON files read back with the right rows and columns."""

from __future__ import annotations

import csv
import json
import sys

import pytest
from conftest_store import RUN_ID, make_failed_trial, make_run, make_trial

from wattlens.core.errors import BadInput
from wattlens.store import SCHEMA_VERSION, ResultStore, export


@pytest.fixture
def store(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as s:
        s.start_run(make_run())
        t = make_trial()
        s.save_trial(t)
        s.save_trial(make_trial(model="tiny-qwen", measured=False))
        s.save_trial(make_failed_trial())
        s.save_artifact(RUN_ID, "power_timeline", "rep0", {"power_w": [300.0]}, trial_id=t.trial_id)
        yield s


def test_csv_trials_and_repetitions(store, tmp_path):
    out = export(store, tmp_path / "trials.csv")
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    expected = {"trial_id", "run_id", "status", "ttft_s_median", "energy_gpu_j_median", "spec_json"}
    assert expected <= set(rows[0])
    out = export(store, tmp_path / "reps.csv", "csv", table="repetitions")
    with out.open() as f:
        reps = list(csv.DictReader(f))
    assert len(reps) == 6
    assert {"rep_index", "ttft_s", "energy_gpu_j", "window_start_ns", "flags_json"} <= set(reps[0])
    runs = export(store, tmp_path / "runs.csv", table="runs")
    assert len(list(csv.DictReader(runs.open()))) == 1


def test_parquet(store, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = export(store, tmp_path / "trials.parquet", "parquet")
    table = pq.read_table(out)
    assert table.num_rows == 3
    assert "decode_tokens_per_s" in table.column_names and "energy_not_measured_reason" in table.column_names
    reps = pq.read_table(export(store, tmp_path / "reps.parquet", table="repetitions"))
    assert reps.num_rows == 6


def test_parquet_without_pyarrow_says_how_to_install(store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(BadInput, match="pip install"):
        export(store, tmp_path / "t.parquet")
    assert not (tmp_path / "t.parquet").exists()


def test_json_all_nests_runs_trials_repetitions(store, tmp_path):
    doc = json.loads(export(store, tmp_path / "results.json", table="all").read_text())
    assert doc["schema_version"] == SCHEMA_VERSION
    (run,) = doc["runs"]
    assert run["environment"]["driver_version"] == "580.65.06"
    assert [len(t["repetitions"]) for t in run["trials"]] == [3, 3, 0]
    first = run["trials"][0]
    assert first["spec"]["model"] == "tiny-llama" and first["summary"]["n_repetitions"] == 3
    assert first["repetitions"][1]["flags"] == ["throttle:sw_power_cap"]
    assert first["artifacts"][0]["payload"] == {"power_w": [300.0]}
    assert run["trials"][2]["status"] == "failed"


def test_json_single_table_and_deterministic(store, tmp_path):
    a = export(store, tmp_path / "a.json", table="trials").read_text()
    b = export(store, tmp_path / "b.json", table="trials").read_text()
    assert a == b
    rows = json.loads(a)
    assert len(rows) == 3 and "summary" in rows[0] and "summary_json" not in rows[0]


def test_bad_requests(store, tmp_path):
    with pytest.raises(BadInput, match="needs json"):
        export(store, tmp_path / "x.csv", table="all")
    with pytest.raises(BadInput, match="format"):
        export(store, tmp_path / "x.xlsx")
    with pytest.raises(BadInput, match="table"):
        export(store, tmp_path / "x.csv", table="nope")
    with pytest.raises(BadInput, match="does not exist"):
        export(store, tmp_path / "missing" / "x.csv")


def test_json_all_round_trips_to_objects_and_into_a_new_store(store, tmp_path):
    from wattlens.store import import_json, results_from_json

    path = export(store, tmp_path / "results.json", table="all")
    runs, trials = results_from_json(path)
    assert runs == store.load_runs()
    assert trials == store.load_trials()
    with ResultStore(tmp_path / "copy.sqlite") as copy:
        assert import_json(copy, path) == (1, 3)
        assert copy.load_trials() == store.load_trials()
        assert [a.payload for a in copy.load_artifacts()] == [{"power_w": [300.0]}]


def test_gzipped_export_reads_the_same(store, tmp_path):
    import gzip

    from wattlens.store import results_from_json

    path = export(store, tmp_path / "results.json", table="all")
    packed = tmp_path / "results.json.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    assert results_from_json(packed) == results_from_json(path)
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(b"not gzip")
    with pytest.raises(BadInput, match="cannot read"):
        results_from_json(broken)


def test_results_from_json_refuses_other_files(tmp_path):
    from wattlens.core.errors import SchemaTooNew
    from wattlens.store import results_from_json

    other = tmp_path / "other.json"
    other.write_text("[1, 2]")
    with pytest.raises(BadInput, match="not a wattlens"):
        results_from_json(other)
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"format": "wattlens-results", "schema_version": 7, "runs": []}))
    with pytest.raises(SchemaTooNew, match="7"):
        results_from_json(newer)
    with pytest.raises(BadInput, match="no such"):
        results_from_json(tmp_path / "missing.json")
