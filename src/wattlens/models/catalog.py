"""Which model a user means: catalog names, config files and local HF folders, with overrides.

Pure Python (json, difflib): importing this module must not import torch or transformers, so
`wattlens --help` and the analysis layer stay instant. The result, `ModelSource`, carries the HF
config *dict*; `wattlens.models.build` turns it into a torch module and
`wattlens.models.arithmetic` into numbers.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattlens.core.errors import BadInput

CONFIG_DIR = Path(__file__).with_name("configs")
CATALOG_FILE = CONFIG_DIR / "catalog.json"

# Files whose presence in a folder means "real weights live here".
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model*.safetensors.index.json", "*.pt", "*.pth")

# Keys dropped for random-weight builds: they describe how the published checkpoint is stored
# (MXFP4 experts for gpt-oss), not the architecture; we build plain unquantised tensors.
_DROP_FOR_RANDOM = ("quantization_config",)

# Config attributes HF understands even when a given config.json omits them. Overrides may set
# these; anything else that is not already in the dict is almost certainly a typo. Kept as a
# plain list (not read from transformers) so resolving a model never imports torch.
KNOWN_CONFIG_KEYS = frozenset(
    """
    vocab_size hidden_size intermediate_size num_hidden_layers num_attention_heads num_key_value_heads
    head_dim max_position_embeddings tie_word_embeddings attention_bias mlp_bias attention_dropout
    hidden_act hidden_activation rms_norm_eps layer_norm_eps initializer_range rope_theta rope_scaling
    rope_parameters partial_rotary_factor use_cache bos_token_id eos_token_id pad_token_id torch_dtype
    dtype sliding_window use_sliding_window max_window_layers layer_types num_local_experts num_experts
    num_experts_per_tok experts_per_token moe_intermediate_size decoder_sparse_step mlp_only_layers
    norm_topk_prob output_router_logits router_aux_loss_coef router_jitter_noise swiglu_limit
    initial_context_length ffn_dim word_embed_proj_dim do_layer_norm_before _remove_final_layer_norm
    enable_bias layer_norm_elementwise_affine activation_function dropout activation_dropout layerdrop
    init_std qk_layernorm resid_pdrop embd_pdrop attn_logit_softcapping final_logit_softcapping
    query_pre_attn_scalar cache_implementation pretraining_tp use_mrope architectures
    """.split()
)

_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


@dataclass(frozen=True)
class CatalogEntry:
    """One row of `configs/catalog.json`."""

    name: str
    hf_id: str | None
    file: str
    family: str
    licence: str
    tiny: bool

    @property
    def path(self) -> Path:
        return CONFIG_DIR / self.file


@dataclass(frozen=True)
class ModelSource:
    """Everything needed to build or reason about one model, before torch is involved.

    `config` is the HF config dict with overrides applied (and, for random weights,
    `quantization_config` removed: see `dropped_keys`). `weights` is 'random' or 'pretrained';
    `path` is the local HF folder for pretrained weights, else None.
    """

    name: str
    config: dict
    weights: str
    path: str | None
    hf_id: str | None
    licence: str | None
    dropped_keys: tuple[str, ...] = ()
    overrides: tuple[tuple[str, Any], ...] = ()
    config_file: str | None = field(default=None, compare=False)


def list_catalog() -> list[CatalogEntry]:
    """The models wattlens ships configs for, in catalog order."""
    raw = json.loads(CATALOG_FILE.read_text())
    return [CatalogEntry(**row) for row in raw["models"]]


def max_positions(config: dict) -> int:
    """Longest sequence the config allows (max_position_embeddings, n_positions, ...)."""
    for key in _POSITION_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    raise BadInput(f"config of model_type {config.get('model_type')!r} has no max_position_embeddings")


def _load_config_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read model config {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"model config {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise BadInput(f"model config {path} is not a JSON object")
    if not isinstance(data.get("model_type"), str) or not data["model_type"]:
        raise BadInput(f"model config {path} has no 'model_type'")
    return data


def _has_weights(folder: Path) -> bool:
    return any(any(folder.glob(pattern)) for pattern in _WEIGHT_PATTERNS)


def _find_entry(name: str) -> CatalogEntry | None:
    key = name.strip().lower()
    for entry in list_catalog():
        candidates = {entry.name.lower(), Path(entry.file).stem.lower()}
        if entry.hf_id:
            candidates.add(entry.hf_id.lower())
        if key in candidates:
            return entry
    return None


def _parse_value(value: Any) -> Any:
    """CLI values arrive as strings: '16' -> 16, 'true' -> True, 'null' -> None, else the string."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _repeat_pattern(items: list, length: int) -> list:
    """Extend or cut a per-layer list by repeating its shortest period (e.g. [sliding, full])."""
    n = len(items)
    period = n
    for p in range(1, n + 1):
        if all(items[i] == items[i % p] for i in range(n)):
            period = p
            break
    return [items[i % period] for i in range(length)]


_POSITIVE_INT_KEYS = (
    "num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "vocab_size",
    "intermediate_size", "max_position_embeddings", "head_dim",
)


def _override_items(overrides) -> list:
    """Accept a mapping or an iterable of (key, value) pairs; a bare string is a mistake."""
    if isinstance(overrides, Mapping):
        return list(overrides.items())
    if isinstance(overrides, str):
        raise BadInput(f"overrides {overrides!r} must be (key, value) pairs, not a string")
    items = []
    for item in overrides:
        if isinstance(item, str) or not isinstance(item, (tuple, list)) or len(item) != 2:
            raise BadInput(f"override {item!r} is not a (key, value) pair")
        items.append(tuple(item))
    return items


def apply_overrides(config: dict, overrides: Iterable[tuple[str, Any]]) -> dict:
    """Return a copy of `config` with `key=value` edits applied and per-layer lists kept consistent."""
    out = copy.deepcopy(config)
    set_keys = set()
    for item in _override_items(overrides):
        key, value = item
        if not isinstance(key, str) or not key:
            raise BadInput(f"override key {key!r} is not a name")
        if key not in out and key not in KNOWN_CONFIG_KEYS:
            close = difflib.get_close_matches(key, list(out) + sorted(KNOWN_CONFIG_KEYS), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise BadInput(f"unknown config key {key!r}{hint}")
        value = _parse_value(value)
        if key in _POSITIVE_INT_KEYS and value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value <= 0
        ):
            raise BadInput(f"override {key}={value!r} must be a positive integer")
        out[key] = value
        set_keys.add(key)

    old_layers = config.get("num_hidden_layers")
    new_layers = out.get("num_hidden_layers")
    if "num_hidden_layers" in set_keys and isinstance(old_layers, int) and new_layers != old_layers:
        for per_layer in ("layer_types", "no_rope_layers"):  # SmolLM3's no_rope_layers: 1 where RoPE applies
            if isinstance(out.get(per_layer), list) and out[per_layer] and per_layer not in set_keys:
                out[per_layer] = _repeat_pattern(out[per_layer], new_layers)
        end = out.get("moe_layer_end_index")
        if isinstance(end, int) and end >= old_layers - 1 and "moe_layer_end_index" not in set_keys:
            out["moe_layer_end_index"] = new_layers - 1  # ERNIE-4.5-MoE: experts up to the last layer
        mwl = out.get("max_window_layers")
        if isinstance(mwl, int) and "max_window_layers" not in set_keys:
            # Qwen configs ship max_window_layers == num_hidden_layers ("no layer slides").
            out["max_window_layers"] = new_layers if mwl >= old_layers else min(mwl, new_layers)
        mlp_only = out.get("mlp_only_layers")
        if isinstance(mlp_only, list) and "mlp_only_layers" not in set_keys:
            out["mlp_only_layers"] = [i for i in mlp_only if i < new_layers]
    if isinstance(out.get("layer_types"), list) and isinstance(new_layers, int):
        if len(out["layer_types"]) != new_layers:
            raise BadInput(
                f"layer_types has {len(out['layer_types'])} entries but num_hidden_layers is {new_layers}"
            )
    if "model_type" in set_keys and not isinstance(out.get("model_type"), str):
        raise BadInput(f"override model_type={out.get('model_type')!r} must be a string")
    return out


def resolve_model(name_or_path: str, overrides: Iterable[tuple[str, Any]] = ()) -> ModelSource:
    """Turn what the user typed into a `ModelSource`.

    Accepts, in this order: an existing config .json file (random weights), an existing local HF
    folder with config.json (pretrained when weight files are present, else random), then a
    catalog name, file stem or hf_id (case-insensitive). Anything else is `BadInput` with the
    closest catalog names.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise BadInput(f"model {name_or_path!r} is empty")
    overrides = tuple(_override_items(overrides))
    path = Path(name_or_path).expanduser()
    hf_id = licence = None
    folder: str | None = None
    weights = "random"

    if path.is_file():
        config_file = path
        name = path.stem
    elif path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise BadInput(f"model folder {path} has no config.json")
        name = path.name
        if _has_weights(path):
            weights, folder = "pretrained", str(path.resolve())
    else:
        entry = _find_entry(name_or_path)
        if entry is None:
            if name_or_path.endswith(".json") or name_or_path.startswith((".", "/", "~")):
                raise BadInput(f"model config file {name_or_path} does not exist")
            names = [e.name for e in list_catalog()] + [e.hf_id for e in list_catalog() if e.hf_id]
            lowered = [n.lower() for n in names]
            close = difflib.get_close_matches(name_or_path.lower(), lowered, n=4, cutoff=0.4)
            hint = f"; close matches: {', '.join(close)}" if close else "; see `wattlens models list`"
            raise BadInput(f"unknown model {name_or_path!r}{hint}")
        config_file, name, hf_id, licence = entry.path, entry.name, entry.hf_id, entry.licence

    config = _load_config_file(config_file)
    dropped: list[str] = []
    if weights == "random":
        for key in _DROP_FOR_RANDOM:
            if key in config:
                del config[key]
                dropped.append(key)
    config = apply_overrides(config, overrides)
    return ModelSource(
        name=name,
        config=config,
        weights=weights,
        path=folder,
        hf_id=hf_id,
        licence=licence,
        dropped_keys=tuple(dropped),
        overrides=tuple((k, _parse_value(v)) for k, v in overrides),
        config_file=str(config_file),
    )
