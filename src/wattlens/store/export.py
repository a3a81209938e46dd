"""Export the results database to CSV, Parquet or JSON.

CSV and Parquet are flat, one table per file, for spreadsheets and dataframes. JSON of `all`
nests runs -> trials -> repetitions (artifacts beside their owner) with every `*_json` column
decoded; it is the form GPU results are committed in, readable without SQLite or wattlens.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

from wattlens import __version__ as WATTLENS_VERSION
from wattlens.core.errors import BadInput, SchemaTooNew
from wattlens.core.results import EnergyWindow, MemoryStats, Repetition, RunInfo, TrialResult
from wattlens.core.spec import TrialSpec
from wattlens.store.sqlite import SCHEMA_VERSION, ResultStore, from_json

FORMATS = ("csv", "parquet", "json")
EXPORT_TABLES = ("trials", "repetitions", "runs", "artifacts", "all")
_SUFFIX_FORMAT = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json"}

# Stable orders, so an export of the same data is byte-identical (committed files diff cleanly).
_ORDER_BY = {
    "runs": "started_at, run_id",
    "trials": "run_id, rowid",
    "repetitions": "run_id, trial_id, rep_index",
    "artifacts": "artifact_id",
}


def _rows(store: ResultStore, table: str) -> tuple[list[str], list[dict[str, Any]]]:
    cur = store.connection.execute(f"SELECT * FROM {table} ORDER BY {_ORDER_BY[table]}")
    columns = [d[0] for d in cur.description]
    return columns, [dict(zip(columns, r)) for r in cur.fetchall()]


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """Replace each `x_json` text column by its parsed value under `x` (the SQL `json` column: `payload`)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key == "json":
            out["payload"] = from_json(value)
        elif key.endswith("_json"):
            out[key[: -len("_json")]] = from_json(value)
        else:
            out[key] = value
    return out


def nested_json(store: ResultStore) -> dict[str, Any]:
    """Everything in the store as one document: runs -> trials -> repetitions, artifacts by owner."""
    _, runs = _rows(store, "runs")
    _, trials = _rows(store, "trials")
    _, reps = _rows(store, "repetitions")
    _, artifacts = _rows(store, "artifacts")

    reps_by_trial: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in reps:
        reps_by_trial.setdefault((r["run_id"], r["trial_id"]), []).append(_decoded(r))
    arts_by_owner: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for a in artifacts:
        arts_by_owner.setdefault((a["run_id"], a["trial_id"]), []).append(_decoded(a))
    trials_by_run: dict[str, list[dict[str, Any]]] = {}
    for t in trials:
        key = (t["run_id"], t["trial_id"])
        doc = _decoded(t)
        doc["repetitions"] = reps_by_trial.get(key, [])
        doc["artifacts"] = arts_by_owner.get(key, [])
        trials_by_run.setdefault(t["run_id"], []).append(doc)

    run_docs = []
    for r in runs:
        doc = _decoded(r)
        doc["artifacts"] = arts_by_owner.get((r["run_id"], None), [])
        doc["trials"] = trials_by_run.get(r["run_id"], [])
        run_docs.append(doc)
    return {
        "format": "wattlens-results",
        "schema_version": SCHEMA_VERSION,
        "wattlens_version": WATTLENS_VERSION,
        "units": "SI at rest: seconds, joules, watts, bytes; the unit is in every name",
        "runs": run_docs,
    }


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _write_parquet(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise BadInput("parquet export needs pyarrow: pip install 'wattlens[parquet]' (or pyarrow)") from None
    table = pa.table({c: [r[c] for r in rows] for c in columns})
    pq.write_table(table, str(path))


def export(
    store: ResultStore, out_path: str | Path, fmt: str | None = None, table: str = "trials"
) -> Path:
    """Write one table (or, for JSON, `all` nested) to out_path; fmt defaults from the suffix.

    Returns the path written. The file is written whole to a temporary name and renamed, so an
    interrupted export never leaves a truncated file where a good one was.
    """
    out = Path(out_path).expanduser()
    if fmt is None:
        fmt = _SUFFIX_FORMAT.get(out.suffix.lower())
        if fmt is None:
            raise BadInput(f"cannot tell the export format from {out}; pass one of {', '.join(FORMATS)}")
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise BadInput(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if table not in EXPORT_TABLES:
        raise BadInput(f"unknown table {table!r}; choose one of {', '.join(EXPORT_TABLES)}")
    if table == "all" and fmt != "json":
        raise BadInput(f"table 'all' nests runs, trials and repetitions and needs json, not {fmt}")
    if not out.parent.is_dir():
        raise BadInput(f"cannot write {out}: directory {out.parent} does not exist")
    if out.is_dir():
        raise BadInput(f"cannot write {out}: it is a directory")

    tmp = out.with_name(out.name + ".partial")
    try:
        if fmt == "json":
            if table == "all":
                doc: Any = nested_json(store)
            else:
                doc = [_decoded(r) for r in _rows(store, table)[1]]
            tmp.write_text(json.dumps(doc, indent=1, allow_nan=True) + "\n", encoding="utf-8")
        else:
            columns, rows = _rows(store, table)
            if fmt == "csv":
                _write_csv(tmp, columns, rows)
            else:
                _write_parquet(tmp, columns, rows)
        tmp.replace(out)
    except OSError as e:
        raise BadInput(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


# --- reading an `all` JSON export back ------------------------------------------------------------


def _repetition_from_doc(d: dict[str, Any]) -> Repetition:
    window = EnergyWindow(
        name=d["energy_window_name"],
        start_ns=d["window_start_ns"],
        end_ns=d["window_end_ns"],
        energy_gpu_j=d.get("energy_gpu_j"),
        energy_gpu_uncertainty_j=d.get("energy_gpu_uncertainty_j"),
        energy_gpu_active_j=d.get("energy_gpu_active_j"),
        idle_power_w=d.get("idle_power_w"),
        counter_updates=d.get("counter_updates"),
        update_period_s=d.get("update_period_s"),
        flags=tuple(d.get("flags") or ()),
        not_measured_reason=d.get("not_measured_reason"),
        per_gpu_energy_j=tuple(d.get("per_gpu_energy_j") or ()),
    )
    return Repetition(
        index=d["rep_index"],
        input_tokens=d["input_tokens"],
        output_tokens=d["output_tokens"],
        batch_size=d["batch_size"],
        token_times_s=tuple(d.get("token_times_s") or ()),
        e2e_s=d["e2e_s"],
        energy=window,
        token_energy_reads=tuple(tuple(r) for r in d.get("token_energy_reads") or ()),  # absent before schema 2
    )


def results_from_json(path: str | Path) -> tuple[list[RunInfo], list[TrialResult]]:
    """Rebuild runs and trials from an `all` JSON export (committed GPU results), without SQLite.

    Lets a report be re-rendered from results/<gpu>/.../results.json on any machine. A name ending
    in .gz is read through gzip (large campaign exports are committed compressed).
    """
    p = Path(path).expanduser()
    try:
        raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
        doc = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise BadInput(f"no such results file: {p}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"cannot read results file {p}: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != "wattlens-results":
        raise BadInput(f"{p} is not a wattlens 'all' JSON export (export with table='all')")
    version = int(doc.get("schema_version", 0))
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{p} has results schema version {version}, newer than this wattlens ({WATTLENS_VERSION}) "
            f"understands (schema version {SCHEMA_VERSION}); upgrade wattlens"
        )
    runs, trials = [], []
    for r in doc.get("runs", []):
        runs.append(
            RunInfo(
                run_id=r["run_id"],
                started_at=r["started_at"],
                environment=r.get("environment") or {},
                command=r.get("command") or "",
                update_period_s=r.get("update_period_s"),
                idle_power_w=r.get("idle_power_w"),
                finished_at=r.get("finished_at"),
            )
        )
        for t in r.get("trials", []):
            trials.append(
                TrialResult(
                    spec=TrialSpec.from_dict(t["spec"]),
                    run_id=t["run_id"],
                    status=t["status"],
                    error=t.get("error"),
                    weights=t["weights"],
                    model_facts=t.get("model_facts") or {},
                    gpu_name=t.get("gpu_name"),
                    repetitions=[_repetition_from_doc(x) for x in t.get("repetitions", [])],
                    memory=MemoryStats(**(t.get("memory") or {})),
                    summary=t.get("summary") or {},
                    started_at=t.get("started_at"),
                    finished_at=t.get("finished_at"),
                )
            )
    return runs, trials


def import_json(store: ResultStore, path: str | Path) -> tuple[int, int]:
    """Load an `all` JSON export into a store (merging; same ids replace). Returns (runs, trials).

    Artifacts are re-attached too. Each trial is its own transaction, as in a live run.
    """
    runs, trials = results_from_json(path)
    for run in runs:
        store.start_run(run)
    for trial in trials:
        store.save_trial(trial)
    doc = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    for r in doc.get("runs", []):
        owners = [r] + list(r.get("trials", []))
        for owner in owners:
            for a in owner.get("artifacts", []):
                store.save_artifact(
                    a["run_id"], a["kind"], a["name"], a["payload"], trial_id=a.get("trial_id")
                )
    return len(runs), len(trials)
