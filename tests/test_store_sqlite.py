"""ResultStore: round trip, schema versioning, refusal of bad paths, atomic trial saves."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import replace

import pytest
from conftest_store import RUN_ID, make_failed_trial, make_run, make_trial

import wattlens.store.sqlite as store_mod
from wattlens.core.errors import BadInput, SchemaTooNew
from wattlens.store import SCHEMA_VERSION, ResultStore


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "results.sqlite"


@pytest.fixture
def store(db_path):
    with ResultStore(db_path) as s:
        s.start_run(make_run())
        yield s


def _count(path, table):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def test_round_trip_measured_not_measured_and_failed(store):
    measured = make_trial()
    unmeasured = make_trial(model="tiny-qwen", measured=False)
    failed = make_failed_trial()
    for t in (measured, unmeasured, failed):
        store.save_trial(t)
    loaded = store.load_trials()
    assert loaded == [measured, unmeasured, failed]
    # The pieces that matter most, checked by name in case equality is ever loosened.
    got = loaded[0]
    assert len(got.repetitions) == 3
    assert got.repetitions[1].energy.flags == ("throttle:sw_power_cap",)
    assert got.repetitions[0].energy.per_gpu_energy_j == (600.0,)
    assert got.repetitions[0].token_times_s == measured.repetitions[0].token_times_s
    assert got.spec.trial_id == measured.trial_id
    assert got.summary["e2e_s_p95"]["value"] is None
    assert got.model_facts == measured.model_facts
    assert not loaded[1].repetitions[0].energy.measured
    assert loaded[1].repetitions[0].energy.not_measured_reason.startswith("no NVIDIA GPU")
    assert loaded[2].status == "failed" and "out of memory" in loaded[2].error
    assert loaded[2].repetitions == []


def test_runs_round_trip_and_finish(store):
    store.finish_run(RUN_ID, "2026-11-21T11:00:00+00:00")
    (run,) = store.load_runs()
    assert run == replace(make_run(), finished_at="2026-11-21T11:00:00+00:00")
    row = store.connection.execute("SELECT gpu_name, git_sha, wattlens_version FROM runs").fetchone()
    assert tuple(row) == ("NVIDIA H100 80GB HBM3", "abc1234", "0.1.0")
    with pytest.raises(BadInput, match="no run"):
        store.finish_run("nope")


def test_flattened_headline_columns(store):
    t = make_trial()
    store.save_trial(t)
    row = store.connection.execute("SELECT * FROM trials").fetchone()
    assert row["ttft_s_median"] == pytest.approx(t.summary["ttft_s_median"])
    assert row["energy_gpu_j_median"] == pytest.approx(610.0)
    assert row["e2e_s_p95"] is None  # n too small: the value column stays empty, never the max
    assert row["peak_allocated_bytes"] == 3_100_000_000
    assert row["sampling"] == "greedy" and row["weights"] == "random"
    rep = store.connection.execute("SELECT * FROM repetitions WHERE rep_index = 0").fetchone()
    assert rep["ttft_s"] == pytest.approx(0.05)
    assert rep["tpot_s"] == pytest.approx((rep["e2e_s"] - 0.05) / 7)


def test_wal_mode_foreign_keys_and_schema_version(store, db_path):
    assert store.journal_mode() == "wal"
    assert store.connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    meta = store.meta()
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert meta["wattlens_version"] == "0.1.0"


def test_reopen_keeps_data(db_path):
    with ResultStore(db_path) as s:
        s.start_run(make_run())
        s.save_trial(make_trial())
    with ResultStore(db_path) as s:
        assert len(s.load_trials()) == 1


def test_newer_schema_refused(db_path):
    ResultStore(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew) as e:
        ResultStore(db_path)
    msg = str(e.value)
    assert str(db_path) in msg and "99" in msg and str(SCHEMA_VERSION) in msg and "\n" not in msg
    assert db_path.exists()  # an existing file is never removed
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "99"
    conn.close()


def test_missing_parent_refused_and_nothing_created(tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "r.sqlite"
    with pytest.raises(BadInput, match=str(tmp_path / "no")):
        ResultStore(path)
    assert not (tmp_path / "no").exists()


def test_directory_path_refused(tmp_path):
    with pytest.raises(BadInput, match="is a directory"):
        ResultStore(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes read-only dirs")
def test_read_only_dir_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(BadInput, match="not writable"):
            ResultStore(ro / "r.sqlite")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_not_a_database_refused_and_left_alone(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("just some text, not SQLite\n" * 100)
    before = path.read_bytes()
    with pytest.raises(BadInput, match="notes.sqlite"):
        ResultStore(path)
    assert path.read_bytes() == before


def test_env_var_and_default_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WATTLENS_DB", raising=False)
    with ResultStore() as s:
        assert s.path.name == "wattlens.sqlite"
    assert (tmp_path / "wattlens.sqlite").exists()
    monkeypatch.setenv("WATTLENS_DB", str(tmp_path / "other.sqlite"))
    with ResultStore():
        pass
    assert (tmp_path / "other.sqlite").exists()


def test_failure_mid_save_leaves_no_partial_trial(store, db_path, monkeypatch):
    real = store_mod.repetition_row
    calls = {"n": 0}

    def flaky(result, rep):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash while writing repetition 2")
        return real(result, rep)

    monkeypatch.setattr(store_mod, "repetition_row", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        store.save_trial(make_trial())
    assert _count(db_path, "trials") == 0
    assert _count(db_path, "repetitions") == 0
    assert store.load_trials() == []
    assert store.finished_trial_ids() == set()


def test_failure_mid_resave_keeps_earlier_save(store, db_path, monkeypatch):
    first = make_trial()
    store.save_trial(first)
    monkeypatch.setattr(store_mod, "repetition_row", lambda result, rep: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        store.save_trial(replace(first, summary={}))
    assert store.load_trials() == [first]
    assert _count(db_path, "repetitions") == 3


def test_resave_replaces(store, db_path):
    t = make_trial()
    store.save_trial(t)
    shorter = replace(t, repetitions=t.repetitions[:2], error=None, finished_at="later")
    store.save_trial(shorter)
    assert store.load_trials() == [shorter]
    assert _count(db_path, "trials") == 1
    assert _count(db_path, "repetitions") == 2


def test_save_requires_started_run(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as s:
        with pytest.raises(BadInput, match="start_run"):
            s.save_trial(make_trial())


def test_bad_status_and_weights_refused(store):
    with pytest.raises(BadInput, match="status"):
        store.save_trial(replace(make_trial(), status="done"))
    with pytest.raises(BadInput, match="weights"):
        store.save_trial(replace(make_trial(), weights="trained"))


def test_finished_trial_ids_across_runs(store):
    ok = make_trial()
    failed = make_failed_trial()
    store.save_trial(ok)
    store.save_trial(failed)
    store.start_run(make_run("run-b"))
    other = make_trial(model="tiny-qwen", run_id="run-b")
    store.save_trial(other)
    assert store.finished_trial_ids() == {ok.trial_id, other.trial_id}
    assert store.finished_trial_ids("failed") == {failed.trial_id}
    assert store.finished_trial_ids(None) == {ok.trial_id, other.trial_id, failed.trial_id}


def test_finished_trial_ids_per_gpu(store):
    """Trial ids hash the spec, not the GPU: resuming on another GPU must not skip them."""
    h100 = make_trial(gpu_name="NVIDIA H100 80GB HBM3")
    store.save_trial(h100)
    store.start_run(make_run("run-cpu"))
    on_cpu = make_trial(model="tiny-qwen", run_id="run-cpu", gpu_name=None)
    store.save_trial(on_cpu)
    assert store.finished_trial_ids("ok", gpu_name="NVIDIA H100 80GB HBM3") == {h100.trial_id}
    assert store.finished_trial_ids("ok", gpu_name="NVIDIA H200") == set()
    assert store.finished_trial_ids("ok", gpu_name=None) == {on_cpu.trial_id}
    assert store.finished_trial_ids("ok") == {h100.trial_id, on_cpu.trial_id}


def test_load_filters(store):
    a = make_trial()
    b = make_trial(model="tiny-qwen", measured=False, gpu_name="NVIDIA A100-SXM4-40GB")
    f = make_failed_trial()
    for t in (a, b, f):
        store.save_trial(t)
    assert store.load_trials(model="tiny-qwen") == [b]
    assert store.load_trials(gpu="NVIDIA A100-SXM4-40GB") == [b]
    assert store.load_trials(status="failed") == [f]
    assert store.load_trials(trial_id=a.trial_id) == [a]
    assert store.load_trials(run_id="other") == []
    assert store.load_trials(run_id=RUN_ID, status="ok") == [a, b]


def test_artifacts(store):
    t = make_trial()
    store.save_trial(t)
    timeline = {"t_s": [0.0, 0.1], "power_w": [300.0, 310.0]}
    store.save_artifact(RUN_ID, "power_timeline", "rep0", timeline, trial_id=t.trial_id)
    store.save_artifact(RUN_ID, "idle_baseline", "start", {"idle_power_w": 70.5})
    store.save_artifact(RUN_ID, "idle_baseline", "start", {"idle_power_w": 71.0})  # replaces
    arts = store.load_artifacts(run_id=RUN_ID)
    assert [(a.kind, a.trial_id) for a in arts] == [("power_timeline", t.trial_id), ("idle_baseline", None)]
    assert store.load_artifacts(kind="idle_baseline")[0].payload == {"idle_power_w": 71.0}
    assert store.load_artifacts(trial_id=t.trial_id)[0].payload == timeline
    with pytest.raises(BadInput):
        store.save_artifact("missing-run", "x", "y", {})


def test_in_memory_store():
    with ResultStore(":memory:") as s:
        s.start_run(make_run())
        s.save_trial(make_trial())
        assert len(s.load_trials()) == 1


def test_closed_store_refuses(db_path):
    s = ResultStore(db_path)
    s.close()
    with pytest.raises(BadInput, match="closed"):
        s.load_runs()


def test_unwritable_dir_refused_via_access(tmp_path, monkeypatch):
    """Runs as root too: pretend the folder is read-only, as os.access would report for a normal user."""
    target = tmp_path / "r.sqlite"
    real_access = os.access
    def fake_access(p, mode):
        return False if str(p) == str(tmp_path) else real_access(p, mode)

    monkeypatch.setattr(store_mod.os, "access", fake_access)
    with pytest.raises(BadInput, match="not writable"):
        ResultStore(target)
    assert list(tmp_path.iterdir()) == []


def test_process_killed_mid_save_leaves_no_partial_trial(tmp_path):
    """A hard kill (no exception handling runs) between repetition inserts: SQLite's journal undoes it."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    db = tmp_path / "r.sqlite"
    tests_dir = Path(__file__).parent
    src_dir = tests_dir.parent / "src"
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path[:0] = [{str(src_dir)!r}, {str(tests_dir)!r}]
        import wattlens.store.sqlite as m
        from conftest_store import make_run, make_trial
        s = m.ResultStore({str(db)!r})
        s.start_run(make_run())
        real, n = m.repetition_row, [0]
        def dying(result, rep):
            n[0] += 1
            if n[0] == 2:
                os._exit(9)
            return real(result, rep)
        m.repetition_row = dying
        s.save_trial(make_trial())
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    with ResultStore(db) as s:
        assert len(s.load_runs()) == 1
        assert s.load_trials() == []
        assert s.connection.execute("SELECT COUNT(*) FROM repetitions").fetchone()[0] == 0


def test_schema_1_database_is_upgraded_and_keeps_its_rows(tmp_path):
    """A database written before token energy reads existed (schema 1) opens, gains the column, and
    its repetitions load with no reads; new repetitions keep theirs."""
    path = tmp_path / "v1.sqlite"
    v1_schema = store_mod._SCHEMA.replace("    token_energy_reads_json  TEXT NOT NULL DEFAULT '[]',\n", "")
    assert v1_schema != store_mod._SCHEMA
    conn = sqlite3.connect(path)
    for statement in store_mod._split_sql(v1_schema):
        conn.execute(statement)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    conn.commit()
    conn.close()
    with ResultStore(path) as store:
        assert store.meta()["schema_version"] == str(SCHEMA_VERSION)
        store.start_run(make_run())
        trial = make_trial()
        reads = ((1, 0.05, 12.0), (3, 0.2, 40.5))
        rep = replace(trial.repetitions[0], token_energy_reads=reads)
        trial.repetitions = [rep, *trial.repetitions[1:]]
        store.save_trial(trial)
        loaded = store.load_trials()[0]
    assert loaded.repetitions[0].token_energy_reads == reads
    assert loaded.repetitions[1].token_energy_reads == ()


def test_target_gpu_name_is_what_a_session_would_store(monkeypatch):
    import wattlens.hw.nvml as nvml
    from wattlens.core.errors import NotMeasured
    from wattlens.hw.fake import FakeClock, FakeGPU
    from wattlens.runner.session import target_gpu_name

    monkeypatch.setattr(nvml, "open_gpus", lambda: [FakeGPU(FakeClock(), name="NVIDIA H200")])
    assert target_gpu_name("auto") == "NVIDIA H200"
    assert target_gpu_name("cpu") is None  # a CPU trial stores no GPU name

    def no_driver():
        raise NotMeasured("no NVIDIA driver/NVML: NVML sees 0 GPUs")

    monkeypatch.setattr(nvml, "open_gpus", no_driver)
    assert target_gpu_name("auto") is None
