"""Write one JSON Schema file per message type: the contract for routers in other languages."""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from .catalog import Catalog
from .demand import DemandWindow
from .events import AllocationEvent, AuditReport, AuditRequest, DeadLetter
from .fleet_status import FleetStatus
from .instance import Instance
from .measurement import Measurement
from .plan import Plan
from .prom_ingest import PromIngestMapping
from .telemetry import IterationBatch, RequestRecord, TelemetryBatch, Tick
from .render import RenderConfig
from .windows import PartitionWatermark, WindowPartial, WindowProgress

MESSAGE_TYPES: dict[str, type[BaseModel]] = {
    "instance": Instance,
    "plan": Plan,
    "catalog": Catalog,
    "request_record": RequestRecord,
    "telemetry_batch": TelemetryBatch,
    "iteration_batch": IterationBatch,
    "demand_window": DemandWindow,
    "allocation_event": AllocationEvent,
    "audit_request": AuditRequest,
    "audit_report": AuditReport,
    "dead_letter": DeadLetter,
    "fleet_status": FleetStatus,
    "measurement": Measurement,
    "tick": Tick,
    "window_partial": WindowPartial,
    "window_progress": WindowProgress,
    "partition_watermark": PartitionWatermark,
    "prom_ingest_mapping": PromIngestMapping,
    "render_config": RenderConfig,
}
EXPORTED_DIR = Path(__file__).resolve().parent / "json"


def render_schemas() -> dict[str, str]:
    """File name -> JSON text, deterministic (sorted keys, trailing newline)."""
    out = {}
    for name, cls in MESSAGE_TYPES.items():
        schema = cls.model_json_schema()
        schema["$id"] = f"https://llmfleet.dev/schemas/{name}.schema.json"
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        out[f"{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def export_schemas(directory: str | Path = EXPORTED_DIR) -> list[Path]:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for fname, text in render_schemas().items():
        path = d / fname
        path.write_text(text)
        paths.append(path)
    return paths
