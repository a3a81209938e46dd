"""`wattlens study ...`: run a shipped (or copied) study definition part by part, and report it.

Argument parsing and human output only; the runner and the report do the work. Heavy modules are
imported inside the commands.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

study_app = typer.Typer(help="Reproduce a published study: `study run NAME`, then `study report NAME`.",
                        no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()
err_console = Console(stderr=True)

OverrideOpt = Annotated[str | None, typer.Option(
    "--models-override",
    help="'tiny' (tiny-gpt-oss / tiny-llama / tiny-gqa stand in) or name=stand-in pairs, comma-separated.")]
DbOpt = Annotated[Path | None, typer.Option("--db", help="Results database (default ./wattlens.sqlite).")]


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@study_app.command("list")
def list_studies() -> None:
    """Shipped studies."""
    from wattlens.runner.study import STUDIES_DIR, load_study

    for f in sorted(STUDIES_DIR.glob("*.yaml")):
        s = load_study(str(f))
        parts = ", ".join(f"{p} ({len(v)} trials)" for p, v in s.parts.items())
        console.print(f"{s.name}: {s.title}\n  file: {f}\n  parts: {parts}")


@study_app.command("plan")
def plan(
    name: Annotated[str, typer.Argument(help="Shipped study name or a YAML path.")],
    part: Annotated[list[str] | None, typer.Option("--part", help="Only this part (repeatable).")] = None,
    models_override: OverrideOpt = None,
    assume_device_gb: Annotated[float | None, typer.Option(
        help="Check fits against this much device memory (decimal GB), e.g. 85.0 for an H100 80GB.")] = None,
) -> None:
    """List the trials of a study (or part) and whether each fits; runs nothing."""
    from wattlens.runner.study import fit_verdict, load_study, parse_mapping
    from wattlens.runner.trial import check_spec

    study = load_study(name, parse_mapping(models_override))
    parts = _select_parts(study, part)
    limit = int(assume_device_gb * 1e9) if assume_device_gb else None
    for p in parts:
        console.print(f"[bold]{p}[/] ({len(study.parts[p])} trials)")
        for s in study.parts[p]:
            _, facts = check_spec(s)
            verdict = fit_verdict(s, facts, limit, f"{assume_device_gb} GB") or ""
            console.print(f"  {s.trial_id} {s.model} ctx={s.ctx_tokens} gen={s.gen_tokens} {s.dtype} {s.mode_label} "
                          f"{s.sampling.label()} x{s.repeats} {verdict}", highlight=False, soft_wrap=True)


def _select_parts(study, wanted: list[str] | None) -> list[str]:
    if not wanted:
        return list(study.parts)
    unknown = [p for p in wanted if p not in study.parts]
    if unknown:
        _fail(f"unknown part(s) {unknown} of study {study.name}; parts: {', '.join(study.parts)}")
    return list(wanted)


@study_app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="Shipped study name (e.g. gpt-oss-20b) or a YAML path.")],
    part: Annotated[list[str] | None, typer.Option("--part", help="Only this part (repeatable); default: all.")] = None,
    models_override: OverrideOpt = None,
    db: DbOpt = None,
    device: Annotated[str | None, typer.Option(help="Override every trial's device (auto | cpu | cuda:N).")] = None,
    repeats_cap: Annotated[int | None, typer.Option(help="Cap repetitions per trial (quick checks).")] = None,
    quick: Annotated[bool, typer.Option(help="Skip idle-power calibration.")] = False,
    cooldown_s: Annotated[float, typer.Option(help="Longest wait for the GPU to cool before each trial.")] = 10.0,
) -> None:
    """Run a study (or some of its parts); trials finished on this GPU are skipped, so rerunning resumes."""
    from wattlens.runner.session import SessionOptions, open_session, target_gpu_name
    from wattlens.runner.study import load_study, parse_mapping, run_specs
    from wattlens.runner.sweep import check_plan, session_device, SweepPlan
    from wattlens.runner.trial import check_spec
    from wattlens.store.sqlite import ResultStore

    study = load_study(name, parse_mapping(models_override), device=device, repeats_cap=repeats_cap)
    parts = _select_parts(study, part)
    specs = []
    for p in parts:
        specs += [s for s in study.parts[p] if s.trial_id not in {x.trial_id for x in specs}]
    check_plan(SweepPlan(specs), check_spec)  # every bad value fails before anything is written
    run_device = session_device(specs)
    with ResultStore(db) as store:  # only trials measured on this GPU count as done
        done = store.finished_trial_ids("ok", gpu_name=target_gpu_name(run_device))
    todo = [s for s in specs if s.trial_id not in done]
    if len(todo) < len(specs):
        console.print(f"resuming: {len(specs) - len(todo)} of {len(specs)} trials already stored")
    if not todo:
        console.print("nothing to do: every trial of these parts is already stored")
        return
    if study.mapping:
        console.print("stand-ins: " + ", ".join(f"{k} -> {v}" for k, v in study.mapping.items()))
    session = open_session(db, command=" ".join(["wattlens", *sys.argv[1:]]), device=run_device,
                           options=SessionOptions(calibrate=not quick, cooldown_max_s=cooldown_s))
    t0 = time.perf_counter()

    def show(spec, result) -> None:
        status = "ok" if result.status == "ok" else f"[red]failed[/]: {(result.error or '').splitlines()[0][:160]}"
        err_console.print(f"{time.perf_counter() - t0:7.1f} s  {spec.model} ctx={spec.ctx_tokens} {spec.dtype} "
                          f"{spec.mode_label} {spec.sampling.label()} x{spec.repeats}: {status}", highlight=False)

    try:
        results = run_specs(todo, session, on_trial=show)
    finally:
        session.close()
    n_failed = sum(r.status != "ok" for r in results)
    console.print(f"{len(results)} trials stored in {session.store.path} (run {session.run.run_id}), "
                  f"{n_failed} failed, {time.perf_counter() - t0:.1f} s")


@study_app.command("report")
def report(
    name: Annotated[str, typer.Argument(help="Shipped study name or a YAML path.")],
    out: Annotated[Path, typer.Option(help="Folder for report.md and the plots.")],
    db: DbOpt = None,
    models_override: OverrideOpt = None,
    note: Annotated[str | None, typer.Option(help="A line shown at the top of the report.")] = None,
) -> None:
    """Every table of the study, ours beside the published figure, plus plots (PNG)."""
    from wattlens.analysis.study_report import write_study_report
    from wattlens.runner.study import load_study, parse_mapping
    from wattlens.store.sqlite import ResultStore, default_db_path

    path = db or default_db_path()
    if not Path(path).exists():
        _fail(f"no results database at {path}; run `wattlens study run {name}` first or pass --db")
    study = load_study(name, parse_mapping(models_override))
    with ResultStore(path) as store:
        trials = store.load_trials()
        runs = store.load_runs()
    written = write_study_report(study, trials, runs, out, note=note)
    for f in written:
        console.print(f"wrote {f}")
