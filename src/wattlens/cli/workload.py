"""`wattlens workload ...`: request features, per-query quality, difficulty analysis and routing.

Only argument parsing and output here; heavy imports (torch, matplotlib) happen inside commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wattlens.core.errors import BadInput

workload_app = typer.Typer(
    help="Workload features, query difficulty and energy-aware routing (seeds/003 sections V and VII).",
    no_args_is_help=True,
)

DatasetsOpt = Annotated[list[str] | None, typer.Option("--dataset", "-d", help="boolq, hellaswag, truthfulqa, narrativeqa (repeatable; default all four).")]
PathsOpt = Annotated[list[str] | None, typer.Option("--path", help="NAME=FILE: read dataset NAME from FILE instead of the bundled sample (repeatable).")]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="At most this many requests per dataset.")]


def _requests(datasets: list[str] | None, paths: list[str] | None, limit: int | None):
    from wattlens.workloads.datasets import DATASETS, load_dataset

    files: dict[str, str] = {}
    for item in paths or []:
        if "=" not in item:
            raise BadInput(f"--path expects NAME=FILE, got {item!r}")
        k, v = item.split("=", 1)
        files[k.strip().lower()] = v
    out = {}
    for name in datasets or list(DATASETS):
        out[name.lower()] = load_dataset(name, files.get(name.lower()), limit)
    return out


@workload_app.command("features")
def features_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder for features.csv and features.md.")] = Path("results/workload"),
    dataset: DatasetsOpt = None,
    path: PathsOpt = None,
    limit: LimitOpt = None,
    tokenizer: Annotated[str, typer.Option(help="Tokenizer for input length: 'gpt2' (bundled) or a local folder.")] = "gpt2",
) -> None:
    """Features of every request (Tables II-V) -> features.csv + features.md."""
    from wattlens.analysis.workload import feature_report, write_features_csv
    from wattlens.workloads.datasets import DATASETS, load_dataset
    from wattlens.workloads.features import capitalization_ner, default_ner, ner_agreement, request_features
    from wattlens.workloads.tokenizers import load_tokenizer

    reqs = _requests(dataset, path, limit)
    tok = load_tokenizer(tokenizer, chat_template=None)

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    ner, ner_name = default_ner()
    rows = [request_features(r, ner, count) for rs in reqs.values() for r in rs]
    agreement = None
    if ner_name.startswith("spacy"):
        texts = [r.prompt for rs in reqs.values() for r in rs]
        agreement = ner_agreement(texts, capitalization_ner, ner)
    out.mkdir(parents=True, exist_ok=True)
    write_features_csv(rows, out / "features.csv")
    (out / "features.md").write_text(feature_report(rows, ner_name=ner_name, tokenizer=tokenizer,
                                                    agreement=agreement, sources={n: str(p) for n, p in _sources(reqs, path).items()}))
    typer.echo(f"{len(rows)} requests -> {out / 'features.csv'}, {out / 'features.md'} (NER: {ner_name})")


def _sources(reqs, paths):
    from wattlens.workloads.datasets import BUNDLED_SAMPLES

    given = dict(p.split("=", 1) for p in (paths or []))
    return {n: given.get(n, f"bundled sample {BUNDLED_SAMPLES[n].relative_to(BUNDLED_SAMPLES[n].parents[2])}") for n in reqs}


@workload_app.command("score")
def score_cmd(
    model: Annotated[str, typer.Option("--model", help="Catalog name (random weights) or a local folder of real weights.")],
    out: Annotated[Path, typer.Option("--out", help="CSV of per-query quality.")],
    label: Annotated[str | None, typer.Option(help="Model name written in the CSV (default: --model).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Architecture edit key=value (repeatable).")] = None,
    dataset: DatasetsOpt = None,
    path: PathsOpt = None,
    limit: LimitOpt = None,
    gen_tokens: Annotated[int, typer.Option(help="Greedy tokens per generation answer.")] = 32,
    device: Annotated[str, typer.Option(help="cpu, cuda, auto.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="fp32, bf16, fp16.")] = "fp32",
) -> None:
    """Per-query quality of one model: log-likelihood choice (BoolQ, HellaSwag), ROUGE-L (TruthfulQA, NarrativeQA)."""
    from wattlens.core.spec import parse_override
    from wattlens.runner.quality import load_scoring_model, score_requests, write_quality_csv

    reqs = _requests(dataset, path, limit)
    overrides = [parse_override(s) for s in set_ or []]
    m, tok, params_b, weights = load_scoring_model(model, overrides, dtype=dtype, device=device)
    rows = []
    for name, rs in reqs.items():
        rows += score_requests(m, tok, rs, label or model, params_b, gen_tokens)
        typer.echo(f"{name}: {len(rs)} scored")
    write_quality_csv(rows, out)
    typer.echo(f"{len(rows)} rows -> {out} (model {label or model}, {params_b * 1e3:.2f} M params, weights: {weights})")


QualityOpt = Annotated[list[Path], typer.Option("--quality", "-q", help="Per-query quality CSV (repeatable; one or more models each).")]
FeaturesOpt = Annotated[Path, typer.Option("--features", help="features.csv from `wattlens workload features`.")]


@workload_app.command("analyze")
def analyze_cmd(
    quality: QualityOpt,
    features: FeaturesOpt = Path("results/workload/features.csv"),
    out: Annotated[Path | None, typer.Option("--out", help="Markdown file (default: print).")] = None,
    threshold: Annotated[float, typer.Option(help="Normalised quality counted as 'good' for scaling patterns.")] = 0.5,
) -> None:
    """Quality per model (VII), feature-quality correlations (VIII), classifier ablation (VI), patterns (IX), rule (X)."""
    from wattlens.analysis.workload import QualityTable, analysis_report, read_features_csv, read_quality_csv

    table = QualityTable(read_quality_csv(quality))
    text = analysis_report(table, read_features_csv(features), threshold)
    if out:
        out.write_text(text)
        typer.echo(f"-> {out}")
    else:
        typer.echo(text)


@workload_app.command("route")
def route_cmd(
    quality: QualityOpt,
    tier: Annotated[list[str], typer.Option("--tier", help="QUALITY_MODEL=ENERGY_MODEL: which measured model's energy a quality model stands for (repeatable).")],
    store: Annotated[list[Path], typer.Option("--store", help="Store JSON export(s) with the measured energies.")],
    dvfs: Annotated[list[str] | None, typer.Option("--dvfs", help="ENERGY_MODEL=FRACTION=SOURCE: DVFS saving of a tier (repeatable).")] = None,
    features: FeaturesOpt = Path("results/workload/features.csv"),
    mode: Annotated[str, typer.Option(help="Backend mode of the trials whose energy is used.")] = "eager",
    out: Annotated[Path, typer.Option("--out", help="Folder for routing.md and frontier.png.")] = Path("results/workload"),
    threshold: Annotated[float, typer.Option(help="Normalised quality counted as 'good' for scaling patterns.")] = 0.5,
    note: Annotated[str, typer.Option(help="A paragraph put at the top of the report.")] = "",
) -> None:
    """Routing report: tiers, pattern routing savings (XV, XVII), strategies and frontier (XVIII) + Tables VI-X."""
    from wattlens.analysis.routing import Tier, energies_from_store, plot_frontier, routing_report, strategies
    from wattlens.analysis.workload import QualityTable, analysis_report, read_features_csv, read_quality_csv

    table = QualityTable(read_quality_csv(quality))
    feats = read_features_csv(features)
    mapping = dict(t.split("=", 1) for t in tier if "=" in t)
    energies = energies_from_store(store, mode)
    savings = {}
    for item in dvfs or []:
        parts = item.split("=", 2)
        if len(parts) != 3:
            raise BadInput(f"--dvfs expects MODEL=FRACTION=SOURCE, got {item!r}")
        savings[parts[0]] = (float(parts[1]), parts[2])
    tiers = []
    for m in table.models:
        em = mapping.get(m)
        if em is None or em not in energies:
            raise BadInput(f"quality model {m!r} needs --tier {m}=MODEL with MODEL among the stored {sorted(energies)}")
        frac, src = savings.get(em, (0.0, "none given"))
        tiers.append(Tier(m, energies[em][0], frac, f"{em}: {energies[em][1]}", src))
    out.mkdir(parents=True, exist_ok=True)
    plot_frontier(strategies(table, tiers, feats, threshold), out / "frontier.png",
                  "energy-quality of routing strategies (random-weight quality; H100 energies)")
    text = routing_report(table, tiers, feats, threshold, "frontier.png", header=f"# Energy-aware routing report\n\n{note}\n")
    text += "\n" + analysis_report(table, feats, threshold)
    (out / "routing.md").write_text(text)
    typer.echo(f"-> {out / 'routing.md'}, {out / 'frontier.png'}")
