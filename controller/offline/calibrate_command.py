"""`llmfleet calibrate`: fit per-GPU constants to measurements and write a calibrated catalog.

Inputs: measurement tables (CSV/JSON, controller/offline/measurements.py) and/or the fleet's own
telemetry: a file of telemetry messages (JSON lines) plus the plan that was in force, or the
telemetry topic itself (`--from-topic`, plan: the fleet's newest allocation event). The fit
(solvers/calibration.py) is reported per configuration before and after, with the rms log
error and the worst cell; a fit no better than the constants in force is refused (exit 1)
and nothing is written.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from schemas import load_catalog
from schemas.catalog import DEFAULT_CATALOG_DIR

from controller.offline.measurements import (MeasurementFileError, measurements_from_lines, measurements_from_telemetry, newest_plan,
                           read_measurements, read_topic)
from controller.common.settings import Settings


def ratio_table(title: str, result: Any, limit: int | None = None) -> Table:
    """Before/after predicted/measured ratio per configuration and quantity."""
    t = Table(title=title)
    for col in ("configuration", "quantity", "measured (s)", "before", "after"):
        t.add_column(col, justify="right" if col != "configuration" else "left")
    order = sorted(range(len(result.cells)), key=lambda k: (result.cells[k].config, result.cells[k].quantity))
    for k in order[:limit] if limit else order:
        c = result.cells[k]
        b, a = float(result.before.ratio[k]), float(result.after.ratio[k])
        style = lambda r: "green" if abs(r - 1) <= 0.10 else "yellow" if abs(r - 1) <= 0.25 else "red"  # noqa: E731
        t.add_row(c.config, c.quantity, f"{c.observed:.4g}", f"[{style(b)}]{b:.3f}[/]", f"[{style(a)}]{a:.3f}[/]")
    return t


def fit_report(result: Any) -> dict[str, Any]:
    wc, wr = result.worst_cell("after")
    bc, br = result.worst_cell("before")
    return {"cells": len(result.cells), "accepted": result.accepted,
            "rms_log_error_before": result.before.log_rms, "rms_log_error_after": result.after.log_rms,
            "worst_before": {"cell": f"{bc.config} {bc.quantity}", "ratio": br},
            "worst_after": {"cell": f"{wc.config} {wc.quantity}", "ratio": wr},
            "summary_before": result.before.summary(result.cells), "summary_after": result.after.summary(result.cells),
            "gpus": result.gpus, "ignored": list(result.ignored)}


def raw_gpus(src: Path) -> list[dict[str, Any]]:
    """The catalog's GPU entries as written (key order, provenance and all)."""
    doc = json.loads((src / "gpus.json" if src.is_dir() else src).read_text())
    return list(doc["gpus"] if isinstance(doc, dict) else doc)


def write_catalog(src: Path, dst: Path, gpus: list[dict[str, Any]]) -> None:
    """Copy the catalog folder (or the folder of a one-file catalog) with gpus.json replaced."""
    dst.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        for f in src.iterdir():
            if f.is_file() and f.name != "gpus.json":
                shutil.copy2(f, dst / f.name)
        (dst / "gpus.json").write_text(json.dumps({"gpus": gpus}, indent=2) + "\n")
    else:
        doc = json.loads(src.read_text())
        doc["gpus"] = gpus
        (dst / src.name).write_text(json.dumps(doc, indent=2) + "\n")


@click.command()
@click.argument("tables", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--telemetry", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSON lines of telemetry messages (RequestRecord / TelemetryBatch) with deployment and latency")
@click.option("--plan", "plan_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="the plan (or allocation event) in force while --telemetry was recorded")
@click.option("--from-topic", is_flag=True,
              help="read the telemetry topic of LLMFLEET_BOOTSTRAP_SERVERS (all of it, up to now); the plan is "
                   "--plan or the fleet's newest allocation event")
@click.option("--slice", "slice_s", type=float, default=60.0, show_default=True,
              help="telemetry is averaged per deployment over slices of this many seconds")
@click.option("--catalog", "catalog_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="catalog to calibrate (default: LLMFLEET_CATALOG_PATH, else the bundled one)")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder for the calibrated catalog (nothing is written without it)")
@click.option("--source", "source_key", default=None,
              help="provenance written into each fitted GPU's sources (default: calibrate:<input files>)")
@click.option("--json", "as_json", is_flag=True, help="print the fit report as JSON")
@click.option("--rows", type=int, default=60, show_default=True, help="configuration rows shown in the table")
def calibrate(tables: tuple[Path, ...], telemetry: Path | None, plan_path: Path | None, from_topic: bool,
              slice_s: float,
              catalog_path: Path | None, output: Path | None, source_key: str | None, as_json: bool,
              rows: int) -> None:
    """Fit per-GPU compute/bandwidth efficiency and step overhead to TABLES (CSV/JSON) and telemetry."""
    from solvers.calibration import CalibrationError, apply_constants, fit_constants

    if not tables and telemetry is None and not from_topic:
        raise click.UsageError("give at least one measurement table, --telemetry or --from-topic")
    if telemetry is not None and plan_path is None:
        raise click.UsageError("--telemetry needs --plan (the plan in force while it was recorded)")
    if telemetry is not None and from_topic:
        raise click.UsageError("--telemetry (a file) and --from-topic exclude each other")
    s = Settings()
    if from_topic and not s.bootstrap_servers:
        raise click.UsageError("--from-topic needs LLMFLEET_BOOTSTRAP_SERVERS")
    src = Path(catalog_path or s.catalog_path or DEFAULT_CATALOG_DIR)
    cat = load_catalog(src)
    try:
        measured = [m for t in tables for m in read_measurements(t)]
        if telemetry is not None and plan_path is not None:
            measured += measurements_from_telemetry(telemetry, json.loads(plan_path.read_text()), slice_s)
        if from_topic:
            import asyncio

            assert s.bootstrap_servers is not None
            lines = asyncio.run(read_topic(s.bootstrap_servers, s.topics.telemetry))
            plan = json.loads(plan_path.read_text()) if plan_path is not None else newest_plan(
                asyncio.run(read_topic(s.bootstrap_servers, s.topics.allocations)), s.fleet_id)
            measured += measurements_from_lines(lines, plan, slice_s, f"topic {s.topics.telemetry}")
        inst = cat.to_instance(performance_model=s.performance_model).to_spec()
        result = fit_constants(inst, measured)
    except (MeasurementFileError, CalibrationError) as exc:
        raise click.ClickException(str(exc)) from exc
    report = fit_report(result)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        con = Console()
        con.print(ratio_table("predicted / measured, before and after the fit", result, rows))
        con.print(f"rms log error {report['rms_log_error_before']:.3f} -> {report['rms_log_error_after']:.3f}; "
                  f"worst after: {report['worst_after']['cell']} ratio {report['worst_after']['ratio']:.3f}")
        for gid, fit in result.gpus.items():
            con.print(f"  {gid}: {fit['constants']}" + (f" by precision {fit['constants_by_precision']}"
                                                       if fit["constants_by_precision"] else ""))
        for why in result.ignored[:5]:
            con.print(f"  ignored: {why}")
    if not result.accepted:
        raise click.ClickException("refused: the fit is not better than the constants in force "
                                   f"(rms log error {result.before.log_rms:.4f} -> {result.after.log_rms:.4f})")
    if output is not None:
        names = ", ".join([p.name for p in tables] + ([f"telemetry {telemetry.name}"] if telemetry else [])
                          + ([f"topic {s.topics.telemetry}"] if from_topic else []))
        write_catalog(src, output, apply_constants(raw_gpus(src), result.gpus, source_key or f"calibrate:{names}"))
        if not as_json:
            click.echo(f"calibrated catalog written to {output}")
