"""`llmfleet perf`: what the route model predicts for one configuration, with the constants in force.

Users check the model against their own measurements with it: TTFT (the spec's T_pre, one
request), time per output token t_tok(b) and end-to-end latency L(b) per batch size, from the
catalog's calibration and the performance model the settings select.
"""
from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from schemas import load_catalog

from controller.common.settings import Settings


def _batches(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"--batch takes integers separated by commas, got {text!r}") from exc
    if not out or any(b < 1 for b in out):
        raise click.BadParameter("--batch needs at least one batch size, each >= 1")
    return out


@click.command()
@click.option("--model", required=True, help="catalog model id")
@click.option("--gpu", required=True, help="catalog GPU id")
@click.option("--precision", required=True)
@click.option("--tp", type=int, required=True)
@click.option("--pp", type=int, default=1, show_default=True)
@click.option("--input", "input_tokens", type=float, required=True, help="input (prompt) tokens")
@click.option("--output", "output_tokens", type=float, required=True, help="output tokens")
@click.option("--batch", "batch", default="1", show_default=True, help="batch sizes, e.g. 1,8,32")
@click.option("--catalog", "catalog_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="catalog folder or file (default: LLMFLEET_CATALOG_PATH, else the bundled one)")
@click.option("--performance-model", type=click.Choice(["spec", "allreduce_table"]), default=None,
              help="default: LLMFLEET_PERFORMANCE_MODEL (spec)")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def perf(model: str, gpu: str, precision: str, tp: int, pp: int, input_tokens: float, output_tokens: float,
         batch: str, catalog_path: Path | None, performance_model: str | None, as_json: bool) -> None:
    """TTFT, time per output token and latency L(b) of one configuration at each batch size."""
    from solvers.perf import PerfInputError, route_times

    s = Settings()
    cat = load_catalog(catalog_path or s.catalog_path)
    pm = performance_model or s.performance_model
    inst = cat.to_instance(performance_model=pm).to_spec()
    try:
        rt = route_times(inst, model, gpu, precision, tp, pp, input_tokens, output_tokens)
    except PerfInputError as exc:
        raise click.ClickException(str(exc)) from exc
    points = rt.points(_batches(batch))
    doc = {"model": model, "gpu": gpu, "precision": precision, "tp": tp, "pp": pp,
           "input_tokens": input_tokens, "output_tokens": output_tokens, "performance_model": pm,
           "constants": rt.constants, "b_max": rt.b_max,
           "points": [{"batch": p.batch, "ttft_s": p.ttft_s, "tpot_s": p.tpot_s, "latency_s": p.latency_s,
                       "fits_memory": p.fits_memory} for p in points]}
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    c = rt.constants
    t = Table(title=f"{model} on {tp}x{pp} {gpu} at {precision}, {input_tokens:g} in / {output_tokens:g} out "
                    f"({pm} model; compute_efficiency {c['compute_efficiency']:.3g}, bandwidth_efficiency "
                    f"{c['bandwidth_efficiency']:.3g}, step_overhead {c['step_overhead_s'] * 1e3:.3g} ms)")
    for col in ("batch", "TTFT (s)", "time/output token (ms)", "latency L(b) (s)", "fits memory"):
        t.add_column(col, justify="right")
    for p in points:
        t.add_row(str(p.batch), f"{p.ttft_s:.4f}", f"{p.tpot_s * 1e3:.2f}", f"{p.latency_s:.3f}",
                  "yes" if p.fits_memory else f"no (b_max {rt.b_max})")
    Console().print(t)
