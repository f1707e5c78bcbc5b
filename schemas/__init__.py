"""Typed, frozen boundary data for llmfleet: every message and file, with JSON Schema export."""
from ._base import SCHEMA_VERSION
from .catalog import Catalog, load_catalog
from .demand import DemandWindow, QueryDemand
from .errors import describe
from .events import AllocationEvent, AuditReport, AuditRequest, DeadLetter
from .fleet_status import DeploymentStatus, FleetStatus, Transition, TransitionStep
from .export import MESSAGE_TYPES, export_schemas, render_schemas
from .instance import Constants, Gpu, Instance, Model, Parallelism, Precision, QueryType
from .measurement import Measurement
from .plan import Deployment, Plan, Route
from .telemetry import IterationBatch, RequestRecord, TelemetryBatch, TelemetryMessage, Tick
from .windows import WINDOWS_MESSAGE, PartitionWatermark, WindowPartial, WindowProgress, WindowsMessage

__all__ = [
    "SCHEMA_VERSION", "AllocationEvent", "AuditReport", "AuditRequest", "Catalog", "Constants",
    "DeadLetter", "DemandWindow", "Deployment", "DeploymentStatus", "FleetStatus", "Gpu", "Instance",
    "IterationBatch", "MESSAGE_TYPES", "Measurement", "Model", "Parallelism", "Plan", "Precision", "QueryDemand",
    "QueryType", "Transition", "TransitionStep",
    "RequestRecord", "Route",
    "TelemetryBatch", "TelemetryMessage", "Tick", "describe", "export_schemas", "load_catalog",
    "render_schemas", "WINDOWS_MESSAGE", "PartitionWatermark", "WindowPartial", "WindowProgress",
    "WindowsMessage",
]
