"""`wattlens dvfs ...`: clock sweeps (opt-in only), the what-if model and the study fit.

Light imports at module level (typer only); everything else is imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

dvfs_app = typer.Typer(help="GPU clocks vs energy: sweeps (needs --allow-clock-control), what-if, study fit.",
                       no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

AllowOpt = Annotated[bool, typer.Option("--allow-clock-control",
                                        help="Explicit opt-in: let wattlens lock clocks / set power limits "
                                             "(restored when it ends).")]


def _echo(msg: str) -> None:
    typer.echo(msg)


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


@dvfs_app.command("sweep")
def sweep_cmd(
    allow_clock_control: AllowOpt = False,
    clocks: Annotated[str | None, typer.Option(help="SM clocks in MHz, e.g. '1980,1410,990,510,210' "
                                                    "(default: 7 spread over the GPU's supported clocks).")] = None,
    n_clocks: Annotated[int, typer.Option(help="How many clocks in the default spread.")] = 7,
    models: Annotated[str, typer.Option(help="Catalog models, comma separated.")] = "llama-3.1-8b",
    batch_sizes: Annotated[str, typer.Option(help="Batch sizes, comma separated.")] = "1",
    ctx: Annotated[int, typer.Option(help="Prompt tokens.")] = 336,
    gen: Annotated[int, typer.Option(help="Output tokens.")] = 100,
    mode: Annotated[str, typer.Option(help="HF mode: eager | static | compiled | graphed.")] = "eager",
    repeats: Annotated[int, typer.Option(help="Requests per clock policy.")] = 3,
    phase: Annotated[str | None, typer.Option(help="Phase-aware policies 'PREFILL:DECODE' MHz, comma separated "
                                                   "(default: highest:lowest).")] = None,
    gpu_index: Annotated[int, typer.Option("--gpu", help="CUDA ordinal.")] = 0,
    out: Annotated[Path, typer.Option(help="Output folder (points.json, report.md).")] = Path("dvfs-sweep"),
    fake: Annotated[bool, typer.Option(help="Run against a FakeGPU with a scripted workload (no GPU touched).")] = False,
) -> None:
    """Sweep SM clocks x models x batch sizes; per-phase time and energy; EDP optimum; phase-aware policy."""
    from wattlens.core.errors import ClockControlError, ClockControlRefused
    from wattlens.dvfs.control import open_clock_control, parse_clock_list, spread_clocks_mhz
    from wattlens.dvfs.sweep import SweepPlan, aggregate, render_markdown, run_sweep

    if not allow_clock_control:  # refuse before opening anything
        _fail("a DVFS sweep changes the GPU's clocks: pass --allow-clock-control to opt in "
              "(or use `wattlens dvfs whatif`, which changes nothing)")
    try:
        if fake:
            from wattlens.dvfs.sweep import FakePhaseWorkload
            from wattlens.hw.fake import FakeClock, FakeGPU
            from wattlens.meter.energy import EnergyMeter

            clock = FakeClock()
            gpu: Any = FakeGPU(clock, power_w=60.0, update_period_s=1e-3)
            meter = EnergyMeter([gpu], clock_ns=clock.now_ns, sleep=clock.sleep, update_period_s=1e-3,
                                idle_power_w=60.0)
            ctl = open_clock_control(gpu, allow_clock_control=True)
            wls = [FakePhaseWorkload(gpu, model=f"fake-{m}", batch_size=int(b), step_host_s=0.030 if m == "eager" else 0.0)
                   for m in ("eager", "compiled") for b in batch_sizes.split(",")]
            ckw: dict[str, Any] = {"sleep": clock.sleep}
        else:
            from wattlens.meter.energy import EnergyMeter

            meter = EnergyMeter.for_visible_gpus([gpu_index])
            if not meter.gpus:
                _fail(f"no GPU to sweep: {meter.not_measured_reason}")
            gpu = meter.gpus[0]
            ctl = open_clock_control(gpu, allow_clock_control=True)
            wls = [_hf_workload(m.strip(), int(b), ctx, gen, mode, gpu_index)
                   for m in models.split(",") for b in batch_sizes.split(",")]
            ckw = {}
        ladder = parse_clock_list(clocks) if clocks else spread_clocks_mhz(ctl.supported_sm_clocks_mhz(), n_clocks)
        if phase:
            pol = tuple(tuple(int(x) for x in p.split(":")) for p in phase.split(","))
        else:
            pol = ((max(ladder), min(ladder)),)
        plan = SweepPlan(tuple(ladder), repeats, pol)  # type: ignore[arg-type]
        pts = run_sweep(gpu, meter, wls, plan, allow_clock_control=True, control=ctl, controller_kwargs=ckw,
                        on_point=lambda p: _echo(f"{p.model} B={p.batch_size} {p.policy} {p.prefill_clock_mhz}/"
                                                 f"{p.decode_clock_mhz} MHz: {p.latency_s:.3f} s, "
                                                 f"{p.energy_j if p.energy_j is None else round(p.energy_j, 2)} J"))
    except (ClockControlRefused, ClockControlError, ValueError) as e:
        _fail(str(e))
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "points.json").write_text(json.dumps([p.to_dict() for p in pts], indent=1))
    md = ("# DVFS sweep" + (" (FakeGPU, scripted workload)" if fake else "") + "\n\n" + render_markdown(aggregate(pts)))
    (out / "report.md").write_text(md)
    _echo(md)


def _hf_workload(model: str, batch: int, ctx: int, gen: int, mode: str, gpu_index: int) -> Any:
    """A PhaseWorkload over the HF backend (first-token hook marks the end of prefill). Not yet run on a GPU."""
    from wattlens.backends.hf import HFBackend
    from wattlens.core.spec import TrialSpec
    from wattlens.runner.trial import ModelHolder, check_spec, make_prompt

    spec = TrialSpec(model=model, ctx_tokens=ctx, gen_tokens=gen, batch_size=batch, mode=mode)
    source, facts = check_spec(spec)
    device = f"cuda:{gpu_index}"
    backend = HFBackend(ModelHolder().get(spec, source, device), mode, spec.sampling)
    backend.prepare(batch, ctx, gen)
    prompt = make_prompt(spec, source, facts, device)
    backend.generate(prompt.input_ids, prompt.attention_mask, gen)  # warm-up (compile / capture) outside windows

    class _W:
        def __init__(self) -> None:
            self.model, self.batch_size = model, batch

        def run_request(self, on_first_token: Any) -> int:
            seen = {"n": 0}

            def hook(*_a: Any, **_k: Any) -> None:
                seen["n"] += 1
                if seen["n"] == 1:
                    on_first_token()

            outp = backend.generate(prompt.input_ids, prompt.attention_mask, gen, on_token=hook)
            return outp.n_new_tokens * batch

    return _W()


@dvfs_app.command("reset")
def reset_cmd(allow_clock_control: AllowOpt = False,
              gpu_index: Annotated[int, typer.Option("--gpu", help="CUDA ordinal.")] = 0) -> None:
    """Reset locked SM and memory clocks (after a SIGKILLed sweep, which nothing can catch)."""
    from wattlens.core.errors import ClockControlError, ClockControlRefused
    from wattlens.dvfs.control import open_clock_control
    from wattlens.hw.nvml import open_gpus

    try:
        ctl = open_clock_control(open_gpus([gpu_index])[0], allow_clock_control=allow_clock_control)
        ctl.reset_sm_clocks()
        ctl.reset_mem_clocks()
    except (ClockControlRefused, ClockControlError) as e:
        _fail(str(e))
    _echo("locked SM and memory clocks reset")


@dvfs_app.command("fit-study")
def fit_study_cmd(out: Annotated[Path | None, typer.Option(help="Write fit.json here.")] = None) -> None:
    """Fit the what-if power model to the published DVFS tables (seeds/003) and print the errors."""
    from wattlens.analysis.dvfs_whatif import fit_study

    fit = fit_study()
    _echo(f"power model: static share {fit.power.static_share:.3f}, voltage floor {fit.power.v_floor:.3f} "
          f"(x V_max below {fit.power.v_floor * fit.power.f_max_mhz:.0f} MHz)")
    for k, v in fit.mape_pct.items():
        _echo(f"  {k}: {v:.2f}")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(fit.to_dict(), indent=1))


@dvfs_app.command("whatif")
def whatif_cmd(
    store: Annotated[Path, typer.Option(help="Store export (JSON) with eager / static / compiled trials.")],
    model: Annotated[str, typer.Option(help="Model name in the store.")] = "llama-3.1-8b",
    roofline: Annotated[Path | None, typer.Option(help="decode_roofline.json (bytes per decode step).")] = None,
    f_ref_mhz: Annotated[float, typer.Option(help="SM clock the trials ran at (max clock).")] = 1980.0,
    f_min_mhz: Annotated[float, typer.Option(help="Lowest SM clock to predict.")] = 210.0,
    bandwidth_fraction: Annotated[float, typer.Option(help="Achievable share of datasheet HBM bandwidth.")] = 0.9,
    overlap_k: Annotated[float, typer.Option(help="Host/GPU overlap exponent (1 = additive).")] = 8.0,
    busy: Annotated[Path | None, typer.Option(
        "--busy", help="benchmarks/busy_time.py JSON: its modes use the MEASURED GPU busy time per prefill and "
                       "decode step (with the trial's own wall time) instead of the estimate.")] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("dvfs-whatif"),
) -> None:
    """Predict time and energy vs SM clock for measured trials (changes no clock)."""
    from wattlens.analysis.dvfs_whatif_report import write_whatif

    paths = write_whatif(store, model, out, roofline=roofline, f_ref_mhz=f_ref_mhz, f_min_mhz=f_min_mhz,
                         bandwidth_fraction=bandwidth_fraction, overlap_k=overlap_k, busy=busy)
    for p in paths:
        _echo(f"wrote {p}")
