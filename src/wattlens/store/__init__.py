"""Store layer: the embedded results database (SQLite), its schema versions, and export.

Imports only `wattlens.core`. Everything a run measured lands here, so a report or a predictor can
be rebuilt later without a GPU.
"""

from wattlens.store.export import export, import_json, results_from_json
from wattlens.store.sqlite import (
    DEFAULT_DB_PATH,
    SCHEMA_VERSION,
    ResultStore,
    StoredArtifact,
    default_db_path,
)

__all__ = [
    "DEFAULT_DB_PATH",
    "SCHEMA_VERSION",
    "ResultStore",
    "StoredArtifact",
    "default_db_path",
    "export",
    "import_json",
    "results_from_json",
]
