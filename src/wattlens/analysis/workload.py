"""Workload characterisation from per-request features and per-query quality (seeds/003 section V).

Pure numpy. Tables: feature statistics per dataset (II-V), feature-quality correlations per model
(VIII), difficulty classifier with 5-fold stratified CV and feature ablation (VI), scaling patterns
across model sizes (IX), validation of the threshold rule (X).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from wattlens.core.errors import BadInput
from wattlens.workloads.features import FEATURE_NAMES, RequestFeatures

ALWAYS_EASY, SCALING_HELPS, ALWAYS_HARD, INCONSISTENT = "always_easy", "scaling_helps", "always_hard", "inconsistent"
PATTERNS = (ALWAYS_EASY, SCALING_HELPS, ALWAYS_HARD, INCONSISTENT)


# ------------------------------------------------------------------ io
def write_features_csv(rows: Sequence[RequestFeatures], path: Path) -> None:
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].as_dict()))
        w.writeheader()
        for r in rows:
            w.writerow(r.as_dict())


def read_features_csv(path: Path) -> dict[str, dict]:
    """request_id -> feature row (numbers as floats)."""
    out = {}
    with Path(path).open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out[row["request_id"]] = {k: (v if k in ("request_id", "dataset") else float(v)) for k, v in row.items()}
    return out


def read_quality_csv(paths: Iterable[Path]) -> list[dict]:
    """Rows of per-query quality CSVs (request_id, dataset, model, params_b, quality[, metric, prediction]).

    Scores produced elsewhere import the same way: only request_id, dataset, model, params_b and
    quality (0-1) are required.
    """
    rows = []
    for path in paths:
        with Path(path).open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"request_id", "dataset", "model", "params_b", "quality"} - set(reader.fieldnames or ())
            if missing:
                raise BadInput(f"{path}: quality csv lacks columns {sorted(missing)}")
            for r in reader:
                rows.append({**r, "params_b": float(r["params_b"]), "quality": float(r["quality"])})
    return rows


class QualityTable:
    """Per-query quality for several models: `q[i, m]` for request `ids[i]` and model `models[m]`,
    models ordered by size (smallest first). Only requests scored by every model are kept."""

    def __init__(self, rows: Iterable[dict]):
        by_req: dict[str, dict[str, float]] = defaultdict(dict)
        size: dict[str, float] = {}
        dataset: dict[str, str] = {}
        for r in rows:
            by_req[r["request_id"]][r["model"]] = float(r["quality"])
            size[r["model"]] = float(r["params_b"])
            dataset[r["request_id"]] = r["dataset"]
        self.models = sorted(size, key=lambda m: (size[m], m))
        self.params_b = [size[m] for m in self.models]
        self.ids = [i for i in by_req if len(by_req[i]) == len(self.models)]
        if not self.ids or len(self.models) < 1:
            raise BadInput("quality table is empty")
        self.datasets = [dataset[i] for i in self.ids]
        self.q = np.array([[by_req[i][m] for m in self.models] for i in self.ids], dtype=float)

    def normalized(self) -> np.ndarray:
        """Quality min-max normalised within each dataset (over all its queries and models)."""
        out = np.zeros_like(self.q)
        ds = np.array(self.datasets)
        for d in set(self.datasets):
            sel = ds == d
            lo, hi = self.q[sel].min(), self.q[sel].max()
            out[sel] = (self.q[sel] - lo) / (hi - lo) if hi > lo else 0.0
        return out


# ------------------------------------------------------------------ statistics
def pearson_r(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def length_stats(rows: Sequence[RequestFeatures]) -> dict[str, dict[str, float]]:
    """Table II: input length (tokens) per dataset: mean, std, min, max, max/min."""
    out = {}
    for d in _datasets(rows):
        x = np.array([r.input_tokens for r in rows if r.dataset == d], float)
        out[d] = {"n": len(x), "mean": x.mean(), "std": x.std(ddof=1) if len(x) > 1 else 0.0, "min": x.min(),
                  "max": x.max(), "range_x": x.max() / x.min() if x.min() > 0 else math.inf}
    return out


def feature_means(rows: Sequence[RequestFeatures]) -> dict[str, dict[str, float]]:
    """Table III/IV: mean of each feature per dataset (causal score as a fraction)."""
    return {d: {f: float(np.mean([getattr(r, f) for r in rows if r.dataset == d])) for f in FEATURE_NAMES}
            for d in _datasets(rows)}


def length_correlations(rows: Sequence[RequestFeatures]) -> dict[str, float]:
    """Table V: Pearson r of each feature with input length, over all requests."""
    length = [r.input_tokens for r in rows]
    return {f: pearson_r([getattr(r, f) for r in rows], length) for f in FEATURE_NAMES}


def _datasets(rows) -> list[str]:
    seen: list[str] = []
    for r in rows:
        if r.dataset not in seen:
            seen.append(r.dataset)
    return seen


def feature_matrix(table: QualityTable, features: dict[str, dict], names: Sequence[str]) -> np.ndarray:
    try:
        return np.array([[features[i][n] for n in names] for i in table.ids], dtype=float)
    except KeyError as e:
        raise BadInput(f"no feature row for request {e}") from None


def feature_quality_correlations(table: QualityTable, features: dict[str, dict],
                                 names: Sequence[str] = ("entity_density", "causal_question_score", "token_entropy_bits",
                                                         "reasoning_complexity", "complexity_score", "input_tokens")) -> dict[str, dict[str, float]]:
    """Table VIII: Pearson r of each feature with each model's normalised quality."""
    qn = table.normalized()
    x = feature_matrix(table, features, names)
    return {n: {m: pearson_r(x[:, j], qn[:, k]) for k, m in enumerate(table.models)} for j, n in enumerate(names)}


# ------------------------------------------------------------------ difficulty classifier (Table VI)
def difficulty_labels(table: QualityTable) -> np.ndarray:
    """1 = easy: mean normalised quality across models above its dataset's median, else 0 (hard)."""
    mean_q = table.normalized().mean(axis=1)
    ds = np.array(table.datasets)
    labels = np.zeros(len(mean_q), dtype=int)
    for d in set(table.datasets):
        sel = ds == d
        labels[sel] = (mean_q[sel] > np.median(mean_q[sel])).astype(int)
    return labels


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = 1.0, iters: int = 50) -> np.ndarray:
    """L2-regularised logistic regression (penalty ||w||^2 / (2C), intercept unpenalised) by Newton's method.
    Returns [intercept, weights...]."""
    xa = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(xa.shape[1])
    reg = np.eye(xa.shape[1]) / c
    reg[0, 0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xa @ w, -30, 30)))
        grad = xa.T @ (p - y) + reg @ w
        hess = (xa * (p * (1 - p))[:, None]).T @ xa + reg + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w


def predict_logistic(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return ((np.hstack([np.ones((len(x), 1)), x]) @ w) > 0).astype(int)


def stratified_folds(y: np.ndarray, k: int = 5, seed: int = 0) -> list[np.ndarray]:
    """k test-index folds, each class dealt round-robin after a seeded shuffle."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            folds[j % k].append(int(i))
    return [np.array(sorted(f), dtype=int) for f in folds]


def cv_accuracy(x: np.ndarray, y: np.ndarray, k: int = 5, c: float = 1.0, seed: int = 0) -> float:
    """Mean test accuracy of standardised L2 logistic regression over k stratified folds."""
    accs = []
    for test in stratified_folds(y, k, seed):
        if len(test) == 0:
            continue
        train = np.setdiff1d(np.arange(len(y)), test)
        mu, sd = x[train].mean(0), x[train].std(0)
        sd[sd == 0] = 1.0
        if len(np.unique(y[train])) < 2:
            pred = np.full(len(test), y[train][0])
        else:
            w = fit_logistic((x[train] - mu) / sd, y[train], c)
            pred = predict_logistic(w, (x[test] - mu) / sd)
        accs.append(float((pred == y[test]).mean()))
    return float(np.mean(accs))


ABLATION_SETS = (
    ("+ entity density", ("input_tokens", "entity_density")),
    ("+ causal question score", ("input_tokens", "entity_density", "causal_question_score")),
    ("features only (no length)", FEATURE_NAMES),
    ("all features + length", (*FEATURE_NAMES, "input_tokens")),
)


def ablation(table: QualityTable, features: dict[str, dict], length_threshold_tokens: int = 150,
             k: int = 5, seed: int = 0) -> list[tuple[str, float]]:
    """Table VI: accuracy of the length rule (long = hard) and of CV classifiers on growing feature sets."""
    y = difficulty_labels(table)
    length = feature_matrix(table, features, ["input_tokens"])[:, 0]
    rows = [(f"length only (> {length_threshold_tokens} tokens = hard)",
             float(((length <= length_threshold_tokens).astype(int) == y).mean()))]
    for name, cols in ABLATION_SETS:
        rows.append((name, cv_accuracy(feature_matrix(table, features, cols), y, k, seed=seed)))
    return rows


# ------------------------------------------------------------------ scaling patterns (Table IX)
def scaling_pattern(normalized_quality: Sequence[float], threshold: float = 0.5) -> str:
    """Pattern of one query's normalised quality across models ordered small -> large.

    good = quality >= threshold. always_easy: good on every model; always_hard: on none;
    scaling_helps: bad on the smallest model(s) and good on every model from some size up;
    inconsistent: anything else (good on a small model, bad on a larger one).
    """
    good = [q >= threshold for q in normalized_quality]
    if all(good):
        return ALWAYS_EASY
    if not any(good):
        return ALWAYS_HARD
    first = good.index(True)
    return SCALING_HELPS if all(good[first:]) else INCONSISTENT


def scaling_patterns(table: QualityTable, threshold: float = 0.5) -> list[str]:
    return [scaling_pattern(row, threshold) for row in table.normalized()]


def pattern_profile(table: QualityTable, features: dict[str, dict], patterns: Sequence[str]) -> dict[str, dict[str, float]]:
    """Share of queries and mean feature profile per pattern."""
    out = {}
    for p in PATTERNS:
        ids = [i for i, pp in zip(table.ids, patterns) if pp == p]
        prof = {"share": len(ids) / len(patterns)}
        for f in ("entity_density", "causal_question_score", "token_entropy_bits"):
            prof[f] = float(np.mean([features[i][f] for i in ids])) if ids else float("nan")
        out[p] = prof
    return out


# ------------------------------------------------------------------ threshold rule (Table X)
def rule_is_easy(entity_density: float, causal_question_score: float, max_entity_density: float = 0.20,
                 max_causal: float = 0.05) -> bool:
    """The study's rule: easy when entity density < 0.20 and causal-question score < 0.05."""
    return entity_density < max_entity_density and causal_question_score < max_causal


def rule_validation(table: QualityTable, features: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Table X: each model's mean (raw) quality on rule-easy and rule-hard queries, and the gap."""
    easy = np.array([rule_is_easy(features[i]["entity_density"], features[i]["causal_question_score"]) for i in table.ids])
    out = {"_counts": {"easy": int(easy.sum()), "hard": int((~easy).sum())}}
    for k, m in enumerate(table.models):
        e = float(table.q[easy, k].mean()) if easy.any() else float("nan")
        h = float(table.q[~easy, k].mean()) if (~easy).any() else float("nan")
        out[m] = {"easy": e, "hard": h, "gap": e - h}
    return out


# ------------------------------------------------------------------ markdown
def _fmt(x: float, nd: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def feature_report(rows: Sequence[RequestFeatures], ner_name: str, tokenizer: str, agreement: dict | None = None,
                   sources: dict[str, str] | None = None) -> str:
    """Markdown: Tables II-V for these requests."""
    lines = ["# Workload features per dataset", "",
             f"Entity recogniser: **{ner_name}**"
             + ("" if ner_name.startswith("spacy") else " (spaCy's en_core_web_sm is not installed here, so the "
                "capitalisation heuristic of `wattlens.workloads.features.capitalization_ner` was used; its agreement "
                "with spaCy could not be measured on this machine)") + ".",
             f"Input length: tokens of the `{tokenizer}` tokenizer over the full prompt.", ""]
    if sources:
        lines += ["| dataset | source |", "|---|---|"] + [f"| {d} | {s} |" for d, s in sources.items()] + [""]
    if agreement:
        lines += ["Fallback vs spaCy: " + ", ".join(f"{k} {_fmt(v)}" for k, v in agreement.items()), ""]
    lines += ["## Input length (tokens) (cf. Table II)", "", "| dataset | n | mean | std | min | max | max/min |",
              "|---|---|---|---|---|---|---|"]
    for d, s in length_stats(rows).items():
        lines.append(f"| {d} | {s['n']} | {s['mean']:.1f} | {s['std']:.1f} | {s['min']:.0f} | {s['max']:.0f} | {s['range_x']:.1f}x |")
    means = feature_means(rows)
    ds = list(means)
    lines += ["", "## Feature means (cf. Tables III and IV)", "", "| feature | " + " | ".join(ds) + " |",
              "|---|" + "---|" * len(ds)]
    for f in FEATURE_NAMES:
        vals = [means[d][f] * (100 if f == "causal_question_score" else 1) for d in ds]
        label = "causal questions (%)" if f == "causal_question_score" else f
        lines.append(f"| {label} | " + " | ".join(_fmt(v, 2) for v in vals) + " |")
    lines += ["", "## Correlation with input length, all requests (cf. Table V)", "", "| feature | r with length |",
              "|---|---|"]
    lines += [f"| {f} | {_fmt(r, 2)} |" for f, r in length_correlations(rows).items()]
    return "\n".join(lines) + "\n"


def analysis_report(table: QualityTable, features: dict[str, dict], threshold: float = 0.5) -> str:
    """Markdown: Tables VII-X for a quality table."""
    lines = ["## Mean quality per model and dataset (cf. Table VII)", "",
             "| dataset | " + " | ".join(f"{m} ({p * 1e3:.1f} M)" for m, p in zip(table.models, table.params_b)) + " |",
             "|---|" + "---|" * len(table.models)]
    ds = np.array(table.datasets)
    for d in dict.fromkeys(table.datasets):
        lines.append(f"| {d} (n={int((ds == d).sum())}) | " + " | ".join(_fmt(v) for v in table.q[ds == d].mean(0)) + " |")
    lines.append("| all | " + " | ".join(_fmt(v) for v in table.q.mean(0)) + " |")
    corr = feature_quality_correlations(table, features)
    lines += ["", "## Feature-quality correlation per model (normalised quality) (cf. Table VIII)", "",
              "| feature | " + " | ".join(table.models) + " |", "|---|" + "---|" * len(table.models)]
    lines += [f"| {f} | " + " | ".join(_fmt(v, 2) for v in row.values()) + " |" for f, row in corr.items()]
    y = difficulty_labels(table)
    lines += ["", f"## Difficulty classifier, 5-fold stratified CV (cf. Table VI); easy share {y.mean():.1%}", "",
              "| feature set | accuracy |", "|---|---|"]
    lines += [f"| {name} | {acc:.1%} |" for name, acc in ablation(table, features)]
    lines.append(f"| (majority class, for reference) | {max(y.mean(), 1 - y.mean()):.1%} |")
    pats = scaling_patterns(table, threshold)
    lines += ["", f"## Scaling patterns across models (normalised quality >= {threshold} = good) (cf. Table IX)", "",
              "| pattern | share | entity density | causal questions | entropy (bits) |", "|---|---|---|---|---|"]
    for p, prof in pattern_profile(table, features, pats).items():
        lines.append(f"| {p} | {prof['share']:.1%} | {_fmt(prof['entity_density'], 2)} | "
                     f"{_fmt(prof['causal_question_score'], 2)} | {_fmt(prof['token_entropy_bits'], 2)} |")
    val = rule_validation(table, features)
    c = val.pop("_counts")
    lines += ["", f"## Threshold rule (entity density < 0.20 and causal < 0.05 = easy): {c['easy']} easy, "
              f"{c['hard']} hard (cf. Table X)", "", "| model | easy | hard | gap | easy > hard? |", "|---|---|---|---|---|"]
    for m, v in val.items():
        lines.append(f"| {m} | {_fmt(v['easy'])} | {_fmt(v['hard'])} | {_fmt(v['gap'], 3)} | "
                     f"{'yes' if v['gap'] > 0 else 'no'} |")
    return "\n".join(lines) + "\n"
