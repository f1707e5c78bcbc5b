"""`llmfleet solve`, `llmfleet check` and `llmfleet instance generate`: files in, plans out."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from solvers.methods import METHODS
from solvers.options import SolveOptions
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from schemas import Instance, Plan, describe, load_catalog

_err = Console(stderr=True)


def _load(path: Path, cls: type[Instance] | type[Plan]) -> Any:
    try:
        return cls.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise click.ClickException(f"{path}: invalid {cls.__name__.lower()}: {describe(exc)}") from exc
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror}") from exc


def _options(method: str, time_limit: float | None, seed: int, work: float | None = None) -> SolveOptions:
    """The command line's options as the registry's one options object (backends' own defaults
    for a limit left unset: AGH 0.5 s, exact 60 s)."""
    return SolveOptions(deadline_s=time_limit, seed=seed, **({} if work is None else {"work": work}))


@click.command()
@click.argument("instance_path", metavar="INSTANCE.json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--method", type=click.Choice(METHODS),
              default="agh", show_default=True)
@click.option("--time-limit", type=float, default=None,
              help="seconds: exact solvers' limit (default 60) or AGH's deadline (default 0.5)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the plan JSON here (default: stdout)")
@click.option("--work", type=float, default=None,
              help="AGH's work budget (units; default solvers.options.DEFAULT_WORK): with the "
              "seed it fixes the plan unless the deadline cuts the search short")
@click.option("--latency-headroom", type=float, default=1.0, show_default=True,
              help="plan as if every latency were this factor higher (solvers.robust)")
@click.option("--error-margin", type=float, default=1.0, show_default=True,
              help="plan as if every model error were this factor higher (solvers.robust)")
def solve(instance_path: Path, method: str, time_limit: float | None, seed: int,
          output: Path | None, work: float | None = None, latency_headroom: float = 1.0,
          error_margin: float = 1.0) -> None:
    """Solve INSTANCE.json and write a plan in the spec's format."""
    from solvers import BackendUnavailable, check_result, compile_instance, solve as run, to_plan
    from solvers.explain import explain

    from solvers.robust import with_margins

    inst = _load(instance_path, Instance).to_spec()
    try:
        inst = with_margins(inst, latency_headroom, error_margin)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    t0 = time.perf_counter()
    ci = compile_instance(inst)
    compile_s = time.perf_counter() - t0
    try:
        res = run(ci, method, _options(method, time_limit, seed, work))
    except BackendUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    report = check_result(ci, res) if res.has_solution else None
    explanation = list(res.explanation)
    if not res.has_solution or (report is not None and not report.feasible):
        explanation = explanation or explain(ci)
    plan = to_plan(ci, res, extra={
        "method": method, "status": res.status.value,
        "cost_per_hour": round(res.objective, 6) if res.has_solution else None,
        "bound": res.bound, "gap": res.gap, "compile_seconds": round(compile_s, 6),
        "seconds": round(res.seconds, 6), "explanation": explanation})
    text = json.dumps(plan, indent=2)
    if output:
        output.write_text(text + "\n")
    else:
        click.echo(text)
    _summary(ci, res, report, compile_s, explanation)
    if not res.has_solution:
        sys.exit(1)


def _summary(ci: Any, res: Any, report: Any, compile_s: float, explanation: list[str]) -> None:
    t = Table(title=f"{ci.name}: {res.method} -> {res.status.value}")
    for col in ("deployment", "replicas", "GPUs", "$/h", "query types (fraction)"):
        t.add_column(col)
    for d in (res.replicas > 0).nonzero()[0]:
        rs = ((ci.route_cand == d) & (res.x > 1e-9)).nonzero()[0]
        t.add_row(ci.describe_cand(int(d)), str(res.replicas[d]), str(res.replicas[d] * ci.cand_ngpu[d]),
                  f"{res.replicas[d] * ci.cand_cost[d]:,.2f}",
                  ", ".join(f"{ci.qt_ids[ci.route_qt[r]]} ({res.x[r]:.2f})" for r in rs))
    _err.print(t)
    if res.has_solution:
        gap = f", gap {res.gap:.2%}" if res.gap is not None else ""
        _err.print(f"cost ${res.objective:,.4f}/h{gap}; compile {compile_s * 1e3:.1f} ms, "
                   f"solve {res.seconds * 1e3:.1f} ms; validator: {report.summary()}")
    for line in explanation:
        _err.print(f"[yellow]why:[/yellow] {line}")


@click.command()
@click.argument("instance_path", metavar="INSTANCE.json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("plan_path", metavar="PLAN.json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def check(instance_path: Path, plan_path: Path, as_json: bool) -> None:
    """Validate PLAN.json against INSTANCE.json: exit 0 when feasible, 1 when not."""
    from solvers import check_plan, compile_instance

    inst = _load(instance_path, Instance).to_spec()
    try:
        raw = json.loads(plan_path.read_text())
    except ValueError as exc:
        raise click.ClickException(f"{plan_path}: not JSON: {exc}") from exc
    _load(plan_path, Plan).check_against({q["id"] for q in inst["query_types"]})
    rep = check_plan(compile_instance(inst), raw, inst)
    if as_json:
        click.echo(json.dumps({"feasible": rep.feasible, "cost_per_hour": rep.cost_per_hour,
                               "gpu_cost_per_hour": rep.gpu_cost_per_hour, "gpus": rep.gpus,
                               "violations": [v.__dict__ for v in rep.violations]}))
    else:
        for v in rep.violations:
            click.echo(f"VIOLATION [{v.constraint}] {v.message}")
        click.echo(rep.summary())
    sys.exit(0 if rep.feasible else 1)


@click.group()
def instance() -> None:
    """Generate instances for sweeps."""


@instance.command("generate")
@click.option("--size", nargs=3, type=int, default=(6, 6, 10), show_default=True,
              metavar="I J K", help="query types, models, tiers (GPU x precision pairs)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--load", type=float, default=1.0, show_default=True, help="arrival-rate multiplier")
@click.option("--scenario", type=click.Choice(["base", "tight_budget", "high_penalty", "scarce_inventory"]),
              default="base", show_default=True)
@click.option("--catalog", type=click.Path(exists=True, path_type=Path), default=None,
              help="catalog folder or file (default: the bundled catalog)")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def instance_generate(size: tuple[int, int, int], seed: int, load: float, scenario: str,
                      catalog: Path | None, output: Path) -> None:
    """Write a generated instance (always with at least one feasible plan)."""
    from solvers.generator import generate_instance

    cat = load_catalog(catalog).model_dump(mode="json")
    inst = generate_instance(cat, *size, seed=seed, load=load, scenario=scenario)
    Instance.model_validate(inst)
    output.write_text(json.dumps(inst, indent=1) + "\n")
    click.echo(f"wrote {output} ({inst['name']}, budget ${inst['budget_per_hour']}/h)")
