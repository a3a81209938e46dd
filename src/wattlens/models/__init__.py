"""Models layer: which model (catalog, config files, local folders), its arithmetic, and building it.

Importing this package (and `catalog`, `arithmetic`) never imports torch; `build` imports torch and
transformers inside its functions only.
"""

from .arithmetic import SUPPORTED_MODEL_TYPES, ModelFacts, model_facts
from .catalog import CatalogEntry, ModelSource, apply_overrides, list_catalog, max_positions, resolve_model

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "CatalogEntry",
    "ModelFacts",
    "ModelSource",
    "apply_overrides",
    "list_catalog",
    "max_positions",
    "model_facts",
    "resolve_model",
]
