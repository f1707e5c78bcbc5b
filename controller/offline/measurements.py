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
    try:
        lines = p.read_text().splitlines()
    except OSError as exc:
        raise MeasurementFileError(f"{p}: {exc.strerror}") from exc
    return measurements_from_lines(lines, plan, slice_s, str(p))


def measurements_from_lines(lines: Iterable[str], plan: Mapping[str, Any], slice_s: float = 60.0,
                            name: str = "telemetry") -> list[Measurement]:
    """`measurements_from_telemetry` over telemetry messages already read (one JSON text each);
    `name` is how errors and the rows' `source` refer to them."""
    p = name
    doc = dict(plan.get("plan", plan))
    try:
        deployments = {d.id: d for d in Plan.model_validate(doc).deployments}
    except ValidationError as exc:
        raise MeasurementFileError(f"plan: not a valid plan: {exc.errors()[0]['msg']}") from exc
    acc: dict[tuple[str, int], list[list[float]]] = defaultdict(lambda: [[], [], [], [], []])
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            head = json.loads(line)
            if isinstance(head, dict) and head.get("kind") == "tick":  # the controller's watermarks
                continue
            msg = TelemetryMessage.model_validate({"message": head}).message
        except json.JSONDecodeError as exc:
            raise MeasurementFileError(f"{p}: line {n}: not JSON ({exc.msg})") from exc
        except ValidationError as exc:
            err = exc.errors()[0]  # loc: ("message", <kind>, field...)
            field = ".".join(str(x) for x in err["loc"][2:]) or "kind"
            raise MeasurementFileError(f"{p}: line {n}, field {field}: {err['msg']}") from exc
        records = [msg] if msg.kind == "request" else list(msg.records()) if msg.kind == "batch" else []  # type: ignore[union-attr]
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
               "latency_s": lat_mean, "source": f"telemetry {Path(p).name} deployment {did}"}
        if ttfts and concurrency < IDLE_CONCURRENCY:
            row["ttft_s"] = mean(ttfts)
        out.append(Measurement.model_validate(row))
    if not out:
        raise MeasurementFileError(f"{p}: no request records with a deployment of the plan and a latency")
    return out


async def read_topic(bootstrap_servers: str, topic: str, max_messages: int = 1_000_000) -> list[str]:
    """Every message of `topic` (all partitions) up to the end offsets at the time of the call,
    as text; ticks and other non-telemetry kinds are left for the parser to skip or reject."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from controller.common.topic_admin import topic_partitions

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                                auto_offset_reset="earliest", client_id="llmfleet-calibrate")
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            raise MeasurementFileError(f"topic {topic!r} does not exist on {bootstrap_servers}")
        parts = await topic_partitions(consumer, topic)
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        await consumer.seek_to_beginning(*parts)
        out: list[str] = []
        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in parts])

        while len(out) < max_messages and await behind():
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for msgs in batch.values():
                out += [m.value.decode() for m in msgs
                        if m.value is not None and m.offset < ends[TopicPartition(m.topic, m.partition)]]
        return out[:max_messages]
    finally:
        await consumer.stop()


def newest_plan(messages: Iterable[str], fleet_id: str) -> dict[str, Any]:
    """The plan of the highest-epoch allocation event of `fleet_id` among `messages`."""
    from schemas import AllocationEvent

    best = None
    for text in messages:
        try:
            ev = AllocationEvent.model_validate_json(text)
        except ValidationError:
            continue
        if ev.fleet_id == fleet_id and (best is None or ev.epoch > best.epoch):
            best = ev
    if best is None:
        raise MeasurementFileError(f"no allocation event of fleet {fleet_id!r} on the allocations topic")
    return best.plan.to_spec()
