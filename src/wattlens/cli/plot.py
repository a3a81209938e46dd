"""`wattlens plot ...`: figures from stored results (matplotlib imported only when a command runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

plot_app = typer.Typer(help="Figures from stored results.", no_args_is_help=True, add_completion=False)


@plot_app.command("timeline")
def timeline(
    trial_id: Annotated[str, typer.Argument(help="Trial id (as `wattlens report` / export shows it).")],
    db: Annotated[Path | None, typer.Option("--db", help="Results database.")] = None,
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("timeline.png"),
    run: Annotated[str | None, typer.Option(help="Run id, when the trial was measured in several runs.")] = None,
) -> None:
    """Power, SM/memory clock and temperature of one trial, prefill and decode shaded."""
    from wattlens.analysis.timeline_plot import phase_mean_power, plot_timeline, repetition_mean_power
    from wattlens.cli.app import _existing_db, _fail, console
    from wattlens.store.sqlite import ResultStore

    path = _existing_db(db)
    with ResultStore(path) as store:
        arts = store.load_artifacts(run_id=run, trial_id=trial_id, kind="power_timeline")
        trials = store.load_trials(trial_id=trial_id, run_id=run)
    if not arts:
        _fail(f"no power timeline stored for trial {trial_id} (timelines are recorded on NVIDIA GPUs only)")
    art = arts[-1]
    title = f"trial {trial_id}"
    counter_power: list[tuple[float, float, float, float | None]] = []
    phase_power = None
    if trials:
        trial = trials[-1]
        s = trial.spec
        title = (f"{s.model} {s.mode} {s.dtype} ctx={s.ctx_tokens} gen={s.gen_tokens} b={s.batch_size} "
                 f"({trial.gpu_name})")
        counter_power = repetition_mean_power(trial, art.payload.get("t0_s", 0.0))
        phase_power = phase_mean_power(trial.summary)
    try:
        written = plot_timeline(art.payload, out, title, counter_power=counter_power, phase_power=phase_power)
    except ValueError as e:
        _fail(str(e))
    console.print(f"timeline written to {written}")
