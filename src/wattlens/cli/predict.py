"""`wattlens predict` and `wattlens train`: argument parsing and human output only.

Registered on the main app by `register(app)`. Imports stay light: numpy and the analysis modules
load inside the commands; scikit-learn only when a fitted (non-physics) predictor is used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from wattlens.core.errors import BadInput


def _print(obj: Any) -> None:
    from rich.console import Console

    Console().print(obj, highlight=False, soft_wrap=True)


def _conversation_requests(path: Path) -> list[tuple[int, int]]:
    """(input_tokens, output_tokens) of each assistant turn of a JSON list of turns.

    A turn is {"role": "user"|"system"|"assistant", "content": "..."} and may give "tokens": N;
    without it the count is estimated as ceil(characters / 4) (stated in the output). Each
    assistant turn is one request whose input is every earlier turn (the context grows).
    """
    import math

    try:
        turns = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BadInput(f"cannot read conversation {path}: {e}") from None
    if not isinstance(turns, list) or not turns:
        raise BadInput(f"conversation {path} must be a non-empty JSON list of turns")
    out, context = [], 0
    for i, t in enumerate(turns):
        if not isinstance(t, dict) or "role" not in t:
            raise BadInput(f"turn {i} of {path} needs a 'role'")
        n = t.get("tokens")
        if n is None:
            n = math.ceil(len(str(t.get("content", ""))) / 4)
        if not isinstance(n, int) or n < 0:
            raise BadInput(f"turn {i} of {path}: tokens must be a whole number >= 0")
        if t["role"] == "assistant" and n > 0:
            out.append((max(context, 1), n))
        context += n
    if not out:
        raise BadInput(f"conversation {path} has no assistant turn to predict")
    return out


def register(app: typer.Typer) -> None:
    @app.command()
    def predict(
        model: Annotated[str, typer.Option(help="Catalog name, HF config .json or local HF folder.")] = "llama-3.1-8b",
        gpu: Annotated[str, typer.Option(help="GPU name (H100, H200, A100-80GB, ...).")] = "H100",
        gpus: Annotated[int, typer.Option(help="GPUs used with tensor parallelism.")] = 1,
        input_tokens: Annotated[int, typer.Option("--input", help="Prompt tokens.")] = 300,
        output_tokens: Annotated[int, typer.Option("--output", help="Generated tokens.")] = 300,
        batch: Annotated[int, typer.Option(help="Prompts per batch (energy is per prompt).")] = 1,
        dtype: Annotated[str, typer.Option(help="bf16 | fp16 | fp32.")] = "bf16",
        mode: Annotated[str, typer.Option(help="eager | static | compiled | graphed (the shipped predictor was "
                                             "measured in graphed mode).")] = "graphed",
        cache_tokens: Annotated[int | None, typer.Option(
            "--cache-tokens", help="Slots of the static KV cache (every mode but eager attends over all of them each "
                                   "decode step; default: input + output).")] = None,
        set_: Annotated[list[str] | None, typer.Option("--set", help="Architecture edit key=value (repeatable).")] = None,
        predictor: Annotated[Path | None, typer.Option(help="Fitted predictor file (from `wattlens train`).")] = None,
        conversation: Annotated[Path | None, typer.Option(help="JSON list of turns: predict the whole conversation.")] = None,
        grid_gco2_per_kwh: Annotated[float | None, typer.Option(help="Grid carbon intensity, gCO2e/kWh.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Predict GPU energy per prompt (with an interval) and time, for any model config and GPU."""
        from wattlens.analysis.predict_features import Request
        from wattlens.analysis.predictor import load_bundle, predict_request
        from wattlens.core.spec import parse_override
        from wattlens.hw.specs import gpu_spec_by_name
        from wattlens.models.catalog import resolve_model

        overrides = tuple(sorted(parse_override(s) for s in (set_ or [])))
        source = resolve_model(model, overrides)
        spec = gpu_spec_by_name(gpu)
        bundle = load_bundle(predictor)
        if grid_gco2_per_kwh is not None and grid_gco2_per_kwh < 0:
            raise BadInput("--grid-gco2-per-kwh must be >= 0")
        shapes = _conversation_requests(conversation) if conversation else [(input_tokens, output_tokens)]
        results = []
        for n_in, n_out in shapes:
            req = Request(n_in, n_out, batch, dtype, mode, gpus, cache_tokens)
            r = predict_request(source.config, req, spec, bundle)
            r.pop("features")
            results.append({"input_tokens": n_in, "output_tokens": n_out, **r})
        total = {k: sum(r[k] for r in results) for k in ("energy_per_prompt_j", "energy_low_j", "energy_high_j", "time_s")}
        doc: dict[str, Any] = {
            "model": source.name, "overrides": dict(overrides), "gpu": spec.name, "gpu_count": gpus, "batch_size": batch,
            "dtype": dtype, "mode": mode, "cache_tokens": cache_tokens, "learner": bundle.learner, "calibrated": bundle.calibrated,
            "trained_modes": bundle.trained_on.get("modes"),
            "requests": results, "total_energy_per_prompt_j": total["energy_per_prompt_j"],
            "total_energy_low_j": total["energy_low_j"], "total_energy_high_j": total["energy_high_j"],
            "total_time_s": total["time_s"], "energy_scope": "GPU only (no CPU, host, cooling/PUE)",
        }
        if conversation:
            doc["token_counts"] = "from 'tokens' fields, else characters / 4"
        if grid_gco2_per_kwh is not None:
            kwh = total["energy_per_prompt_j"] / 3.6e6
            doc["grid_gco2_per_kwh"] = grid_gco2_per_kwh
            doc["carbon_gco2"] = kwh * grid_gco2_per_kwh
            doc["carbon_low_gco2"] = total["energy_low_j"] / 3.6e6 * grid_gco2_per_kwh
            doc["carbon_high_gco2"] = total["energy_high_j"] / 3.6e6 * grid_gco2_per_kwh
        if as_json:
            print(json.dumps(doc, indent=1))
            return
        band = "5-95% of out-of-family errors" if bundle.calibrated else "x/÷3, assumed"
        what = f"{len(results)}-request conversation" if conversation else f"input {input_tokens}, output {output_tokens}"
        from rich.markup import escape  # names and notes are text: 'mine[v2].json' keeps its brackets

        _print(f"[bold]{escape(source.name)}[/] on {gpus} x {spec.name}, {what}, batch {batch}, {dtype}, {mode}")
        _print(f"energy per prompt: {total['energy_per_prompt_j']:.1f} J ({total['energy_per_prompt_j'] / 3600:.4f} Wh), "
               f"interval {total['energy_low_j']:.1f} - {total['energy_high_j']:.1f} J ({band})   [GPU energy only]")
        _print(f"time: {total['time_s']:.2f} s (whole batch)")
        if grid_gco2_per_kwh is not None:
            _print(f"carbon: {doc['carbon_gco2']:.3f} gCO2e at {grid_gco2_per_kwh:g} gCO2e/kWh "
                   f"(interval {doc['carbon_low_gco2']:.3f} - {doc['carbon_high_gco2']:.3f})")
        if results[0]["parameter_counts_from"] != "formulas":
            _print(f"[yellow]note: model_type {escape(repr(source.config.get('model_type')))} has no formulas in wattlens; its "
                   "parameter counts were read from transformers' implementation built on the meta device "
                   "(wattlens.models.introspect).[/]")
        if results[0]["kv_cache_copied"]:
            _print(f"[yellow]note: {escape(results[0]['kv_cache_copied'])}; the prediction charges one read of the KV "
                   "cache per decode step, so transformers' implementation costs more than this (its measured rows "
                   "are left out of the training data).[/]")
        ops_source = results[0]["decode_ops_source"]
        if ops_source != "table":
            _print(f"[yellow]note: operators per decode step of this architecture: {escape(ops_source)} (not in the shipped "
                   "table, wattlens/models/data/decode_ops.json).[/]")
        gemms_source = results[0]["decode_gemms_source"]
        if gemms_source != "measured":
            _print(f"[yellow]note: GEMMs of a decode step on {escape(spec.name)}: {escape(gemms_source)}; measure them "
                   "with python -m wattlens.hw.gemm_table (wattlens/hw/data/gemm_decode.csv).[/]")
        if bundle.calibrated:
            _print(f"learner: {bundle.learner} (trained on {bundle.trained_on.get('rows', '?')} measured rows)")
            trained_modes = bundle.trained_on.get("modes")
            if trained_modes and mode not in trained_modes:
                _print(f"[yellow]note: the predictor was trained on {', '.join(trained_modes)} mode only; {mode} "
                       "mode's speed is not in its data (eager and static decode slower than graphed, so the "
                       "figure is then low; compiled faster, so it is then high).[/]")
        else:
            _print(f"[yellow]learner: {bundle.learner}[/]\n[yellow]no fitted predictor was found: the figure is a "
                   "physics estimate with assumed parameters and a x/÷3 interval, not a calibrated prediction.[/]")

    @app.command()
    def train(
        results: Annotated[list[Path] | None, typer.Option("--results", help="`wattlens export --table all` JSON (repeatable).")] = None,
        dataset: Annotated[Path | None, typer.Option(help="Dataset CSV/Parquet instead of (or besides) results.")] = None,
        db: Annotated[Path | None, typer.Option("--db", help="Results database to read trials from.")] = None,
        learner: Annotated[str, typer.Option(help="physics_residual | physics | random_forest | xgb_tree | ...")] = "physics_residual",
        out: Annotated[Path, typer.Option(help="Where to write the fitted predictor: .json for the physics learners "
                                              "(plain numbers, safe to load), .pkl for the others.")] = Path("predictor.json"),
        dataset_out: Annotated[Path | None, typer.Option(help="Also write the assembled dataset CSV here.")] = None,
        min_batch: Annotated[int, typer.Option(help="Train on rows with batch >= this.")] = 1,
        mode: Annotated[str | None, typer.Option(help="Train on rows of this serving mode (default: the mode with most rows).")] = None,
    ) -> None:
        """Fit a predictor on your own measurements (store, exported JSON or a dataset file)."""
        import pandas as pd

        from wattlens.analysis.predict_dataset import rows_from_runs
        from wattlens.analysis.predictor import (feature_matrix, fit_bundle, kv_heads_read_once, load_dataset,
                                                 normalize_dataset, one_serving_mode, save_bundle)

        frames = []
        sources = []  # (runs, trials) per store or export: each row records its own run's versions
        for path in results or []:
            from wattlens.store.export import results_from_json

            sources.append(results_from_json(path))
        if db is not None:
            from wattlens.store.sqlite import ResultStore

            if not Path(db).is_file():
                raise BadInput(f"no results store {db}")

            with ResultStore(db) as store:
                sources.append((store.load_runs(), store.load_trials()))
        rows = [row for runs, trials in sources for row in rows_from_runs(runs, trials)]
        if rows:
            frames.append(pd.DataFrame(rows))
        if dataset is not None:
            frames.append(load_dataset(dataset))
        if not frames:
            raise BadInput("nothing to train on: give --results, --db or --dataset")
        df = normalize_dataset(pd.concat(frames, ignore_index=True), "assembled from the inputs")
        if dataset_out:
            df.to_csv(dataset_out, index=False)
        df = df[df["batch_size"] >= min_batch].reset_index(drop=True)
        df, mode, left_out = one_serving_mode(df, mode)
        if left_out:
            _print(f"[yellow]training on {mode} rows only; left out (other serving modes): {left_out}[/yellow]")
        df, kv_left_out = kv_heads_read_once(df)
        if kv_left_out:
            _print(f"[yellow]left out (decode attention that copies KV heads, which the features do not "
                   f"describe): {kv_left_out}[/yellow]")
        if len(df) < 10:
            raise BadInput(f"only {len(df)} rows to train on (need >= 10)")
        X = feature_matrix(df)
        y = df["energy_per_prompt_j"].to_numpy(float)
        time_s = df["time_s"].to_numpy(float) if "time_s" in df.columns else None
        bundle = fit_bundle(X, y, learner, groups=df["family"], time_s=time_s,
                            trained_on={"rows": len(df), "models": sorted(set(df["model"])),
                                        "modes": [mode],
                                        "gpus": sorted(set(df["gpu_name"])), "min_batch": min_batch})
        save_bundle(bundle, out)
        _print(f"fitted {learner} on {len(df)} rows ({df['model'].nunique()} models, {df['gpu_name'].nunique()} GPUs); "
               f"out-of-family 90% log-error band {bundle.log_interval[0]:+.3f} .. {bundle.log_interval[1]:+.3f}; "
               f"wrote {out}")
