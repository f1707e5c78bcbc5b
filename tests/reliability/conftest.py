"""Reliability scenarios: real worker processes on the embedded broker, figures recorded.

Short mode (the default, what CI runs) keeps every scenario to tens of seconds; soak mode
(`LLMFLEET_SOAK=1`, or `scripts/reliability.py --soak`) runs the same scenarios longer.
Each scenario records its figures through the `figures` fixture into one JSON file
(`$LLMFLEET_RELIABILITY_OUT`, default build/reliability/figures.json), which
scripts/reliability.py turns into docs/reliability.md.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SOAK = os.environ.get("LLMFLEET_SOAK", "").lower() in ("1", "true", "yes")


def scaled(short: float, soak: float) -> float:
    """A duration or count for the current mode."""
    return soak if SOAK else short


class Figures:
    """Named figures of one test, merged into its scenario's entry of the figures file."""

    def __init__(self, scenario: str, test: str) -> None:
        self.scenario = scenario
        self.test = test
        self.rows: list[dict[str, Any]] = []
        self.series: dict[str, list[list[float]]] = {}

    def add(self, name: str, value: float | int | str, unit: str = "", note: str = "") -> None:
        self.rows.append({"test": self.test, "name": name, "value": value, "unit": unit, "note": note})

    def add_series(self, name: str, points: list[tuple[float, float]]) -> None:
        self.series[name] = [[float(x), float(y)] for x, y in points]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = json.loads(path.read_text()) if path.exists() else {}
        entry = doc.setdefault(self.scenario, {"figures": [], "series": {}})
        entry["figures"] = [r for r in entry["figures"] if r.get("test") != self.test] + self.rows
        entry["series"].update(self.series)
        entry.update(mode="soak" if SOAK else "short", at=time.time())
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(path)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call":
        item.stash[_PASSED] = rep.passed
    return rep


_PASSED = pytest.StashKey[bool]()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """Figures of the calling scenario, saved only when its test passed."""
    f = Figures(request.node.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"), request.node.name)
    yield f
    if not request.node.stash.get(_PASSED, False):
        return
    out = Path(os.environ.get("LLMFLEET_RELIABILITY_OUT", REPO / "build" / "reliability" / "figures.json"))
    f.save(out)
