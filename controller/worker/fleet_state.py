"""The worker's table entries as typed state, and their changelog format (versioned).

Two tables: the ingest table (one `PartitionState` per telemetry partition, written by
controller/worker/windows/demand_window.py) and the fleet table (one `FleetState` per fleet:
the planner's `PlannerState` and window assembly's `AssemblyState`, each written only by its
own module). faust keeps table values as JSON in a changelog topic; this module is the one
place that turns them into the types and back.

Format versions (the `v` key):
* 1 (llmfleet <= 0.1, no `v` key): one untyped dict per entry; the planner's and assembly's
  keys side by side; ingest windows not split by fleet (the worker's one fleet).
* 2: typed state, split by owner; ingest windows per fleet.
A worker reads version 1 (migrating it to its configured fleet) and 2; a newer version is
refused with `ChangelogVersionError`, which names the fix, rather than misread.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from controller.worker.planning.planner import PlannerState
from controller.worker.windows.demand_window import PartitionState
from controller.worker.windows.window_assembly import AssemblyState

STATE_VERSION = 2


class ChangelogVersionError(RuntimeError):
    """A table entry written by a newer worker than this one."""


def _version(d: dict[str, Any], what: str) -> int:
    v = int(d.get("v", 1))
    if v > STATE_VERSION:
        raise ChangelogVersionError(
            f"{what} was written in changelog format v{v}; this worker reads up to v{STATE_VERSION}. "
            "Run workers of one version per consumer group (upgrade this one), or start the group "
            "afresh (a new LLMFLEET_CONSUMER_GROUP) to drop the tables")
    return v


def _shallow(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _typed(cls: type, d: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


# ---- ingest table -----------------------------------------------------------------------------
def ingest_to_changelog(state: PartitionState) -> dict[str, Any]:
    return {"v": STATE_VERSION, **_shallow(state)}


def ingest_from_changelog(d: dict[str, Any] | None, fleet: str) -> PartitionState:
    """`fleet`: the fleet a version-1 entry's windows belong to (the worker's configured one)."""
    if d is None:
        return PartitionState()
    if _version(d, "an ingest-table entry") == 1:
        late = int(d.get("late", 0))
        return PartitionState(offset=int(d.get("offset", -1)), wm=d.get("wm"),
                              late={fleet: late} if late else {},
                              windows={fleet: d["windows"]} if d.get("windows") else {})
    return _typed(PartitionState, d)


# ---- fleet table --------------------------------------------------------------------------------
class FleetState:
    """One fleet's planning state: what the planner keeps and the windows being assembled, and
    the windows-topic partition its messages arrive on (where its table entry lives)."""

    __slots__ = ("fleet", "partition", "planner", "assembly")

    def __init__(self, fleet: str, partition: int = 0, planner: PlannerState | None = None,
                 assembly: AssemblyState | None = None) -> None:
        self.fleet = fleet
        self.partition = partition
        self.planner = planner if planner is not None else PlannerState()
        self.assembly = assembly if assembly is not None else AssemblyState()

    def to_changelog(self) -> dict[str, Any]:
        return {"v": STATE_VERSION, "fleet": self.fleet, "partition": self.partition,
                "planner": _shallow(self.planner), "assembly": _shallow(self.assembly)}

    @classmethod
    def from_changelog(cls, d: dict[str, Any] | None, fleet: str, partition: int = 0) -> FleetState:
        if d is None:
            return cls(fleet, partition)
        if _version(d, f"fleet {fleet!r}'s table entry") == 1:  # one flat dict: split it by owner
            return cls(fleet, partition, _typed(PlannerState, d), _typed(AssemblyState, d))
        return cls(str(d.get("fleet", fleet)), int(d.get("partition", partition)),
                   _typed(PlannerState, d["planner"]), _typed(AssemblyState, d["assembly"]))
