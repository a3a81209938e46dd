"""Energy-per-prompt predictor: learners, physics-informed model, validation, tables, baseline.

The approach follows From Prompts to Power (seeds/002): regressors trained on the variables of its
Table V, scored by repeated 5x5 cross-validation (its Table II) and on held-out models (its
Table III), plus its mixed-size batch validation (its Fig. 12). On top of it:

* physics features (`predict_features`) and a physics-informed model: energy = TDP x (theta_p x
  prefill roofline time + theta_d x decode roofline time + theta_o x launch-bound time, the
  kernels the decode steps run x 2.5 us: `wattlens.models.decode_ops` plus cuBLAS's split-GEMM
  reduces from `wattlens.hw.gemm_table`, + theta_a x the prefill
  operators' traffic time) + theta_b x the bytes the decode steps move, thetas fitted >= 0 on
  relative error, times a learned multiplicative residual (extremely randomised trees,
  `EnsembleResidual`). Being made of roofline times, a power scale and an energy per byte, it
  extrapolates to bigger models and other GPUs where trees cannot;
* validations that hold out what a user will actually ask about: leave-one-architecture-out
  (grouped by model family, variants included: a family never straddles train and test) and
  leave-one-GPU-out;
* EcoLogits' per-output-token formula as a baseline, scored on the same held-out points.

All learners except the physics ones fit log(energy per prompt) and predict exp(.) (the study's
linear models reached MAPEs of 100-200% on the raw scale); metrics are always on the raw scale.
Hyper-parameters are fixed (stated in `make_learner`), not tuned per fold.

scikit-learn / xgboost are imported lazily (optional extra `predict`); the uncalibrated physics
model needs numpy only, so `wattlens predict` works on a bare install.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from wattlens.analysis.predict_features import ALL_FEATURES, Request, request_features
from wattlens.core.errors import BadInput

J_PER_WH = 3600.0

# ---- dataset -----------------------------------------------------------------------------------

# Columns of data/predictor/*.csv (data/README.md describes them). Features are recomputed from
# model + overrides (or config_json) + gpu_name, so the file stays small and features can evolve.
DATASET_COLUMNS = (
    "model", "family", "overrides_json", "config_json", "gpu_name", "gpu_count", "dtype", "mode",
    "input_tokens", "output_tokens", "batch_size", "cache_tokens", "energy_batch_j", "energy_batch_uncertainty_j",
    "energy_per_prompt_j", "energy_per_prompt_uncertainty_j", "energy_per_output_token_j", "time_s",
    "energy_source", "trial_id", "run_id", "measured_at", "wattlens_version", "torch_version",
    "transformers_version", "driver_version", "decode_attention",
)
REQUIRED_COLUMNS = ("model", "gpu_name", "input_tokens", "output_tokens", "batch_size", "energy_per_prompt_j")


def load_dataset(path: str | Path):
    """Read a dataset CSV or Parquet into a pandas DataFrame, checking the required columns."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise BadInput(f"no dataset file {p}")
    return normalize_dataset(pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p), str(p))


def normalize_dataset(df, source: str = "rows"):
    """Check the required columns and fill the optional ones (defaults, catalog families), so that
    rows read from a file and rows built from a store in memory look alike."""
    import pandas as pd

    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise BadInput(f"dataset {source} lacks column(s) {missing}")
    df = df.copy()
    for col, default in (("gpu_count", 1), ("dtype", "bf16"), ("mode", "static"), ("overrides_json", ""),
                         ("config_json", ""), ("family", ""), ("decode_attention", "")):
        if col not in df.columns:
            df[col] = default
    for col, default in (("overrides_json", ""), ("config_json", ""), ("family", ""), ("mode", "static"),
                         ("dtype", "bf16"), ("decode_attention", "")):
        df[col] = df[col].astype(object).where(df[col].notna(), default).astype(str)
    # Static-cache slots of the generation a row was cut from; empty (eager, or files written before
    # the column existed): input + output.
    cache = pd.to_numeric(df["cache_tokens"], errors="coerce") if "cache_tokens" in df.columns else None
    df["cache_tokens"] = (df["input_tokens"] + df["output_tokens"] if cache is None
                          else cache.fillna(df["input_tokens"] + df["output_tokens"])).astype(int)
    if (df["family"] == "").any():
        df.loc[df["family"] == "", "family"] = df.loc[df["family"] == "", "model"].map(model_family)
    return df


# What `backends.hf.HFBackend.describe()["decode_attention"]` says when the lean loop's decode steps
# read each KV head once per step (a test checks the backend still says it).
KV_READ_ONCE_MARK = "each KV head read once"


def kv_heads_read_once(df):
    """The rows whose decode steps read each KV head once, and a note on those left out.

    The features charge a decode step for its KV cache once, which is what the lean loop's decode
    attentions read. A model whose attention they do not reach runs its own: Falcon-7B's SDPA call,
    before the lean loop grouped its one-token steps, broadcast its one KV head to 71 query heads,
    which PyTorch's math kernel converted to fp32 and copied once per query head; its decode step
    took 23 ms at batch 8 (Mistral-7B 9.6 ms) and its batch-64 trials did not finish (those stores
    are superseded: results/predictor/README.md). Rows whose backend recorded no decode attention
    are kept (stores from before the record, and modes without the lean loop).
    """
    if "decode_attention" not in df.columns:
        return df.reset_index(drop=True), ""
    recorded = df["decode_attention"].astype(str)
    keep = ((recorded == "") | recorded.str.contains(KV_READ_ONCE_MARK, regex=False)).to_numpy()
    left = df[~keep]
    notes = []
    for attention, n in left["decode_attention"].value_counts().items():
        models = ", ".join(sorted(set(left.loc[left["decode_attention"] == attention, "model"])))
        notes.append(f"decode attention {attention!r}: {n} rows ({models})")
    return df[keep].reset_index(drop=True), "; ".join(notes)


def one_serving_mode(df, mode: str | None = None):
    """The rows of one serving mode (default: the one with most rows), and a note on those left out.

    The features tell eager from the rest but not `static` from `graphed`, yet the same request costs
    about twice the energy in transformers' static generate (host-bound steps) as in the CUDA-graphed
    lean loop (Gemma-2-9B static vs Llama-3.1-8B graphed, batch 8: results/predictor/README.md), so
    a fit over both would learn the mode as noise in whichever family ran the odd one.
    """
    counts = df["mode"].value_counts()
    if counts.empty:
        raise BadInput("no rows to choose a serving mode from")
    mode = mode or str(counts.index[0])
    if mode not in counts.index:
        raise BadInput(f"no rows in mode {mode!r}; the data has {', '.join(f'{m} ({n})' for m, n in counts.items())}")
    keep = (df["mode"] == mode).to_numpy()
    left = df[~keep]
    note = "; ".join(f"{m}: {n} rows ({', '.join(sorted(set(left.loc[left['mode'] == m, 'model'])))})"
                     for m, n in left["mode"].value_counts().items())
    return df[keep].reset_index(drop=True), mode, note


def model_family(model: str) -> str:
    """The catalog family of a model name (variants share their base model's family)."""
    from wattlens.models.catalog import list_catalog

    for e in list_catalog():
        if model.lower() in (e.name.lower(), (e.hf_id or "").lower()):
            return e.family
    return model


def config_for_row(model: str, overrides_json: str = "", config_json: str = "") -> dict:
    """The HF config dict of a dataset row: `config_json` when given, else catalog + overrides."""
    if config_json:
        return json.loads(config_json)
    from wattlens.models.catalog import resolve_model

    overrides = tuple(sorted(json.loads(overrides_json).items())) if overrides_json else ()
    return resolve_model(model, overrides).config


def feature_matrix(df) -> np.ndarray:
    """Rows x `ALL_FEATURES` for a dataset frame (configs and GPU rows cached)."""
    from wattlens.hw.specs import gpu_spec_by_name
    from wattlens.models.arithmetic import model_facts

    cfg_cache: dict[tuple, tuple] = {}
    gpu_cache: dict[str, Any] = {}
    rows = []
    for r in df.itertuples(index=False):
        key = (r.model, r.overrides_json, r.config_json)
        if key not in cfg_cache:
            cfg = config_for_row(r.model, r.overrides_json, r.config_json)
            cfg_cache[key] = (cfg, model_facts(cfg))
        cfg, facts = cfg_cache[key]
        if r.gpu_name not in gpu_cache:
            gpu_cache[r.gpu_name] = gpu_spec_by_name(r.gpu_name)
        cache = getattr(r, "cache_tokens", None)  # absent or NaN: the Request's default (input + output)
        req = Request(int(r.input_tokens), int(r.output_tokens), int(r.batch_size), str(r.dtype), str(r.mode),
                      int(r.gpu_count), None if cache is None or math.isnan(cache) else int(cache))
        f = request_features(cfg, req, gpu_cache[r.gpu_name], facts)
        rows.append([f[k] for k in ALL_FEATURES])
    return np.asarray(rows, dtype=float)


# ---- metrics -----------------------------------------------------------------------------------


def regression_metrics(y_true_j: Sequence[float], y_pred_j: Sequence[float]) -> dict[str, float]:
    """R^2, RMSE and MAE in J and Wh, MAPE in %, on the raw (joule) scale."""
    y = np.asarray(y_true_j, dtype=float)
    p = np.asarray(y_pred_j, dtype=float)
    if y.shape != p.shape or y.size == 0:
        raise BadInput("metrics need equal-length, non-empty arrays")
    err = p - y
    ss_res = float(np.sum(err**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    rmse = math.sqrt(ss_res / y.size)
    mae = float(np.mean(np.abs(err)))
    return {
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
        "rmse_j": rmse,
        "mae_j": mae,
        "rmse_wh": rmse / J_PER_WH,
        "mae_wh": mae / J_PER_WH,
        "mape_pct": float(np.mean(np.abs(err) / np.abs(y)) * 100.0),
        "n": int(y.size),
    }


# ---- learners ----------------------------------------------------------------------------------

LEARNERS = ("linear", "elastic_net", "svm_linear", "random_forest", "xgb_tree", "xgb_linear", "physics",
            "physics_residual", "physics_linear")
STUDY_NAMES = {  # row labels of the study's tables
    "linear": "Linear Model", "elastic_net": "Glmnet", "svm_linear": "SVM Linear", "random_forest": "Random Forest",
    "xgb_tree": "XGB", "xgb_linear": "XGB Linear", "physics": "Physics (roofline x power)",
    "physics_residual": "Physics + learned residual",
    "physics_linear": "Physics + linear residual",
}
_IDX = {name: i for i, name in enumerate(ALL_FEATURES)}


class _LogTarget:
    """Fits an estimator on log(y) and predicts exp(.)."""

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, X, y):
        self.estimator.fit(X, np.log(y))
        return self

    def predict(self, X):
        return np.exp(np.clip(self.estimator.predict(X), -50, 50))


# Uncalibrated physics parameters (used before any dataset exists; NOT fitted to measurements):
# prefill at 50% of peak dense FLOP/s drawing 90% of TDP -> 0.9/0.5; decode at 60% of HBM bandwidth
# drawing 40% of TDP over its time -> 0.4/0.6, plus 0.1 J per GB it moves (HBM access and on-chip
# movement, ~12 pJ/bit); a launch-bound floor of 2.5 us per operator of a decode step (0.1 ms per
# Llama layer) drawing 30% of TDP; the prefill operators' traffic at HBM bandwidth drawing 60% of TDP;
# no extra energy for a routed expert's byte over any other weight byte.
# They are round engineering guesses, stated so, with a wide interval.
UNCALIBRATED_THETA = (1.8, 0.67, 0.3, 0.6, 0.1, 0.0)
# s per: prefill roofline s, s of the decode Linears in the GEMM table, KERNEL_S per other decode
# kernel, s of KV-cache and of routed-expert bytes at HBM bandwidth (read at 60% of it), s of prefill
# operator traffic, ATTENTION_CALL_S per layer and decode step
UNCALIBRATED_TIME_THETA = (2.0, 1.0, 1.0, 1.0 / 0.6, 1.0 / 0.6, 1.0, 1.0)
UNCALIBRATED_LOG_INTERVAL = (-math.log(3.0), math.log(3.0))  # x/÷ 3
KERNEL_S = 2.5e-6  # the launch-bound basis unit: about 0.1 ms per Llama layer-step (43 operators)
# The attention basis unit: one decode attention call per layer and step. On an H100 at batch 8 the
# small models' calls took 17-23 us each (nanochat, Llama-3.2-1B, ERNIE-0.3B, Qwen2.5-0.5B:
# results/predictor/experiments/step_profile-h100-session17-a.json), the elementwise kernels 1-4 us.
ATTENTION_CALL_S = 20e-6


def time_basis(X: np.ndarray) -> np.ndarray:
    """Request time bases in seconds: the prefill roofline; the decode steps taken apart into the
    measured time of their Linears (`decode_gemm_s`, from the per-GPU GEMM table), their other kernels
    x `KERNEL_S` (norms, rotary, attention, reduces of split GEMMs ...), the KV cache's bytes and the
    routed experts' bytes at HBM bandwidth; the prefill operators' traffic
    (`predict_features.prefill_operator_s`); the decode attention calls (layers x steps) x
    `ATTENTION_CALL_S`.

    Why apart: the decode roofline charges every byte at full bandwidth, but a decode step's small
    GEMMs reach a fifth to four fifths of it (a 1024 x 3072 GEMM 0.7 TB/s on an H100, an 8192 x 3072
    one 2.4). With the table, leave-one-architecture-out request time went from 6.84% to 5.49% off
    (results/predictor/experiments/gemm_table.md). The attention calls apart (session 17): counted as
    one kernel each, they were charged ~3 us, where cuDNN's one-token attention took 17-23 us a call in
    the small models' profiles; held out by family the time went from 5.32% to 5.09% off.
    """
    X = np.atleast_2d(X)
    batch_over_bw = X[:, _IDX["batch_size"]] / X[:, _IDX["gpu_bandwidth_bytes_per_s"]]
    other_kernels = np.maximum(X[:, _IDX["decode_kernels"]] - X[:, _IDX["decode_linears"]], 0.0)
    return np.column_stack([X[:, _IDX["prefill_roofline_s"]], X[:, _IDX["decode_gemm_s"]], other_kernels * KERNEL_S,
                            X[:, _IDX["decode_kv_bytes_per_prompt"]] * batch_over_bw,
                            X[:, _IDX["decode_expert_bytes_per_prompt"]] * batch_over_bw,
                            X[:, _IDX["prefill_operator_s"]], X[:, _IDX["layer_steps"]] * ATTENTION_CALL_S])


def energy_time_bases(X: np.ndarray) -> np.ndarray:
    """The times the energy's power terms multiply, in seconds: prefill roofline, decode roofline,
    the decode kernels x `KERNEL_S`, prefill operator traffic. Not `time_basis`: taking the decode
    step apart helped the held-out time but not the held-out energy (5.83% against 5.25% on session 15's
    dataset, 6.06% against 5.78% on session 14's; results/predictor/experiments/gemm_table.md)."""
    X = np.atleast_2d(X)
    return np.column_stack([X[:, _IDX["prefill_roofline_s"]], X[:, _IDX["decode_roofline_s"]],
                            X[:, _IDX["decode_kernels"]] * KERNEL_S, X[:, _IDX["prefill_operator_s"]]])


def physics_basis(X: np.ndarray) -> np.ndarray:
    """Per-prompt energy bases in joules: TDP x `energy_time_bases` / batch, the GB the decode steps move,
    and the GB of routed-expert weights among them (an extra energy per expert byte).

    The bytes basis is an energy per byte, not a power over the bandwidth time: the H100 and the
    H200 share a 700 W TDP while their HBM moves 3.35 vs 4.8 TB/s, so TDP x bytes / bandwidth would
    make a byte 1.43x cheaper on the H200; measured, Yi-34B's batch-8 generation costs 1.13-1.14x
    more per prompt on the H100 (results/predictor/experiments/derived_figures.md). Adding it took
    the held-out-GPU error from 15.2% to 11.5% (a session-8 run, not kept: results/predictor/README.md).

    The expert basis is fitted, not derived: with one energy per byte the physics under-predicted
    every MoE family (by 8-23% on average when that family was held out), and an expert byte fits at
    about 1.5x a dense weight byte. Why is not measured: the decode steps' MoE layers (transformers'
    grouped_mm) also route, sort and gather the tokens around one grouped GEMM over the experts read.
    """
    X = np.atleast_2d(X)
    timed = energy_time_bases(X) * (X[:, _IDX["gpu_tdp_w"]] / X[:, _IDX["batch_size"]])[:, None]
    return np.column_stack([timed, X[:, _IDX["decode_bytes_per_prompt"]] * 1e-9,
                            X[:, _IDX["decode_expert_bytes_per_prompt"]] * 1e-9])


N_PHYSICS_BASES = len(UNCALIBRATED_THETA)


def _older_bases(n_theta: int | None, n_time_theta: int) -> str | None:
    """Why a saved predictor cannot be used with this version's bases (None: it can). `n_theta` is
    None for learners without physics parameters."""
    n_time = len(UNCALIBRATED_TIME_THETA)
    if (n_theta is None or n_theta == N_PHYSICS_BASES) and n_time_theta == n_time:
        return None
    return (f"it has {n_theta} + {n_time_theta} physics parameters, this version {N_PHYSICS_BASES} + "
            f"{n_time} (fitted by an older wattlens: refit with `wattlens train`)")


def _nnls_relative(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    """theta >= 0 minimising sum(((A theta - y) / y)^2)."""
    from scipy.optimize import nnls

    w = 1.0 / y
    theta, _ = nnls(A * w[:, None], y * w)
    return theta


class PhysicsModel:
    """Energy per prompt = physics_basis(X) @ theta; theta >= 0 fitted on relative error."""

    def __init__(self, theta: Sequence[float] = UNCALIBRATED_THETA):
        self.theta = np.asarray(theta, dtype=float)

    def fit(self, X, y):
        self.theta = _nnls_relative(physics_basis(X), np.asarray(y, dtype=float))
        return self

    def predict(self, X):
        return np.maximum(physics_basis(X) @ self.theta, 1e-12)


class TreeEnsemble:
    """Fitted regression trees kept as plain arrays and applied with numpy alone:
    prediction = offset + scale x the sum of each tree's leaf value (a forest: offset 0, scale
    1 / trees; gradient boosting: its initial value and learning rate). So a fitted ensemble saves as
    JSON and a fresh install predicts without scikit-learn."""

    def __init__(self, trees: list[dict[str, np.ndarray]], offset: float = 0.0, scale: float = 1.0):
        self.trees, self.offset, self.scale = trees, float(offset), float(scale)

    @classmethod
    def from_estimators(cls, estimators, offset: float, scale: float) -> TreeEnsemble:
        """From scikit-learn decision trees (a forest's `estimators_`, a booster's column of them)."""
        return cls([{"left": t.tree_.children_left.copy(), "right": t.tree_.children_right.copy(),
                     "feature": t.tree_.feature.copy(), "threshold": t.tree_.threshold.copy(),
                     "value": t.tree_.value[:, 0, 0].copy()} for t in estimators], offset, scale)

    def predict(self, X) -> np.ndarray:
        # scikit-learn compares float32 copies of the features with float64 thresholds; so does this
        X = np.atleast_2d(np.asarray(X, float)).astype(np.float32).astype(np.float64)
        rows = np.arange(len(X))
        total = np.zeros(len(X))
        for t in self.trees:
            node = np.zeros(len(X), dtype=np.int64)
            while True:
                left = t["left"][node]
                inner = left >= 0
                if not inner.any():
                    break
                go_left = X[rows, np.where(inner, t["feature"][node], 0)] <= t["threshold"][node]
                node = np.where(inner, np.where(go_left, left, t["right"][node]), node)
            total += t["value"][node]
        return self.offset + self.scale * total

    def to_dict(self) -> dict[str, Any]:
        """Plain lists; an inner node's value is never read (`predict` adds leaves' only), so it is
        written as 0 to keep the shipped file small; leaves' thresholds and features are -2 already."""
        def saved(t: dict[str, np.ndarray]) -> dict[str, list]:
            leaf_values = np.where(t["left"] < 0, t["value"], 0.0)
            return {"left": t["left"].tolist(), "right": t["right"].tolist(), "feature": t["feature"].tolist(),
                    "threshold": t["threshold"].tolist(), "value": leaf_values.tolist()}

        return {"offset": self.offset, "scale": self.scale, "trees": [saved(t) for t in self.trees]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TreeEnsemble:
        ints = ("left", "right", "feature")
        trees = [{k: np.asarray(v, np.int64 if k in ints else float) for k, v in t.items()} for t in d["trees"]]
        return cls(trees, d.get("offset", 0.0), d.get("scale", 1.0 / max(len(trees), 1)))


def _check_features(d: Mapping[str, Any]) -> None:
    if d["features"] != list(ALL_FEATURES):
        raise ValueError("it was fitted on another feature set (refit with `wattlens train`)")


class ForestResidual:
    """exp(a random forest's prediction of a log residual): the correction the request time that
    `wattlens predict` prints is multiplied by (physics + learned residual learner).

    Trees follow the data where a linear correction would extrapolate: a family whose costs the
    features do not explain (GPT-OSS-20B's uncompiled decode was 2.4x its roofline + operator time
    at batch 64 before the lean loop's sink attention) would otherwise tilt a linear residual for
    every other model. Fitted with scikit-learn, kept as a `TreeEnsemble`; the size (50 trees,
    >= 10 rows per leaf) is fixed, not tuned per fold.
    """

    MIN_SAMPLES_LEAF = 10

    def __init__(self, forest: TreeEnsemble | None = None, seed: int = 0):
        self.forest = forest or TreeEnsemble([])
        self.seed = seed

    def fit(self, X, log_residual):
        from sklearn.ensemble import RandomForestRegressor

        forest = RandomForestRegressor(n_estimators=N_TREES["physics_residual"], min_samples_leaf=self.MIN_SAMPLES_LEAF,
                                       random_state=self.seed, n_jobs=-1)
        forest.fit(np.atleast_2d(X), np.asarray(log_residual, float))
        self.forest = TreeEnsemble.from_estimators(forest.estimators_, 0.0, 1.0 / len(forest.estimators_))
        return self

    def log_factor(self, X) -> np.ndarray:
        return self.forest.predict(X)

    def factor(self, X) -> np.ndarray:
        return np.exp(self.log_factor(X))

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(ALL_FEATURES), "min_samples_leaf": self.MIN_SAMPLES_LEAF, **self.forest.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ForestResidual:
        _check_features(d)
        return cls(TreeEnsemble.from_dict(d))


def regime_features(X: np.ndarray, theta: Sequence[float]) -> np.ndarray:
    """Dimensionless descriptions of a request's regime, for `EnsembleResidual`.

    A held-out architecture's sizes (layers, widths, bytes) often lie outside the training rows', and
    trees cannot extrapolate in them; ratios such as the share of each physics basis in the energy,
    the decode steps' FLOPs per byte against the GPU's ridge point, the KV cache's share of the
    bytes or operators per layer fall inside the ranges other families span. Columns: the six
    bases' shares of `physics_basis(X) @ theta`; log batch; log decode FLOPs per byte, and that over
    the GPU's FLOPs per byte; the KV share of the decode bytes; operators per layer and log operators
    per decode step; log(1 + ratio) of prefill to decode roofline, of the launch-bound floor to the
    decode roofline and of the prefill operators' traffic to the prefill roofline; log input and
    output tokens; query heads per KV head; MoE or not and the share of experts a token uses; the
    GPU's TDP, bandwidth (TB/s) and FLOPs per byte.
    """
    X = np.atleast_2d(np.asarray(X, float))

    def col(name: str) -> np.ndarray:
        return X[:, _IDX[name]]

    parts = physics_basis(X) * np.asarray(theta, float)[None, :]
    shares = parts / np.maximum(parts.sum(axis=1), 1e-12)[:, None]
    decode_bytes = np.maximum(col("decode_bytes_per_prompt"), 1.0)
    flops_per_byte = col("decode_flops_per_prompt") / decode_bytes
    gpu_flops_per_byte = col("gpu_flops_per_s") / col("gpu_bandwidth_bytes_per_s")
    ops_per_step = col("decode_kernels") / np.maximum(col("decode_steps"), 1.0)
    decode_s = np.maximum(col("decode_roofline_s"), 1e-9)
    experts = col("num_experts")
    return np.column_stack([
        shares, np.log(col("batch_size")),
        np.log1p(flops_per_byte), np.log1p(flops_per_byte) - np.log(gpu_flops_per_byte),
        col("decode_kv_bytes_per_prompt") / decode_bytes,
        ops_per_step / col("num_layers"), np.log1p(ops_per_step),
        np.log1p(col("prefill_roofline_s") / decode_s), np.log1p(col("decode_kernels") * KERNEL_S / decode_s),
        np.log1p(col("prefill_operator_s") / np.maximum(col("prefill_roofline_s"), 1e-9)),
        np.log(col("input_tokens")), np.log(col("output_tokens")),
        col("num_heads") / col("num_kv_heads"), col("is_moe"),
        np.where(experts > 0, col("experts_per_token") / np.maximum(experts, 1.0), 1.0),
        col("gpu_tdp_w"), col("gpu_bandwidth_bytes_per_s") / 1e12, gpu_flops_per_byte,
    ])


# The residual's members as shipped (`EnsembleResidual`): the extremely randomised trees alone since
# session 13, chosen between them and the mean of three by rows measured after both were fixed
# (results/predictor/README.md, session 13).
SHIPPED_RESIDUAL_MEMBERS = ("extra_trees",)


class EnsembleResidual:
    """exp(the mean of tree ensembles' predictions of a log residual): the correction the physics +
    learned residual learner multiplies its physics energy by.

    Members it can have: a random forest on the features (the residual shipped until session 11),
    extremely randomised trees and gradient boosting (depth 3) on the features plus
    `regime_features`. Session 11 shipped the mean of all three; the extremely randomised trees
    alone did better on each of the two sets of architectures measured after both were fixed
    (sessions 12 and 13), so they ship alone (`SHIPPED_RESIDUAL_MEMBERS`; results/predictor/README.md
    says how). Sizes are fixed, not tuned per fold; each member is kept as a `TreeEnsemble`, so
    prediction needs numpy only. `theta` is the physics fit the residual was learned against (the
    regime features' shares).
    """

    MIN_SAMPLES_LEAF: ClassVar[dict[str, int]] = {"extra_trees": 10, "boosting": 40}  # forest: `ForestResidual`'s
    BOOSTING_DEPTH, BOOSTING_LEARNING_RATE = 3, 0.05
    WITH_REGIME: ClassVar[dict[str, bool]] = {"forest": False, "extra_trees": True, "boosting": True}

    def __init__(self, theta: Sequence[float], members: Mapping[str, TreeEnsemble] | None = None, seed: int = 0,
                 names: Sequence[str] = SHIPPED_RESIDUAL_MEMBERS):
        self.theta = np.asarray(theta, float)
        self.members = dict(members or {})
        self.names = tuple(self.members) if self.members else tuple(names)
        unknown = set(self.names) - set(self.WITH_REGIME)
        if not self.names or unknown:
            raise ValueError(f"residual members {sorted(self.names)}: choose from {sorted(self.WITH_REGIME)}")
        self.seed = seed

    def _inputs(self, X) -> dict[str, np.ndarray]:
        """Each member's input rows: the features, with the regime features appended (computed once)."""
        X = np.atleast_2d(np.asarray(X, float))
        with_regime = np.hstack([X, regime_features(X, self.theta)])
        return {name: with_regime if self.WITH_REGIME[name] else X for name in self.names}

    def _fit_member(self, name: str, Z: np.ndarray, r: np.ndarray) -> TreeEnsemble:
        from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor

        if name == "forest":
            return ForestResidual(seed=self.seed).fit(Z, r).forest
        if name == "extra_trees":
            extra = ExtraTreesRegressor(n_estimators=N_TREES["physics_residual"],
                                        min_samples_leaf=self.MIN_SAMPLES_LEAF["extra_trees"], random_state=self.seed,
                                        n_jobs=-1).fit(Z, r)
            return TreeEnsemble.from_estimators(extra.estimators_, 0.0, 1.0 / len(extra.estimators_))
        boosting = GradientBoostingRegressor(n_estimators=N_TREES["physics_residual_boosting"],
                                             learning_rate=self.BOOSTING_LEARNING_RATE, max_depth=self.BOOSTING_DEPTH,
                                             min_samples_leaf=self.MIN_SAMPLES_LEAF["boosting"], random_state=self.seed)
        boosting.fit(Z, r)
        return TreeEnsemble.from_estimators(boosting.estimators_[:, 0], float(np.ravel(boosting.init_.constant_)[0]),
                                            boosting.learning_rate)

    def fit(self, X, log_residual):
        r = np.asarray(log_residual, float)
        inputs = self._inputs(X)
        self.members = {name: self._fit_member(name, inputs[name], r) for name in self.names}
        return self

    def member_log_factors(self, X) -> dict[str, np.ndarray]:
        inputs = self._inputs(X)
        return {name: m.predict(inputs[name]) for name, m in self.members.items()}

    def log_factor(self, X) -> np.ndarray:
        return np.mean(list(self.member_log_factors(X).values()), axis=0)

    def factor(self, X) -> np.ndarray:
        return np.exp(self.log_factor(X))

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(ALL_FEATURES), "theta": self.theta.tolist(),
                "members": {name: m.to_dict() for name, m in self.members.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EnsembleResidual:
        _check_features(d)
        if not d["members"] or set(d["members"]) - set(cls.WITH_REGIME):
            raise ValueError(f"its residual has members {sorted(d['members'])}, this version knows "
                             f"{sorted(cls.WITH_REGIME)}")
        return cls(d["theta"], {name: TreeEnsemble.from_dict(m) for name, m in d["members"].items()})


class _PhysicsTimesResidual:
    """Physics model times a residual factor fitted on log(measured / physics); subclasses say which
    residual (`_new_residual`)."""

    def __init__(self, theta: Sequence[float], residual):
        self.physics = PhysicsModel(theta)
        self.residual = residual

    def _new_residual(self):
        raise NotImplementedError

    def fit(self, X, y):
        y = np.asarray(y, dtype=float)
        self.physics.fit(X, y)
        self.residual = self._new_residual().fit(X, np.log(y / self.physics.predict(X)))
        return self

    def predict(self, X):
        return self.physics.predict(X) * self.residual.factor(X)

    @property
    def theta(self):
        return self.physics.theta


class PhysicsResidualModel(_PhysicsTimesResidual):
    """Physics model times an `EnsembleResidual` of log(measured / physics)."""

    def __init__(self, seed: int = 0, theta: Sequence[float] = UNCALIBRATED_THETA,
                 residual: EnsembleResidual | None = None):
        self.seed = seed
        super().__init__(theta, residual or EnsembleResidual(theta, seed=seed))

    def _new_residual(self) -> EnsembleResidual:
        return EnsembleResidual(self.physics.theta, seed=self.seed)


class LogLinearResidual:
    """exp(a ridge regression of a log residual on the log-scaled features): the correction the
    linear learners multiply a physics figure by (energy, and the time `wattlens predict` prints).

    Linear, so it extrapolates smoothly to unmeasured models and GPUs where a tree ensemble would
    flatten; a few numbers, fitted with scikit-learn, saved as JSON and applied with numpy alone.
    The ridge penalty is fixed, not tuned per fold.
    """

    RIDGE_ALPHA = 100.0

    def __init__(self, mean=None, scale=None, coef=None, intercept: float = 0.0):
        n = len(ALL_FEATURES)
        self.mean = np.zeros(n) if mean is None else np.asarray(mean, float)
        self.scale = np.ones(n) if scale is None else np.asarray(scale, float)
        self.coef = np.zeros(n) if coef is None else np.asarray(coef, float)
        self.intercept = float(intercept)

    def fit(self, X, log_residual):
        from sklearn.linear_model import Ridge
        from sklearn.preprocessing import StandardScaler

        Z = _signed_log1p(np.atleast_2d(X))
        scaler = StandardScaler().fit(Z)
        ridge = Ridge(alpha=self.RIDGE_ALPHA).fit(scaler.transform(Z), np.asarray(log_residual, float))
        self.mean, self.scale = scaler.mean_, scaler.scale_
        self.coef, self.intercept = np.asarray(ridge.coef_, float), float(ridge.intercept_)
        return self

    def factor(self, X) -> np.ndarray:
        Zs = (_signed_log1p(np.atleast_2d(X)) - self.mean) / self.scale
        return np.exp(self.intercept + Zs @ self.coef)

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(ALL_FEATURES), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept, "ridge_alpha": self.RIDGE_ALPHA}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LogLinearResidual:
        _check_features(d)
        return cls(d["mean"], d["scale"], d["coef"], d["intercept"])


class PhysicsLinearModel(_PhysicsTimesResidual):
    """Physics model times a `LogLinearResidual` of log(measured / physics)."""

    def __init__(self, theta: Sequence[float] = UNCALIBRATED_THETA, residual: LogLinearResidual | None = None):
        super().__init__(theta, residual or LogLinearResidual())

    def _new_residual(self) -> LogLinearResidual:
        return LogLinearResidual()


class TimeModel:
    """Request time = time_basis(X) @ theta (non-negative, fitted on relative error), times a
    residual when one was fitted: a random forest (`ForestResidual`) for the physics + learned residual
    learner, else the energy learner's kind (`LogLinearResidual`); bundles saved before residuals
    existed have none."""

    def __init__(self, theta: Sequence[float] = UNCALIBRATED_TIME_THETA,
                 residual: LogLinearResidual | ForestResidual | None = None, forest: bool = False):
        self.theta = np.asarray(theta, float)
        self.residual = residual
        self.forest = forest

    def fit(self, X, time_s):
        t = np.asarray(time_s, float)
        self.theta = _nnls_relative(time_basis(X), t)
        residual = ForestResidual() if self.forest else LogLinearResidual()
        self.residual = residual.fit(X, np.log(t / np.maximum(time_basis(X) @ self.theta, 1e-12)))
        return self

    def predict(self, X) -> np.ndarray:
        t = np.maximum(time_basis(X) @ self.theta, 1e-12)
        return t * self.residual.factor(X) if self.residual is not None else t


def time_model_for(learner: str) -> TimeModel:
    """The unfitted time model a bundle of `learner` carries: its residual is the learner's kind."""
    return TimeModel(forest=learner == "physics_residual")


# Ensemble sizes (fixed, not tuned). Tests shrink them to stay fast; results use these.
N_TREES = {"random_forest": 300, "physics_residual": 50, "physics_residual_boosting": 200, "xgb_tree": 400,
           "xgb_linear": 200}


def xgboost_available() -> bool:
    try:
        import xgboost  # noqa: F401
    except ImportError:
        return False
    return True


def make_learner(name: str, seed: int = 0):
    """A fresh, unfitted learner by name (see `LEARNERS`)."""
    if name == "physics":
        return PhysicsModel()
    if name == "physics_residual":
        return PhysicsResidualModel(seed)
    if name == "physics_linear":
        return PhysicsLinearModel()
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import ElasticNet, LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler
    from sklearn.svm import LinearSVR

    def scaled(est):  # features are non-negative sizes and counts: log1p, then standardise
        return make_pipeline(FunctionTransformer(_signed_log1p), StandardScaler(), est)

    if name == "linear":
        return _LogTarget(scaled(LinearRegression()))
    if name == "elastic_net":
        return _LogTarget(scaled(ElasticNet(alpha=1e-3, l1_ratio=0.5, max_iter=50_000)))
    if name == "svm_linear":
        return _LogTarget(scaled(LinearSVR(C=1.0, epsilon=0.0, max_iter=100_000, random_state=seed)))
    if name == "random_forest":
        return _LogTarget(RandomForestRegressor(n_estimators=N_TREES["random_forest"], min_samples_leaf=2, random_state=seed, n_jobs=-1))
    if name in ("xgb_tree", "xgb_linear"):
        if not xgboost_available():
            raise BadInput("xgboost is not installed (pip install 'wattlens[predict]')")
        from xgboost import XGBRegressor

        if name == "xgb_tree":
            return _LogTarget(XGBRegressor(n_estimators=N_TREES["xgb_tree"], max_depth=6, learning_rate=0.05,
                                           subsample=0.8, tree_method="hist", random_state=seed, n_jobs=1))
        return _LogTarget(scaled(XGBRegressor(booster="gblinear", n_estimators=N_TREES["xgb_linear"],
                                              learning_rate=0.5, reg_lambda=1e-3, reg_alpha=0.0, random_state=seed,
                                              n_jobs=1)))
    raise BadInput(f"unknown learner {name!r}; choose from {', '.join(LEARNERS)}")


def _signed_log1p(X):
    return np.sign(X) * np.log1p(np.abs(X))


def available_learners() -> tuple[str, ...]:
    return tuple(n for n in LEARNERS if xgboost_available() or not n.startswith("xgb"))


# ---- validation --------------------------------------------------------------------------------


def repeated_kfold_indices(n: int, n_splits: int = 5, n_repeats: int = 5, seed: int = 0):
    """(repeat, train_idx, test_idx) for repeated k-fold on n rows (the study's 5 x 5)."""
    rng = np.random.default_rng(seed)
    for rep in range(n_repeats):
        perm = rng.permutation(n)
        for fold in np.array_split(perm, n_splits):
            test = np.sort(fold)
            train = np.setdiff1d(np.arange(n), test)
            yield rep, train, test


def leave_one_group_out_indices(groups: Sequence[Any]):
    """(group, train_idx, test_idx): each group held out once; a group is never on both sides."""
    g = np.asarray(groups)
    for value in sorted(set(g.tolist()), key=str):
        test = np.flatnonzero(g == value)
        train = np.flatnonzero(g != value)
        yield value, train, test


@dataclass
class CVResult:
    learner: str
    folds: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {"learner": self.learner}
        for key in ("rmse_j", "rmse_wh", "r2", "mae_j", "mae_wh", "mape_pct"):
            vals = np.array([f[key] for f in self.folds], dtype=float)
            out[key] = float(np.nanmean(vals))
            out[key + "_sd"] = float(np.nanstd(vals, ddof=1)) if len(vals) > 1 else 0.0
        out["folds"] = len(self.folds)
        return out


def repeated_cv(X: np.ndarray, y: np.ndarray, learners: Iterable[str], n_splits: int = 5, n_repeats: int = 5,
                seed: int = 0) -> list[CVResult]:
    """Repeated k-fold CV (rows shuffled regardless of model: the study's Table II protocol)."""
    results = []
    for name in learners:
        res = CVResult(name)
        for _, tr, te in repeated_kfold_indices(len(y), n_splits, n_repeats, seed):
            model = make_learner(name, seed).fit(X[tr], y[tr])
            res.folds.append(regression_metrics(y[te], model.predict(X[te])))
        results.append(res)
    return results


@dataclass
class HeldOutResult:
    learner: str
    y_true_j: np.ndarray
    y_pred_j: np.ndarray
    groups: np.ndarray

    def pooled(self, mask: np.ndarray | None = None) -> dict[str, float]:
        m = np.ones(len(self.y_true_j), bool) if mask is None else mask
        return {"learner": self.learner, **regression_metrics(self.y_true_j[m], self.y_pred_j[m])}

    def per_group(self) -> list[dict[str, Any]]:
        return [{"group": g, **self.pooled(self.groups == g)} for g in sorted(set(self.groups.tolist()), key=str)]


def held_out_cv(X: np.ndarray, y: np.ndarray, groups: Sequence[Any], learners: Iterable[str],
                seed: int = 0) -> list[HeldOutResult]:
    """Leave-one-group-out predictions for each learner (LOAO with families, LOGO with GPUs)."""
    g = np.asarray(groups)
    out = []
    for name in learners:
        pred = np.full(len(y), np.nan)
        for _, tr, te in leave_one_group_out_indices(g):
            if len(tr) == 0:
                raise BadInput("leave-one-group-out needs at least two groups")
            pred[te] = make_learner(name, seed).fit(X[tr], y[tr]).predict(X[te])
        out.append(HeldOutResult(name, np.asarray(y, float), pred, g))
    return out


def held_out_baseline(y: np.ndarray, pred: np.ndarray, groups: Sequence[Any], label: str) -> HeldOutResult:
    """Wrap a fixed baseline's predictions (no fitting) so it is scored like the learners."""
    return HeldOutResult(label, np.asarray(y, float), np.asarray(pred, float), np.asarray(groups))


# ---- EcoLogits baseline --------------------------------------------------------------------------

# EcoLogits' LLM inference model: GPU energy per output token (kWh) = alpha x active params (billions)
# + beta, 95% interval +-1.96 x stdev, scaled by the number of GPUs needed, input tokens and batch size
# not used. Constants as published in genai-impact/ecologits, file ecologits/impacts/llm.py
# (GPU_ENERGY_ALPHA, GPU_ENERGY_BETA, GPU_ENERGY_STDEV) at commit 00d1915eb2b292e0204470d38401d86d6543fdf9;
# the same values appear in the project's JS port and third-party ports citing methodology v0.4.0.
# We did not verify which release tags carry them, and later releases changed the model; they are
# parameters here so another version can be scored with the same code.
ECOLOGITS_ALPHA_KWH_PER_TOKEN_PER_BPARAM = 8.91e-8
ECOLOGITS_BETA_KWH_PER_TOKEN = 1.43e-6
ECOLOGITS_STDEV_KWH_PER_TOKEN = 5.19e-7
ECOLOGITS_SOURCE = "genai-impact/ecologits ecologits/impacts/llm.py @ 00d1915e (alpha 8.91e-8, beta 1.43e-6 kWh/token)"


def ecologits_gpu_energy_j(active_params_b: float, output_tokens: float, gpu_count: int = 1,
                           alpha_kwh: float = ECOLOGITS_ALPHA_KWH_PER_TOKEN_PER_BPARAM,
                           beta_kwh: float = ECOLOGITS_BETA_KWH_PER_TOKEN) -> float:
    """EcoLogits' GPU energy of one request in joules (GPU term only: no server share, no PUE).

    We compare against measured GPU energy, so the server and PUE terms EcoLogits adds on top are
    left out; `gpu_count` is the number of GPUs actually used (EcoLogits derives it from a 4-bit
    memory estimate).
    """
    per_token_kwh = alpha_kwh * active_params_b + beta_kwh
    return output_tokens * per_token_kwh * gpu_count * 3.6e6


# ---- mixed-size validation (the study's Fig. 12) ------------------------------------------------


def mixed_batch_energy_j(predict_per_prompt: Callable[[int, int, int], float],
                         prompts: Sequence[tuple[int, int]]) -> float:
    """Predicted energy of a batch of heterogeneous prompts: the sum of per-prompt predictions.

    Each prompt (input_tokens, output_tokens) is predicted alone at the batch's size, as the
    study did; `predict_per_prompt(input_tokens, output_tokens, batch_size)` returns joules.
    """
    b = len(prompts)
    if b == 0:
        raise BadInput("empty batch")
    return float(sum(predict_per_prompt(i, o, b) for i, o in prompts))


def mixed_size_summary(measured_batch_j: Sequence[float], predicted_batch_j: Sequence[float],
                       batch_sizes: Sequence[int]) -> dict[str, float]:
    """Metrics on batch totals, and RMSE normalised by prompts per batch (the study's two figures)."""
    m = np.asarray(measured_batch_j, float)
    p = np.asarray(predicted_batch_j, float)
    b = np.asarray(batch_sizes, float)
    total = regression_metrics(m, p)
    per_prompt = regression_metrics(m / b, p / b)
    return {**{f"batch_{k}": v for k, v in total.items()}, **{f"per_prompt_{k}": v for k, v in per_prompt.items()}}


def plot_mixed_size(measured_batch_j, predicted_batch_j, path: str | Path, title: str,
                    padded_predicted_batch_j=None) -> None:
    """Measured batch energy vs the sum of per-prompt predictions (Wh), on a y = x line.

    With `padded_predicted_batch_j`, a second series: each prompt predicted at the batch's padded
    (longest) input length, the length the padded rows are computed at.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(measured_batch_j, float) / J_PER_WH
    series = [(np.asarray(predicted_batch_j, float) / J_PER_WH, "own input length", "o")]
    if padded_predicted_batch_j is not None:
        series.append((np.asarray(padded_predicted_batch_j, float) / J_PER_WH, "padded input length", "s"))
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for p, label, marker in series:
        ax.scatter(m, p, s=14, marker=marker, label=label)
    lo = min([m.min()] + [p.min() for p, _, _ in series])
    hi = max([m.max()] + [p.max() for p, _, _ in series])
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("measured batch energy (Wh)")
    ax.set_ylabel("sum of per-prompt predictions (Wh)")
    ax.set_title(title, fontsize=9)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- tables in the study's format ---------------------------------------------------------------


def _fmt(v: float, digits: int = 4) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def table_ii(results: Sequence[CVResult], unit: str = "wh") -> str:
    """Repeated-CV summary in the study's Table II layout (RMSE, RMSEsd, R2, R2SD, MAE, MAESD, MAPE, MAPESD)."""
    u = unit.lower()
    lines = [f"| model | RMSE ({u.upper() if u == 'j' else 'Wh'}) | RMSEsd | R2 | R2SD | MAE | MAESD | MAPE (%) | MAPESD |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r.summary()
        lines.append(f"| {STUDY_NAMES.get(r.learner, r.learner)} | {_fmt(s[f'rmse_{u}'])} | {_fmt(s[f'rmse_{u}_sd'])} | "
                     f"{_fmt(s['r2'])} | {_fmt(s['r2_sd'])} | {_fmt(s[f'mae_{u}'])} | {_fmt(s[f'mae_{u}_sd'])} | "
                     f"{_fmt(s['mape_pct'], 2)} | {_fmt(s['mape_pct_sd'], 2)} |")
    return "\n".join(lines)


def table_iii(rows: Sequence[Mapping[str, Any]], unit: str = "wh") -> str:
    """Held-out results in the study's Table III layout (R2, RMSE, MAE, MAPE), one row per learner."""
    u = unit.lower()
    lines = [f"| model | R2 | RMSE ({'J' if u == 'j' else 'Wh'}) | MAE | MAPE (%) | n |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {STUDY_NAMES.get(r['learner'], r['learner'])} | {_fmt(r['r2'])} | {_fmt(r[f'rmse_{u}'])} | "
                     f"{_fmt(r[f'mae_{u}'])} | {_fmt(r['mape_pct'], 2)} | {r['n']} |")
    return "\n".join(lines)


# ---- fitted bundles and prediction ---------------------------------------------------------------

# The shipped predictor: a physics learner (`physics_linear`) as plain JSON (numbers only: no pickle,
# no scikit-learn needed, readable across library versions), fitted by `wattlens train --learner
# physics_linear` on data/predictor/ (see results/predictor/README.md).
DEFAULT_PREDICTOR = Path(__file__).with_name("data") / "default_predictor.json"


@dataclass
class PredictorBundle:
    """A fitted learner with what `wattlens predict` needs to answer and to say what it is."""

    learner: str
    model: Any
    log_interval: tuple[float, float]  # 5th/95th percentiles of log(measured/predicted), out of fold
    time_theta: tuple[float, ...]
    calibrated: bool
    trained_on: dict[str, Any] = field(default_factory=dict)
    time_residual: LogLinearResidual | ForestResidual | None = None  # None: the time is the NNLS fit alone

    def predict_features(self, X: np.ndarray) -> dict[str, np.ndarray]:
        X = np.atleast_2d(X)
        e = np.asarray(self.model.predict(X), float)
        t = TimeModel(self.time_theta, getattr(self, "time_residual", None)).predict(X)  # older pickles lack it
        lo, hi = self.log_interval
        return {"energy_per_prompt_j": e, "energy_low_j": e * math.exp(lo), "energy_high_j": e * math.exp(hi),
                "time_s": t}


def uncalibrated_bundle() -> PredictorBundle:
    return PredictorBundle(
        learner="physics (UNCALIBRATED: roofline x assumed power; no measured data)",
        model=PhysicsModel(UNCALIBRATED_THETA), log_interval=UNCALIBRATED_LOG_INTERVAL,
        time_theta=UNCALIBRATED_TIME_THETA, calibrated=False,
        trained_on={"note": "parameters are stated assumptions, see predictor.UNCALIBRATED_THETA"},
    )


def fit_bundle(X: np.ndarray, y: np.ndarray, learner: str, groups: Sequence[Any] | None = None,
               time_s: np.ndarray | None = None, seed: int = 0, trained_on: dict | None = None) -> PredictorBundle:
    """Fit `learner` on all rows; the interval comes from out-of-fold (grouped if given) residuals."""
    y = np.asarray(y, float)
    if groups is not None and len(set(np.asarray(groups).tolist())) > 1:
        folds = leave_one_group_out_indices(groups)
        splits = [(tr, te) for _, tr, te in folds]
    else:
        splits = [(tr, te) for _, tr, te in repeated_kfold_indices(len(y), 5, 1, seed)]
    oof = np.full(len(y), np.nan)
    for tr, te in splits:
        oof[te] = make_learner(learner, seed).fit(X[tr], y[tr]).predict(X[te])
    r = np.log(y / oof)
    r = r[np.isfinite(r)]
    interval = (float(np.percentile(r, 5)), float(np.percentile(r, 95))) if r.size >= 20 else UNCALIBRATED_LOG_INTERVAL
    time_model = time_model_for(learner)
    if time_s is not None and np.all(np.isfinite(time_s)) and np.all(np.asarray(time_s) > 0) and len(time_s) >= 3:
        time_model.fit(X, time_s)
    model = make_learner(learner, seed).fit(X, y)
    return PredictorBundle(learner, model, interval, tuple(float(v) for v in time_model.theta), True,
                           dict(trained_on or {}), time_model.residual)


def save_bundle(bundle: PredictorBundle, path: str | Path) -> None:
    """Pickle, or JSON when `path` ends in .json (physics learners only: their parameters are numbers)."""
    import pickle

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        m = bundle.model
        if not isinstance(m, (PhysicsModel, _PhysicsTimesResidual)):
            raise BadInput(f"only the physics learners can be saved as JSON, not {bundle.learner}: use a .pkl path")
        doc = {"format": "wattlens-predictor", "version": 1, "learner": bundle.learner,
               "theta": [float(v) for v in m.theta], "time_theta": list(bundle.time_theta),
               "log_interval": list(bundle.log_interval), "calibrated": bundle.calibrated,
               "trained_on": bundle.trained_on}
        if isinstance(m, _PhysicsTimesResidual):
            doc["residual"] = {"kind": _residual_kind(m.residual), **m.residual.to_dict()}
        if bundle.time_residual is not None:
            doc["time_residual"] = {"kind": _residual_kind(bundle.time_residual), **bundle.time_residual.to_dict()}
        if isinstance(m, PhysicsResidualModel):  # a forest's arrays indented would run to ~100k lines
            path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
        else:
            path.write_text(json.dumps(doc, indent=1) + "\n")
        return
    with open(path, "wb") as f:
        pickle.dump(bundle, f)


_RESIDUAL_KINDS = {"ensemble": EnsembleResidual, "forest": ForestResidual, "linear": LogLinearResidual}


def _residual_kind(residual) -> str:
    return next(kind for kind, cls in _RESIDUAL_KINDS.items() if isinstance(residual, cls))


def _residual_from_dict(d: Mapping[str, Any]):
    return _RESIDUAL_KINDS[d.get("kind", "linear")].from_dict(d)


def _bundle_from_json(p: Path) -> PredictorBundle:
    try:
        doc = json.loads(p.read_text())
        if doc.get("format") != "wattlens-predictor":
            raise ValueError("not a wattlens predictor")
        older = _older_bases(len(doc["theta"]), len(doc["time_theta"]))
        if older:
            raise ValueError(older)
        res = doc.get("residual")
        residual = _residual_from_dict(res) if res is not None else None
        if residual is None:
            model = PhysicsModel(doc["theta"])
        elif isinstance(residual, EnsembleResidual):
            model = PhysicsResidualModel(theta=doc["theta"], residual=residual)
        elif isinstance(residual, ForestResidual):
            raise ValueError("its energy residual is a single forest, fitted before session 11 (refit with "
                             "`wattlens train`)")
        else:
            model = PhysicsLinearModel(doc["theta"], residual)
        time_res = doc.get("time_residual")
        return PredictorBundle(doc["learner"], model, tuple(doc["log_interval"]),
                               tuple(doc["time_theta"]), bool(doc["calibrated"]), dict(doc.get("trained_on", {})),
                               _residual_from_dict(time_res) if time_res else None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise BadInput(f"{p} is not a wattlens predictor: {e}") from None


def load_bundle(path: str | Path | None = None) -> PredictorBundle:
    """A saved bundle (only load files you trust: this is pickle); the shipped default if it exists
    and no path is given; otherwise the uncalibrated physics model."""
    import pickle

    p = Path(path) if path else DEFAULT_PREDICTOR
    if not p.is_file():
        if path:
            raise BadInput(f"no predictor file {p}")
        return uncalibrated_bundle()
    if p.suffix == ".json":
        return _bundle_from_json(p)
    try:
        with open(p, "rb") as f:
            bundle = pickle.load(f)
    except ModuleNotFoundError as e:
        raise BadInput(f"predictor {p} needs {e.name}: pip install 'wattlens[predict]'") from None
    if not isinstance(bundle, PredictorBundle):
        raise BadInput(f"{p} is not a wattlens predictor")
    theta = getattr(bundle.model, "theta", None)
    older = _older_bases(None if theta is None else len(theta), len(bundle.time_theta))
    if older:
        raise BadInput(f"{p}: {older}")
    return bundle


def predict_request(config: Mapping[str, Any], req: Request, gpu, bundle: PredictorBundle) -> dict[str, Any]:
    """Energy per prompt (with interval), batch energy and time of one request shape."""
    from wattlens.analysis.predict_features import step_gemms, step_ops
    from wattlens.models.arithmetic import has_formulas, model_facts
    from wattlens.models.build import kv_cache_copied_per_step

    facts = model_facts(dict(config))  # once: for a config without formulas it builds the model on meta
    f = request_features(config, req, gpu, facts=facts)
    X = np.asarray([[f[k] for k in ALL_FEATURES]])
    p = {k: float(v[0]) for k, v in bundle.predict_features(X).items()}

    shapes = "formulas" if has_formulas(config) else "transformers' module (meta device)"
    return {**p, "energy_batch_j": p["energy_per_prompt_j"] * req.batch_size, "learner": bundle.learner,
            "calibrated": bundle.calibrated, "decode_ops_source": step_ops(config).source,
            "decode_gemms_source": step_gemms(config, facts, req, gpu).source,
            "parameter_counts_from": shapes, "kv_cache_copied": kv_cache_copied_per_step(facts.model_type),
            "features": f}
