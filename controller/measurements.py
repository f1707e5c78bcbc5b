"""Read measurement tables (CSV or JSON) and turn fleet telemetry into measurements.

Tables: one row per (model, gpu, precision, tp, pp, batch, input_tokens, output_tokens) with
any of ttft_s / tpot_s / latency_s (schemas.Measurement). `concurrency` is accepted for
`batch` (vLLM's serving benchmark runs at a fixed concurrency) and `*_ms` columns for the
timings. A bad row raises MeasurementFileError naming the file, the row and the field.

Telemetry: the records the fleet already sends (schemas.RequestRecord / TelemetryBatch, one
JSON message per line, as on the telemetry topic) carry each request's deployment, TTFT and
latency. With the plan that was in force (deployment id -> configuration and replicas) they
become measurements per deployment and time slice: mean latency at the concurrency Little's
law gives (rate x mean latency / replicas), and mean TTFT where that concurrency is below 1.5
(an almost idle replica, where TTFT is one prefill rather than a queue).
"""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas import Measurement, Plan, TelemetryMessage

_ALIASES = {"concurrency": "batch", "max_concurrency": "batch", "gpu_type": "gpu", "quant": "precision",
            "input_len": "input_tokens", "output_len": "output_tokens", "isl": "input_tokens", "osl": "output_tokens"}
_MS = {"ttft_ms": "ttft_s", "tpot_ms": "tpot_s", "latency_ms": "latency_s", "mean_ttft_ms": "ttft_s",
       "mean_tpot_ms": "tpot_s", "mean_e2el_ms": "latency_s"}
IDLE_CONCURRENCY = 1.5


class MeasurementFileError(ValueError):
    """A measurement file that cannot be read; the message names the row and the field."""


def _normalise(raw: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in raw.items():
        k = str(key).strip()
        if value is None or (isinstance(value, str) and value.strip() == ""):
            continue
        if k in _MS:
            try:
                row[_MS[k]] = float(value) / 1e3
            except (TypeError, ValueError):
                row[_MS[k]] = value  # let validation name the field
            continue
        row[_ALIASES.get(k, k)] = value
    return row


def _validate(rows: Iterable[tuple[int, Mapping[str, Any]]], path: Path, what: str) -> list[Measurement]:
    out = []
    for n, raw in rows:
        if not isinstance(raw, Mapping):
            raise MeasurementFileError(f"{path}: {what} {n}: expected an object with named fields")
        try:
            out.append(Measurement.model_validate(_normalise(raw)))
        except ValidationError as exc:
            err = exc.errors()[0]
            fld = ".".join(str(p) for p in err["loc"]) or "<row>"
            got = raw.get(fld) if isinstance(raw, Mapping) else None
            shown = f" (got {got!r})" if got is not None else ""
            raise MeasurementFileError(f"{path}: {what} {n}, field {fld}: {err['msg']}{shown}") from exc
    if not out:
        raise MeasurementFileError(f"{path}: no measurement rows")
    return out


def read_measurements(path: str | Path) -> list[Measurement]:
    """Rows of a CSV (header line, then one row per line) or JSON (a list of objects, or an
    object with a `measurements` list) measurement table."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise MeasurementFileError(f"{p}: {exc.strerror}") from exc
    if p.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MeasurementFileError(f"{p}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
        items = doc.get("measurements") if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise MeasurementFileError(f"{p}: expected a list of rows or {{\"measurements\": [...]}}")
        return _validate(((k + 1, r) for k, r in enumerate(items)), p, "row")
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames:
        raise MeasurementFileError(f"{p}: empty CSV (no header line)")
    # CSV rows are numbered as lines of the file: the header is line 1
    return _validate(((k + 2, r) for k, r in enumerate(reader)), p, "line")


def measurements_from_telemetry(path: str | Path, plan: Mapping[str, Any], slice_s: float = 60.0) -> list[Measurement]:
    """Measurements per (deployment, time slice) from a file of telemetry messages (JSON lines)
    and the plan in force while they were recorded (a spec plan or an allocation event)."""
    p = Path(path)
    doc = dict(plan.get("plan", plan))
    try:
        deployments = {d.id: d for d in Plan.model_validate(doc).deployments}
    except ValidationError as exc:
        raise MeasurementFileError(f"plan: not a valid plan: {exc.errors()[0]['msg']}") from exc
    acc: dict[tuple[str, int], list[list[float]]] = defaultdict(lambda: [[], [], [], [], []])
    try:
        lines = p.read_text().splitlines()
    except OSError as exc:
        raise MeasurementFileError(f"{p}: {exc.strerror}") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            msg = TelemetryMessage.model_validate({"message": json.loads(line)}).message
        except json.JSONDecodeError as exc:
            raise MeasurementFileError(f"{p}: line {n}: not JSON ({exc.msg})") from exc
        except ValidationError as exc:
            err = exc.errors()[0]  # loc: ("message", <kind>, field...)
            field = ".".join(str(x) for x in err["loc"][2:]) or "kind"
            raise MeasurementFileError(f"{p}: line {n}, field {field}: {err['msg']}") from exc
        records = [msg] if msg.kind == "request" else list(msg.records()) if msg.kind == "batch" else []
        for r in records:
            if r.deployment is None or r.latency_s is None or r.deployment not in deployments:
                continue
            a = acc[(r.deployment, int(r.ts // slice_s))]
            a[0].append(r.latency_s)
            a[1].append(r.ttft_s if r.ttft_s is not None else float("nan"))
            a[2].append(r.input_tokens)
            a[3].append(max(r.output_tokens, 1))
            a[4].append(r.ts)
    out = []
    for (did, _), (lat, ttft, h, f, _ts) in sorted(acc.items()):
        d = deployments[did]
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        lat_mean = mean(lat)
        concurrency = len(lat) / slice_s * lat_mean / d.replicas
        ttfts = [t for t in ttft if t == t]
        row = {"model": d.model, "gpu": d.gpu, "precision": d.precision, "tp": d.tp, "pp": d.pp,
               "batch": max(1, round(concurrency)), "input_tokens": mean(h), "output_tokens": mean(f),
               "latency_s": lat_mean, "source": f"telemetry {p.name} deployment {did}"}
        if ttfts and concurrency < IDLE_CONCURRENCY:
            row["ttft_s"] = mean(ttfts)
        out.append(Measurement.model_validate(row))
    if not out:
        raise MeasurementFileError(f"{p}: no request records with a deployment of the plan and a latency")
    return out
