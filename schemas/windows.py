"""The windows topic: what ingest workers tell each fleet's leader about demand windows.

Three kinds, keyed by fleet so a fleet's messages share a windows-topic partition (and with it
the worker that plans the fleet): a `WindowPartial` is one telemetry partition's counts of one
closed window of one fleet; a `WindowProgress` the same for the window still open (the fast
path's view, cumulative); a `PartitionWatermark` says how far a telemetry partition's event time
got (sent to every windows partition: each fleet waits for every telemetry partition).
Aggregates are per query type: see controller/worker/windows/demand_window.py `_empty_agg`.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from ._base import Frozen, Id, NonNegFloat

Aggs = dict[Id, dict[str, Any]]


class WindowPartial(Frozen):
    kind: Literal["partial"] = "partial"
    fleet: Id | None = Field(default=None, description="None: written by a single-fleet worker "
                                                       "(the leader's configured fleet)")
    partition: int = Field(ge=0, description="telemetry partition")
    window: int = Field(description="window index k: event time [k w, (k + 1) w)")
    window_start: float
    window_end: float
    aggs: Aggs
    late: int = Field(default=0, ge=0, description="late records of this fleet since the last partial")
    wm: NonNegFloat = Field(description="watermark the leader may advance the partition to")
    closed_at: float | None = Field(default=None, description="wall time the ingest worker closed it")


class WindowProgress(Frozen):
    kind: Literal["progress"] = "progress"
    fleet: Id | None = None
    partition: int = Field(ge=0)
    window: int
    wm: NonNegFloat
    aggs: Aggs


class PartitionWatermark(Frozen):
    kind: Literal["wm"] = "wm"
    partition: int = Field(ge=0)
    wm: NonNegFloat


WindowsMessage = Annotated[WindowPartial | WindowProgress | PartitionWatermark, Field(discriminator="kind")]
WINDOWS_MESSAGE = TypeAdapter(WindowsMessage)
