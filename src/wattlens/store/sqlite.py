"""The embedded results database: one SQLite file holds runs, trials, repetitions and artifacts.

Why SQLite: a sweep must survive a crash and resume (each trial is one transaction), several
processes may append to the same file (WAL journal, busy timeout), and the file is the single
source every report, plot and predictor reads, on a machine with or without a GPU.

Layout: one row per run (environment, meter calibration), one per trial (spec, status, memory,
summary, plus flattened headline metrics so plain SQL can filter and sort), one per repetition
(per-token times and its energy window), and a generic `artifacts` table where later layers
attach JSON blobs (power timelines, phase energy) to a run or a trial. Every column carries its
unit in its name; the full objects also sit in `*_json` columns so loading loses nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from wattlens import __version__ as WATTLENS_VERSION
from wattlens.core.errors import BadInput, SchemaTooNew
from wattlens.core.metrics import tpot_s as _tpot_s
from wattlens.core.results import EnergyWindow, MemoryStats, Repetition, RunInfo, TrialResult
from wattlens.core.spec import TrialSpec

SCHEMA_VERSION = 2
"""Bump when a table changes; add the upgrade step to `_MIGRATIONS` under the old version."""

DEFAULT_DB_PATH = "wattlens.sqlite"
"""Relative, so it lands in the working directory; `WATTLENS_DB` overrides it."""

DB_PATH_ENV = "WATTLENS_DB"

TRIAL_STATUSES = ("ok", "failed")
WEIGHT_KINDS = ("random", "pretrained")
MEMORY_ONLY_PATH = ":memory:"
ANY_GPU = object()  # finished_trial_ids' default: trials measured on any GPU (or none)

# Upgrade steps: _MIGRATIONS[v] turns a schema of version v into v + 1.
_MIGRATIONS: dict[int, str] = {
    # v2: energy-counter reads at selected output tokens of a repetition.
    1: "ALTER TABLE repetitions ADD COLUMN token_energy_reads_json TEXT NOT NULL DEFAULT '[]';",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS runs (
    run_id           TEXT PRIMARY KEY,
    started_at       TEXT NOT NULL,
    finished_at      TEXT,
    command          TEXT NOT NULL DEFAULT '',
    wattlens_version TEXT,
    git_sha          TEXT,
    gpu_name         TEXT,
    update_period_s  REAL,
    idle_power_w     REAL,
    environment_json TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS trials (
    trial_id    TEXT NOT NULL,
    run_id      TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    status      TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error       TEXT,
    model       TEXT NOT NULL,
    weights     TEXT NOT NULL CHECK (weights IN ('random', 'pretrained')),
    gpu_name    TEXT,
    ctx_tokens  INTEGER NOT NULL,
    gen_tokens  INTEGER NOT NULL,
    batch_size  INTEGER NOT NULL,
    dtype       TEXT NOT NULL,
    mode        TEXT NOT NULL,
    sampling    TEXT NOT NULL,
    spec_json        TEXT NOT NULL,
    model_facts_json TEXT NOT NULL DEFAULT '{}',
    memory_json      TEXT NOT NULL DEFAULT '{}',
    summary_json     TEXT NOT NULL DEFAULT '{}',
    started_at  TEXT,
    finished_at TEXT,
    n_repetitions                 INTEGER,
    ttft_s_median                 REAL,
    tpot_s_median                 REAL,
    decode_tokens_per_s           REAL,
    e2e_s_median                  REAL,
    e2e_s_p95                     REAL,
    energy_gpu_j_median           REAL,
    energy_gpu_j_uncertainty      REAL,
    energy_gpu_active_j_median    REAL,
    energy_gpu_j_per_output_token REAL,
    output_tokens_per_j           REAL,
    average_power_w               REAL,
    energy_not_measured_reason    TEXT,
    peak_allocated_bytes          INTEGER,
    kv_measured_bytes             INTEGER,
    kv_analytic_bytes             INTEGER,
    weights_bytes                 INTEGER,
    decode_roofline_pct           REAL,
    prefill_roofline_pct          REAL,
    PRIMARY KEY (trial_id, run_id)
);
CREATE INDEX IF NOT EXISTS trials_by_model_gpu ON trials(model, gpu_name);
CREATE INDEX IF NOT EXISTS trials_by_status ON trials(status, trial_id);

CREATE TABLE IF NOT EXISTS repetitions (
    trial_id                 TEXT NOT NULL,
    run_id                   TEXT NOT NULL,
    rep_index                INTEGER NOT NULL,
    input_tokens             INTEGER NOT NULL,
    output_tokens            INTEGER NOT NULL,
    batch_size               INTEGER NOT NULL,
    ttft_s                   REAL,
    tpot_s                   REAL,
    e2e_s                    REAL NOT NULL,
    token_times_s_json       TEXT NOT NULL,
    energy_window_name       TEXT NOT NULL,
    window_start_ns          INTEGER NOT NULL,
    window_end_ns            INTEGER NOT NULL,
    energy_gpu_j             REAL,
    energy_gpu_uncertainty_j REAL,
    energy_gpu_active_j      REAL,
    idle_power_w             REAL,
    counter_updates          INTEGER,
    update_period_s          REAL,
    flags_json               TEXT NOT NULL DEFAULT '[]',
    not_measured_reason      TEXT,
    per_gpu_energy_j_json    TEXT NOT NULL DEFAULT '[]',
    token_energy_reads_json  TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (trial_id, run_id, rep_index),
    FOREIGN KEY (trial_id, run_id) REFERENCES trials(trial_id, run_id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS artifacts (
    artifact_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    trial_id    TEXT,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    json        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS artifacts_by_owner ON artifacts(run_id, trial_id, kind);
"""

# Headline metrics copied out of TrialResult.summary into their own columns (name -> summary key).
SUMMARY_COLUMNS = (
    "n_repetitions",
    "ttft_s_median",
    "tpot_s_median",
    "decode_tokens_per_s",
    "e2e_s_median",
    "e2e_s_p95",
    "energy_gpu_j_median",
    "energy_gpu_j_uncertainty",
    "energy_gpu_active_j_median",
    "energy_gpu_j_per_output_token",
    "output_tokens_per_j",
    "average_power_w",
    "energy_not_measured_reason",
    "decode_roofline_pct",
    "prefill_roofline_pct",
)
MEMORY_COLUMNS = ("peak_allocated_bytes", "kv_measured_bytes", "kv_analytic_bytes", "weights_bytes")

TABLES = ("runs", "trials", "repetitions", "artifacts")


def default_db_path() -> Path:
    """Where results go when no path is given: $WATTLENS_DB, else ./wattlens.sqlite."""
    return Path(os.environ.get(DB_PATH_ENV) or DEFAULT_DB_PATH)


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class StoredArtifact:
    """A JSON blob a later layer attached to a run (trial_id None) or to one trial of it."""

    artifact_id: int
    run_id: str
    trial_id: str | None
    kind: str
    name: str
    payload: Any
    created_at: str


# ---------------------------------------------------------------------------------------------
# JSON and row conversion (module-level so tests can break one step and check atomicity)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store a {type(obj).__name__} as JSON: {obj!r}")


def to_json(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, separators=(",", ":"))


def from_json(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    return json.loads(text)


def _summary_value(summary: dict[str, Any], key: str) -> Any:
    value = summary.get(key)
    if isinstance(value, dict):  # percentiles are {"value", "n", "note"}: the column holds the value
        value = value.get("value")
    if isinstance(value, (list, tuple, dict)):
        return None
    return value


def _gpu_name_of(environment: dict[str, Any]) -> str | None:
    """The GPU name in an environment capture, whichever shape the hw layer gave it."""
    if environment.get("gpu_name"):
        return str(environment["gpu_name"])
    gpus = environment.get("gpus")
    if isinstance(gpus, list) and gpus:
        first = gpus[0]
        if isinstance(first, dict) and first.get("name"):
            names = sorted({str(g.get("name")) for g in gpus if isinstance(g, dict) and g.get("name")})
            return names[0] if len(names) == 1 else " + ".join(names)
        if isinstance(first, str):
            return first
    gpu = environment.get("gpu")
    if isinstance(gpu, dict) and gpu.get("name"):
        return str(gpu["name"])
    if isinstance(gpu, str):
        return gpu
    return None


def run_row(run: RunInfo) -> dict[str, Any]:
    env = run.environment or {}
    return {
        "run_id": run.run_id,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "command": run.command or "",
        "wattlens_version": env.get("wattlens_version") or WATTLENS_VERSION,
        "git_sha": env.get("git_sha"),
        "gpu_name": _gpu_name_of(env),
        "update_period_s": run.update_period_s,
        "idle_power_w": run.idle_power_w,
        "environment_json": to_json(env),
    }


def trial_row(result: TrialResult) -> dict[str, Any]:
    spec = result.spec
    summary = result.summary or {}
    memory = result.memory or MemoryStats()
    row: dict[str, Any] = {
        "trial_id": result.trial_id,
        "run_id": result.run_id,
        "status": result.status,
        "error": result.error,
        "model": spec.model,
        "weights": result.weights,
        "gpu_name": result.gpu_name,
        "ctx_tokens": spec.ctx_tokens,
        "gen_tokens": spec.gen_tokens,
        "batch_size": spec.batch_size,
        "dtype": spec.dtype,
        "mode": spec.mode,
        "sampling": spec.sampling.label(),
        "spec_json": to_json(spec.to_dict()),
        "model_facts_json": to_json(result.model_facts or {}),
        "memory_json": to_json(asdict(memory)),
        "summary_json": to_json(summary),
        "started_at": result.started_at,
        "finished_at": result.finished_at,
    }
    for key in SUMMARY_COLUMNS:
        row[key] = _summary_value(summary, key)
    if row["n_repetitions"] is None and result.repetitions:
        row["n_repetitions"] = len(result.repetitions)
    for key in MEMORY_COLUMNS:
        row[key] = getattr(memory, key)
    return row


def repetition_row(result: TrialResult, rep: Repetition) -> dict[str, Any]:
    w = rep.energy
    ttft = float(rep.token_times_s[0]) if rep.token_times_s else None
    return {
        "trial_id": result.trial_id,
        "run_id": result.run_id,
        "rep_index": rep.index,
        "input_tokens": rep.input_tokens,
        "output_tokens": rep.output_tokens,
        "batch_size": rep.batch_size,
        "ttft_s": ttft,
        "tpot_s": _tpot_s(rep.e2e_s, ttft, rep.output_tokens) if ttft is not None else None,
        "e2e_s": rep.e2e_s,
        "token_times_s_json": to_json(list(rep.token_times_s)),
        "energy_window_name": w.name,
        "window_start_ns": w.start_ns,
        "window_end_ns": w.end_ns,
        "energy_gpu_j": w.energy_gpu_j,
        "energy_gpu_uncertainty_j": w.energy_gpu_uncertainty_j,
        "energy_gpu_active_j": w.energy_gpu_active_j,
        "idle_power_w": w.idle_power_w,
        "counter_updates": w.counter_updates,
        "update_period_s": w.update_period_s,
        "flags_json": to_json(list(w.flags)),
        "not_measured_reason": w.not_measured_reason,
        "per_gpu_energy_j_json": to_json(list(w.per_gpu_energy_j)),
        "token_energy_reads_json": to_json([list(r) for r in rep.token_energy_reads]),
    }


def repetition_from_row(row: sqlite3.Row) -> Repetition:
    window = EnergyWindow(
        name=row["energy_window_name"],
        start_ns=row["window_start_ns"],
        end_ns=row["window_end_ns"],
        energy_gpu_j=row["energy_gpu_j"],
        energy_gpu_uncertainty_j=row["energy_gpu_uncertainty_j"],
        energy_gpu_active_j=row["energy_gpu_active_j"],
        idle_power_w=row["idle_power_w"],
        counter_updates=row["counter_updates"],
        update_period_s=row["update_period_s"],
        flags=tuple(from_json(row["flags_json"], [])),
        not_measured_reason=row["not_measured_reason"],
        per_gpu_energy_j=tuple(from_json(row["per_gpu_energy_j_json"], [])),
    )
    return Repetition(
        index=row["rep_index"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        batch_size=row["batch_size"],
        token_times_s=tuple(from_json(row["token_times_s_json"], [])),
        e2e_s=row["e2e_s"],
        energy=window,
        token_energy_reads=tuple(tuple(r) for r in from_json(row["token_energy_reads_json"], [])),
    )


def run_from_row(row: sqlite3.Row) -> RunInfo:
    return RunInfo(
        run_id=row["run_id"],
        started_at=row["started_at"],
        environment=from_json(row["environment_json"], {}),
        command=row["command"],
        update_period_s=row["update_period_s"],
        idle_power_w=row["idle_power_w"],
        finished_at=row["finished_at"],
    )


def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
    cols = ", ".join(row)
    marks = ", ".join(f":{c}" for c in row)
    conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", row)


# ---------------------------------------------------------------------------------------------


def _check_writable(path: Path) -> bool:
    """Refuse a path we could not write, before creating anything. Returns whether it exists."""
    if path.is_dir():
        raise BadInput(
            f"results database path {path} is a directory; name a file, e.g. {path / DEFAULT_DB_PATH}"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise BadInput(f"cannot create results database {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise BadInput(f"cannot create results database {path}: {parent} is not a directory")
    # WAL mode writes <db>-wal and <db>-shm beside the file, so the folder must be writable too.
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"cannot write results database {path}: directory {parent} is not writable")
    exists = path.exists()
    if exists and not os.access(path, os.R_OK | os.W_OK):
        raise BadInput(f"cannot write results database {path}: file is not readable and writable")
    return exists


class ResultStore:
    """Results database on one SQLite file. Use as a context manager, or call `close()`.

    `path` None means `default_db_path()` ($WATTLENS_DB, else ./wattlens.sqlite); ':memory:'
    gives a throw-away database (tests, dry runs).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path: Path | str = default_db_path() if path is None else path
        in_memory = str(self.path) == MEMORY_ONLY_PATH
        if not in_memory:
            self.path = Path(self.path).expanduser()
            existed = _check_writable(self.path)
        else:
            existed = False
        try:
            conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        except sqlite3.Error as e:
            raise BadInput(f"cannot open results database {self.path}: {e}") from None
        conn.row_factory = sqlite3.Row
        self._conn: sqlite3.Connection | None = conn
        try:
            self._open_schema()
        except BaseException as e:
            conn.close()
            self._conn = None
            if not in_memory and not existed:
                self._remove_files()  # leave nothing half-written behind
            if isinstance(e, sqlite3.DatabaseError):
                raise BadInput(f"{self.path} is not a usable wattlens results database: {e}") from None
            raise

    # -- schema ---------------------------------------------------------------------------------

    def _stored_schema_version(self) -> int | None:
        conn = self._require()
        has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if not has_meta:
            return None
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row["value"]) if row else None

    def _open_schema(self) -> None:
        conn = self._require()
        stored = self._stored_schema_version()  # read before anything is written
        if stored is not None and stored > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{self.path} has results schema version {stored}, newer than this wattlens "
                f"({WATTLENS_VERSION}) understands (schema version {SCHEMA_VERSION}); upgrade wattlens"
            )
        conn.execute("PRAGMA busy_timeout = 30000")  # parallel workers append to the same file
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        with self._transaction() as c:
            if stored is not None:
                for version in range(stored, SCHEMA_VERSION):
                    for statement in _split_sql(_MIGRATIONS[version]):
                        c.execute(statement)
            for statement in _split_sql(_SCHEMA):
                c.execute(statement)
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
            c.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_by_wattlens_version', ?)",
                (WATTLENS_VERSION,),
            )
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('wattlens_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (WATTLENS_VERSION,),
            )

    def _remove_files(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                Path(str(self.path) + suffix).unlink()
            except FileNotFoundError:
                pass

    # -- plumbing ---------------------------------------------------------------------------------

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise BadInput(f"results database {self.path} is closed")
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing: BEGIN IMMEDIATE takes the write lock up front, any error rolls back."""
        conn = self._require()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @property
    def connection(self) -> sqlite3.Connection:
        """The raw connection, for read-only SQL (export, ad-hoc queries)."""
        return self._require()

    def meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self._require().execute("SELECT key, value FROM meta")}

    def journal_mode(self) -> str:
        return str(self._require().execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"

    # -- runs -------------------------------------------------------------------------------------

    def start_run(self, run: RunInfo) -> None:
        """Record a run before its first trial (trials reference it). Re-starting updates it in place."""
        row = run_row(run)
        sets = ", ".join(f"{c} = excluded.{c}" for c in row if c != "run_id")
        cols = ", ".join(row)
        marks = ", ".join(f":{c}" for c in row)
        with self._transaction() as c:
            sql = f"INSERT INTO runs ({cols}) VALUES ({marks}) ON CONFLICT(run_id) DO UPDATE SET {sets}"
            c.execute(sql, row)

    def finish_run(self, run_id: str, finished_at: str | None = None) -> None:
        """Stamp the end of a run (now, UTC, unless given)."""
        with self._transaction() as c:
            cur = c.execute(
                "UPDATE runs SET finished_at = ? WHERE run_id = ?", (finished_at or utc_now_iso(), run_id)
            )
            if cur.rowcount == 0:
                raise BadInput(f"no run {run_id!r} in {self.path}")

    def load_runs(self, run_id: str | None = None) -> list[RunInfo]:
        sql = "SELECT * FROM runs"
        args: tuple = ()
        if run_id is not None:
            sql += " WHERE run_id = ?"
            args = (run_id,)
        sql += " ORDER BY started_at, run_id"
        return [run_from_row(r) for r in self._require().execute(sql, args)]

    # -- trials -----------------------------------------------------------------------------------

    def save_trial(self, result: TrialResult) -> None:
        """Write the trial row and all its repetitions in one transaction, replacing an earlier save.

        A crash or error part-way leaves the database as it was: no partial trial, no orphan
        repetitions, and an earlier save of the same (trial_id, run_id) intact.
        """
        if result.status not in TRIAL_STATUSES:
            raise BadInput(f"trial status must be one of {', '.join(TRIAL_STATUSES)}, got {result.status!r}")
        if result.weights not in WEIGHT_KINDS:
            raise BadInput(f"weights must be one of {', '.join(WEIGHT_KINDS)}, got {result.weights!r}")
        indices = [r.index for r in result.repetitions]
        if len(set(indices)) != len(indices):
            raise BadInput(f"trial {result.trial_id}: repetition indices repeat: {indices}")
        with self._transaction() as c:
            if not c.execute("SELECT 1 FROM runs WHERE run_id = ?", (result.run_id,)).fetchone():
                raise BadInput(f"run {result.run_id!r} is not in {self.path}; call start_run first")
            key = (result.trial_id, result.run_id)
            c.execute("DELETE FROM trials WHERE trial_id = ? AND run_id = ?", key)  # cascades to repetitions
            _insert(c, "trials", trial_row(result))
            for rep in result.repetitions:
                _insert(c, "repetitions", repetition_row(result, rep))

    def finished_trial_ids(self, status: str | None = "ok", gpu_name: str | None | object = ANY_GPU) -> set[str]:
        """Trial ids stored with this status in any run (None: any status); a resumed sweep skips them.

        A trial id hashes the spec, not the GPU, so a store that holds an H100 run must not make the
        same sweep skip its trials on an H200: pass the GPU the sweep will run on (None: the CPU) to
        count only trials measured there; the default counts every GPU.
        """
        conn = self._require()
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if gpu_name is not ANY_GPU:
            where.append("gpu_name IS ?")
            args.append(gpu_name)
        sql = "SELECT DISTINCT trial_id FROM trials" + (" WHERE " + " AND ".join(where) if where else "")
        return {r["trial_id"] for r in conn.execute(sql, args)}

    def load_trials(
        self,
        model: str | None = None,
        gpu: str | None = None,
        run_id: str | None = None,
        trial_id: str | None = None,
        status: str | None = None,
    ) -> list[TrialResult]:
        """Trials matching every given filter, in the order they were saved, fully rebuilt."""
        where, args = [], []
        for column, value in (
            ("model", model),
            ("gpu_name", gpu),
            ("run_id", run_id),
            ("trial_id", trial_id),
            ("status", status),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM trials"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY rowid"
        conn = self._require()
        out = []
        for row in conn.execute(sql, args).fetchall():
            reps = [
                repetition_from_row(r)
                for r in conn.execute(
                    "SELECT * FROM repetitions WHERE trial_id = ? AND run_id = ? ORDER BY rep_index",
                    (row["trial_id"], row["run_id"]),
                )
            ]
            out.append(
                TrialResult(
                    spec=TrialSpec.from_dict(from_json(row["spec_json"])),
                    run_id=row["run_id"],
                    status=row["status"],
                    error=row["error"],
                    weights=row["weights"],
                    model_facts=from_json(row["model_facts_json"], {}),
                    gpu_name=row["gpu_name"],
                    repetitions=reps,
                    memory=MemoryStats(**from_json(row["memory_json"], {})),
                    summary=from_json(row["summary_json"], {}),
                    started_at=row["started_at"],
                    finished_at=row["finished_at"],
                )
            )
        return out

    # -- artifacts --------------------------------------------------------------------------------

    def save_artifact(
        self, run_id: str, kind: str, name: str, payload: Any, trial_id: str | None = None
    ) -> int:
        """Attach a JSON blob (power timeline, phase energy...) to a run or one of its trials.

        Saving the same (run_id, trial_id, kind, name) again replaces it. Returns the artifact id.
        """
        text = to_json(payload)
        with self._transaction() as c:
            if not c.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                raise BadInput(f"run {run_id!r} is not in {self.path}; call start_run first")
            c.execute(
                "DELETE FROM artifacts WHERE run_id = ? AND trial_id IS ? AND kind = ? AND name = ?",
                (run_id, trial_id, kind, name),
            )
            cur = c.execute(
                "INSERT INTO artifacts (run_id, trial_id, kind, name, json, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, trial_id, kind, name, text, utc_now_iso()),
            )
            return int(cur.lastrowid)

    def load_artifacts(
        self,
        run_id: str | None = None,
        trial_id: str | None = None,
        kind: str | None = None,
        name: str | None = None,
    ) -> list[StoredArtifact]:
        where, args = [], []
        for column, value in (("run_id", run_id), ("trial_id", trial_id), ("kind", kind), ("name", name)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM artifacts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY artifact_id"
        return [
            StoredArtifact(
                artifact_id=r["artifact_id"],
                run_id=r["run_id"],
                trial_id=r["trial_id"],
                kind=r["kind"],
                name=r["name"],
                payload=from_json(r["json"]),
                created_at=r["created_at"],
            )
            for r in self._require().execute(sql, args)
        ]


def _split_sql(script: str) -> list[str]:
    """Statements of a DDL script (ours contain no ';' inside literals), so they run in one transaction."""
    return [s.strip() for s in script.split(";") if s.strip()]
