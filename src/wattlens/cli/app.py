"""Command line: argument parsing and human output only.

Heavy modules (torch, transformers, the runner) are imported inside the commands so that
`wattlens --help` answers instantly. A `BadInput` anywhere becomes one line on stderr and exit
status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from wattlens.core.errors import BadInput

app = typer.Typer(
    help="wattlens: what LLM inference costs in time, GPU memory and energy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DbOpt = Annotated[Path | None, typer.Option("--db", help="Results database (default ./wattlens.sqlite or $WATTLENS_DB).")]


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _command_line() -> str:
    return " ".join(["wattlens", *sys.argv[1:]])


def _spec_from_options(model, ctx, gen, batch, dtype, mode, temperature, top_p, top_k, sets, repeats, warmups,
                       prompt, device, seed, prompt_lengths: str | None = None):
    from wattlens.core.spec import SamplingSpec, TrialSpec, parse_override

    overrides = tuple(sorted(parse_override(s) for s in sets))
    fields = dict(gen_tokens=gen, dtype=dtype, mode=mode,
                  sampling=SamplingSpec(temperature=temperature, top_p=top_p, top_k=top_k), overrides=overrides,
                  repeats=repeats, warmups=warmups, prompt=prompt, device=device, seed=seed)
    if prompt_lengths:
        try:
            lengths = [int(x) for x in prompt_lengths.split(",") if x.strip()]
        except ValueError:
            raise BadInput(f"--prompt-lengths expects comma-separated whole numbers, got {prompt_lengths!r}") from None
        return TrialSpec.ragged_batch(model, lengths, **fields)
    return TrialSpec(model=model, ctx_tokens=ctx, batch_size=batch, **fields)


TOKEN_READS_HELP = ("Also read the GPU energy counter at about N log-spaced output tokens of each repetition "
                    "(energy of every shorter output from one run; GPUs only).")
PHASES_HELP = "Also measure prefill/decode energy by subtraction and by in-run boundary (~20 s more per trial on a GPU)."

COMPACT_COLUMNS = ("model", "mode", "dtype", "ctx", "gen", "batch", "TTFT ms (p50)", "TPOT ms (p50)", "decode tok/s",
                   "peak GB", "energy J (p50 ± unc.)", "J/1k tok")


def _print_trials(trials: list[Any]) -> None:
    """One trial: every column as a (metric, value) row. Several: the compact columns side by side."""
    from rich.table import Table

    from wattlens.analysis.report import render_failed_table, render_trial_table

    ok = [t for t in trials if t.status == "ok"]
    failed = [t for t in trials if t.status != "ok"]
    if len(ok) == 1:
        text = render_trial_table(ok)
        table = Table("metric", "value", title="wattlens result")
        for header, cell in zip(text.headers, text.rows[0]):
            table.add_row(header, cell)
        console.print(table)
    elif ok:
        text = render_trial_table(ok)
        keep = [i for i, h in enumerate(text.headers) if h in COMPACT_COLUMNS]
        table = Table(*(text.headers[i] for i in keep), title="wattlens results (`wattlens report` has every column)")
        for row in text.rows:
            cells = [row[i] for i in keep]
            table.add_row(*("not measured" if c.startswith("not measured") else c for c in cells))
        console.print(table)
        reasons = {t.summary.get("energy_not_measured_reason") for t in ok} - {None}
        for reason in sorted(reasons):
            console.print(f"energy not measured: {reason}")
    if failed:
        text = render_failed_table(failed)
        table = Table(*text.headers, title="failed trials", style="red")
        for row in text.rows:
            table.add_row(*row)
        console.print(table)


@app.command()
def bench(
    model: Annotated[str, typer.Option(help="Catalog name, config .json or local HF model folder.")] = "tiny-llama",
    ctx: Annotated[int, typer.Option(help="Prompt length in tokens (exact).")] = 128,
    gen: Annotated[int, typer.Option(help="Output tokens per sequence (forced).")] = 32,
    batch: Annotated[int, typer.Option(help="Sequences per request.")] = 1,
    repeats: Annotated[int, typer.Option(help="Measured repetitions.")] = 5,
    warmups: Annotated[int, typer.Option(help="Unmeasured warm-up runs (compiled/static: at least 1).")] = 1,
    mode: Annotated[str, typer.Option(help="eager | static | compiled | graphed (static cache, uncompiled kernels in a CUDA graph).")] = "eager",
    dtype: Annotated[str, typer.Option(help="bf16 | fp16 | fp32.")] = "bf16",
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 1.0,
    top_k: Annotated[int, typer.Option(help="0 = no top-k filter.")] = 0,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Architecture edit key=value (repeatable).")] = None,
    prompt: Annotated[str, typer.Option(help="synthetic | text.")] = "synthetic",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for inputs and sampling.")] = 0,
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
    quick: Annotated[bool, typer.Option(help="Skip idle-power calibration (energy then has no active figure).")] = False,
    cooldown_s: Annotated[float, typer.Option(help="Longest wait for the GPU to cool before the trial.")] = 30.0,
    phases: Annotated[bool, typer.Option("--phases", help=PHASES_HELP)] = False,
    token_energy_reads: Annotated[int, typer.Option(help=TOKEN_READS_HELP)] = 0,
    prompt_lengths: Annotated[str | None, typer.Option(
        help="A mixed-size batch: comma-separated prompt lengths, one per sequence (sets batch and ctx; "
             "left-padded; eager or static).")] = None,
) -> None:
    """Measure one trial and store it."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from wattlens.runner.session import SessionOptions, open_session
    from wattlens.runner.trial import ModelHolder, check_spec, run_trial

    spec = _spec_from_options(model, ctx, gen, batch, dtype, mode, temperature, top_p, top_k, set_ or [], repeats,
                              warmups, prompt, device, seed, prompt_lengths)
    check_spec(spec)  # bad input fails here, before the store is touched
    session = open_session(db, command=_command_line(), device=device,
                           options=SessionOptions(calibrate=not quick, cooldown_max_s=cooldown_s))
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeRemainingColumn(), console=err_console, transient=True, disable=as_json) as progress:
            task = progress.add_task(f"{spec.model} {spec.mode}", total=spec.repeats)
            result = run_trial(spec, session, ModelHolder(), on_repetition=lambda i: progress.advance(task),
                               phases=phases, token_energy_reads=token_energy_reads)
    finally:
        session.close()
    if as_json:
        print(json.dumps(_result_json(result, session), indent=1, default=str))
    else:
        _print_trials([result])
        console.print(f"weights: {result.weights}  ·  run {session.run.run_id}  ·  stored in {session.store.path}")
        if result.summary.get("energy_not_measured_reason"):
            console.print(f"energy: not measured — {result.summary['energy_not_measured_reason']}")
    if result.status != "ok":
        raise typer.Exit(1)


def _result_json(result: Any, session: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "trial_id": result.trial_id,
        "run_id": result.run_id,
        "status": result.status,
        "error": result.error,
        "weights": result.weights,
        "gpu": result.gpu_name,
        "spec": result.spec.to_dict(),
        "metrics": result.summary,
        "memory": asdict(result.memory),
        "model": result.model_facts,
        "repetitions": [
            {"index": r.index, "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
             "ttft_s": r.ttft_s, "e2e_s": r.e2e_s, "token_times_s": list(r.token_times_s),
             "energy": r.energy.to_dict()}
            for r in result.repetitions
        ],
        "run": {"update_period_s": session.run.update_period_s, "idle_power_w": session.run.idle_power_w,
                "notes": session.notes},
    }


@app.command()
def sweep(
    spec_file: Annotated[Path, typer.Argument(help="Sweep spec (YAML).")],
    db: DbOpt = None,
    quick: Annotated[bool, typer.Option(help="Skip idle-power calibration.")] = False,
    cooldown_s: Annotated[float, typer.Option(help="Longest wait for the GPU to cool before each trial.")] = 30.0,
    phases: Annotated[bool, typer.Option("--phases", help=PHASES_HELP)] = False,
    token_energy_reads: Annotated[int, typer.Option(help=TOKEN_READS_HELP)] = 0,
) -> None:
    """Run a grid of trials from a YAML spec; rerun to resume (trials finished on this GPU are skipped)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from wattlens.runner.session import SessionOptions, open_session, target_gpu_name
    from wattlens.runner.sweep import check_plan, load_plan, pending, session_device
    from wattlens.runner.trial import ModelHolder, check_spec, run_trial
    from wattlens.store.sqlite import ResultStore

    plan = load_plan(spec_file)
    check_plan(plan, check_spec)
    device = session_device(plan.specs)
    with ResultStore(db) as store:  # only trials measured on this GPU count as done
        todo, skipped = pending(plan, store.finished_trial_ids("ok", gpu_name=target_gpu_name(device)))
    if skipped:
        console.print(f"resuming: {skipped} of {len(plan.specs)} trials already stored, {len(todo)} to run")
    if not todo:
        console.print("nothing to do: every trial of this sweep is already stored")
        return
    session = open_session(db, command=_command_line(), device=device,
                           options=SessionOptions(calibrate=not quick, cooldown_max_s=cooldown_s))
    models = ModelHolder()
    results = []
    interrupted = False
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=err_console) as progress:
            task = progress.add_task("sweep", total=len(todo))
            for spec in todo:
                progress.update(task, description=f"{spec.model} ctx={spec.ctx_tokens} b={spec.batch_size} {spec.mode}")
                result = run_trial(spec, session, models, phases=phases, token_energy_reads=token_energy_reads)
                results.append(result)
                if result.status != "ok":
                    err_console.print(f"[red]trial failed[/] {spec.trial_id}: {result.error.splitlines()[0]}")
                progress.advance(task)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        models.release()
        session.close()
    _print_trials(results)
    n_failed = sum(r.status != "ok" for r in results)
    console.print(f"{len(results)} trials stored in {session.store.path} (run {session.run.run_id}), {n_failed} failed")
    if interrupted:
        err_console.print("interrupted: finished trials are saved; rerun the same command to resume")
        raise typer.Exit(130)


@app.command()
def report(
    db: DbOpt = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    gpu: Annotated[str | None, typer.Option(help="Only this GPU name.")] = None,
    run: Annotated[str | None, typer.Option(help="Only this run id.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write markdown here instead of printing.")] = None,
    region: Annotated[str | None, typer.Option(help="Add modelled carbon at this region's grid intensity.")] = None,
    pue: Annotated[float | None, typer.Option(help="Data-centre PUE for the carbon model.")] = None,
) -> None:
    """Markdown tables of stored results."""
    from wattlens.analysis.report import render_markdown
    from wattlens.store.sqlite import ResultStore

    path = _existing_db(db)
    with ResultStore(path) as store:
        trials = store.load_trials(model=model, gpu=gpu, run_id=run)
        runs = [r for r in store.load_runs() if r.run_id in {t.run_id for t in trials}]
    if not trials:
        _fail("no stored trials match the filters")
    text = render_markdown(trials, runs)
    if region:
        from wattlens.analysis.report import carbon_section

        text += "\n" + carbon_section(trials, region, pue=pue)
    if out:
        out.write_text(text)
        console.print(f"report written to {out}")
    else:
        print(text)


def _existing_db(db: Path | None) -> Path:
    """The database to read (--db, else the default); exit 2 when it does not exist."""
    from wattlens.store.sqlite import default_db_path

    path = Path(db) if db else default_db_path()
    if not path.exists():
        _fail(f"no results database at {path}; run `wattlens bench` first or pass --db")
    return path


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="Output file.")],
    fmt: Annotated[str | None, typer.Option("--format", help="csv | parquet | json (default: from the suffix).")] = None,
    table: Annotated[str, typer.Option(help="trials | repetitions | runs | artifacts | all (json only).")] = "trials",
    db: DbOpt = None,
) -> None:
    """Export stored results."""
    from wattlens.store.export import export as do_export
    from wattlens.store.sqlite import ResultStore

    path = _existing_db(db)
    with ResultStore(path) as store:
        written = do_export(store, out, fmt, table=table)
    console.print(f"exported {table} to {written}")


@app.command("import")
def import_results(
    files: Annotated[list[Path], typer.Argument(help="JSON exports made with `export --table all`.")],
    db: DbOpt = None,
) -> None:
    """Load JSON exports (e.g. committed GPU results) into a results database."""
    from wattlens.store.export import import_json
    from wattlens.store.sqlite import ResultStore

    for f in files:
        if not f.is_file():
            _fail(f"no such export file: {f}")
    with ResultStore(db) as store:
        for f in files:
            runs, trials = import_json(store, f)
            console.print(f"{f}: {runs} runs, {trials} trials")


@app.command()
def env(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The environment a run would record (GPUs, driver, CUDA, libraries, git)."""
    from wattlens.hw.environment import capture_environment
    from wattlens.meter.energy import EnergyMeter

    meter = EnergyMeter.for_visible_gpus()
    data = capture_environment(meter.gpus)
    if not meter.gpus:
        data["energy_not_measured_reason"] = meter.not_measured_reason
    if as_json:
        print(json.dumps(data, indent=1, default=str))
        return
    from rich.pretty import Pretty

    console.print(Pretty(data))


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json")] = False,
           dtype: Annotated[str, typer.Option(help="Element type for byte figures.")] = "bf16",
           ctx: Annotated[int, typer.Option(help="Context for per-token FLOPs and decode bytes.")] = 2048) -> None:
    """The model catalog with analytic parameters, KV bytes, FLOPs and bytes per decoded token."""
    from rich.table import Table

    from wattlens.core.units import dtype_bytes
    from wattlens.models.arithmetic import model_facts
    from wattlens.models.catalog import list_catalog, resolve_model

    nbytes = dtype_bytes(dtype)
    rows, skipped = [], []
    for entry in list_catalog():
        try:
            facts = model_facts(resolve_model(entry.name).config)
        except BadInput as e:  # an architecture without formulas, on an install without torch
            skipped.append(f"{entry.name}: {e}")
            continue
        rows.append({
            "name": entry.name, "hf_id": entry.hf_id, "family": entry.family, "licence": entry.licence,
            "params_total": facts.params_total, "params_active": facts.params_active,
            f"kv_bytes_per_token_at_{ctx}": facts.kv_cache_bytes(ctx, nbytes) / ctx,
            f"flops_per_token_at_{ctx}": facts.flops_per_token(ctx),
            f"decode_bytes_per_step_at_{ctx}": facts.decode_bytes_per_step(ctx, 1, nbytes),
            "weights": "random (built from config)",
        })
    if as_json:
        print(json.dumps(rows, indent=1))
        for line in skipped:
            print(f"not listed: {line}", file=sys.stderr)
        return
    table = Table(title=f"wattlens catalog ({dtype}, ctx {ctx}; weights: random unless a local folder is given)")
    table.add_column("model", no_wrap=True)
    for header in ("total params", "active params", "KV B/token", "GFLOP/token", "GB read/step", "licence"):
        table.add_column(header, overflow="fold")
    for r in rows:
        table.add_row(r["name"], f"{r['params_total'] / 1e9:.3f} B", f"{r['params_active'] / 1e9:.3f} B",
                      f"{r[f'kv_bytes_per_token_at_{ctx}']:,.0f}", f"{r[f'flops_per_token_at_{ctx}'] / 1e9:.2f}",
                      f"{r[f'decode_bytes_per_step_at_{ctx}'] / 1e9:.3f}", r["licence"] or "")
    console.print(table)
    from rich.markup import escape

    for line in skipped:
        console.print(f"[yellow]not listed: {escape(line)}[/]")


# Sub-command groups live in their own modules (light imports, so `--help` stays instant).
from wattlens.cli.dvfs import dvfs_app  # noqa: E402
from wattlens.cli.plot import plot_app  # noqa: E402
from wattlens.cli.predict import register as register_predict  # noqa: E402
from wattlens.cli.study import study_app  # noqa: E402
from wattlens.cli.workload import workload_app  # noqa: E402

app.add_typer(dvfs_app, name="dvfs")
app.add_typer(plot_app, name="plot")
app.add_typer(study_app, name="study")
app.add_typer(workload_app, name="workload")
register_predict(app)


def main() -> None:
    """Entry point: BadInput -> one line on stderr, exit 2."""
    try:
        app()
    except BadInput as e:
        from rich.markup import escape  # a message's own brackets ('wattlens[hf]') are text, not markup

        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
