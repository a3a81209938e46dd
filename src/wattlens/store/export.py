"""Export the results database to CSV, Parquet or JSON.

CSV and Parquet are flat, one table per file, for spreadsheets and dataframes. JSON of `all`
nests runs -> trials -> repetitions (artifacts beside their owner) with every `*_json` column
decoded; it is the form GPU results are committed in, readable without SQLite or wattlens.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from wattlens import __version__ as WATTLENS_VERSION
from wattlens.core.errors import BadInput
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
