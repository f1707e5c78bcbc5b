"""The worker's table state: typed, versioned, and a table written by the previous worker
version (untyped dicts, one fleet) is recovered by this one."""
from __future__ import annotations

import json

import numpy as np
import pytest

from controller.worker import fleet_state
from controller.worker.windows import demand_window as dw
from controller.worker.windows import window_assembly as wa

W, G = 10.0, 1.0


def _v1_ingest_entry() -> dict:
    """What a version-1 worker wrote for a partition with one open window (its JSON shape)."""
    agg = {"n": 3, "in_sum": 300.0, "out_sum": 30.0, "in_hist": [0] * 64, "out_hist": [0] * 64, "lat_n": 0,
           "lat_sum": 0.0, "ttft_n": 0, "ttft_sum": 0.0, "slo_n": 0, "slo_ok": 0, "t_min": 101.0}
    agg["in_hist"][20] = 3
    agg["out_hist"][10] = 3
    return json.loads(json.dumps({"offset": 7, "wm": 105.0, "late": 2, "windows": {"10": {"code": agg}}}))


def _v1_planner_entry() -> dict:
    return json.loads(json.dumps({
        "epoch": 4, "plan": {"deployments": [], "routes": []}, "plan_cost": 12.5, "plan_demand": {"code": 3.0},
        "plan_at": 100.0, "method": "gh", "detectors": {}, "wm": {"0": 105.0, "1": 99.0},
        "pending": {"9": {"0": {"kind": "partial", "partition": 0, "window": 9, "window_start": 90.0,
                                "window_end": 100.0, "aggs": {}, "late": 0, "wm": 101.0}}},
        "late_extra": 1, "closed_upto": 8, "closed_from": {"8": ["0", "1"]}, "windows_closed": 9,
        "recent_rates": [{"code": 3.0}], "composition_at": 50.0, "held": [[100.0, {"code": 3.0}]]}))


def test_a_version_1_ingest_entry_is_recovered_into_the_configured_fleet() -> None:
    st = fleet_state.ingest_from_changelog(_v1_ingest_entry(), "eu")
    assert (st.offset, st.wm, st.late) == (7, 105.0, {"eu": 2})
    # the migrated window keeps counting and closes as the eu fleet's partial
    dw.add_records(st, 8, np.array([106.0]), np.array(["code"], dtype=object), np.array([100.0]),
                   np.array([10.0]), window_s=W, grace_s=G, fleet="eu")
    (part,) = dw.close_ready(st, 0, window_s=W, grace_s=G, watermark=112.0)
    assert part["fleet"] == "eu" and part["window"] == 10 and part["aggs"]["code"]["n"] == 4 and part["late"] == 2
    again = fleet_state.ingest_from_changelog(json.loads(json.dumps(fleet_state.ingest_to_changelog(st))), "other")
    assert again == st, "version 2 round-trips through JSON"


def test_a_version_1_planner_entry_is_split_by_owner_and_keeps_assembling() -> None:
    fs = fleet_state.FleetState.from_changelog(_v1_planner_entry(), "default", partition=0)
    assert (fs.planner.epoch, fs.planner.plan_cost, fs.planner.held) == (4, 12.5, [[100.0, {"code": 3.0}]])
    assert (fs.assembly.closed_upto, fs.assembly.late_extra, fs.assembly.wm) == (8, 1, {"0": 105.0, "1": 99.0})
    # partition 1's watermark moves past window 9: the pending partial closes with the carried late record
    assert wa.absorb(fs.assembly, {"kind": "wm", "partition": 1, "wm": 101.5}) == "wm"
    ((window, _),) = wa.closable(fs.assembly, fleet_id="default", partitions=2, window_s=W, grace_s=G)
    assert (window.window_start, window.late_records) == (90.0, 1)
    round_trip = fleet_state.FleetState.from_changelog(json.loads(json.dumps(fs.to_changelog())), "default")
    assert round_trip.to_changelog() == json.loads(json.dumps(fs.to_changelog()))


@pytest.mark.parametrize("entry", [{"v": 3, "offset": 1}, {"v": 9, "fleet": "x", "planner": {}, "assembly": {}}])
def test_a_newer_format_is_refused_with_the_fix(entry: dict) -> None:
    with pytest.raises(fleet_state.ChangelogVersionError, match="one version per consumer group"):
        if "planner" in entry:
            fleet_state.FleetState.from_changelog(entry, "x")
        else:
            fleet_state.ingest_from_changelog(entry, "x")


def test_ingest_keeps_fleets_apart() -> None:
    st = dw.new_state()
    for off, (fleet, n) in enumerate((("a", 3), ("b", 5), ("a", 2)), start=1):
        ts = np.full(n, 101.0)
        dw.add_records(st, off, ts, np.array(["code"] * n, dtype=object), np.full(n, 100.0), np.full(n, 10.0),
                       window_s=W, grace_s=G, fleet=fleet)
    parts = dw.close_ready(st, 3, window_s=W, grace_s=G, watermark=200.0)
    assert {(p["fleet"], p["aggs"]["code"]["n"], p["wm"]) for p in parts} == {("a", 5, 200.0), ("b", 5, 200.0)}
    assert st.windows == {}


def test_tables_written_by_the_previous_worker_are_recovered_and_keep_counting() -> None:
    """tests/controller/fixtures/changelog_v1.json holds table entries the previous worker's own
    code wrote (commit 3e969f7: two partitions with open windows, a leader that closed one)."""
    from pathlib import Path

    fx = json.loads((Path(__file__).parent / "fixtures" / "changelog_v1.json").read_text())
    w, g = fx["window_s"], fx["grace_s"]
    parts = {int(p): fleet_state.ingest_from_changelog(e, "default") for p, e in fx["ingest"].items()}
    open_records = sum(a["n"] for st in parts.values() for ws in st.windows.values() for agg in ws.values()
                       for a in agg.values())
    fs = fleet_state.FleetState.from_changelog(fx["planner"], "default")
    assert fs.planner.epoch == 3 and fs.assembly.closed_upto == int(fx["closed_by_v1"][-1][0] // w)
    windows = []
    for p, st in sorted(parts.items()):
        for partial in dw.close_ready(st, p, window_s=w, grace_s=g, watermark=st.wm + 3 * w):
            assert partial["fleet"] == "default"
            wa.absorb(fs.assembly, partial)
    windows = [win for win, _ in wa.closable(fs.assembly, fleet_id="default", partitions=2, window_s=w, grace_s=g)]
    assert sum(x.records for x in windows) == open_records == 17, "every open record counted once"
    assert windows[0].window_start == 1010.0, "the window the previous leader closed is not published again"
    assert all(a.window_end == b.window_start for a, b in zip(windows, windows[1:])), "none skipped"
    assert [x.window_start for x in windows if x.records] == [1010.0, 1020.0]
    again = fleet_state.FleetState.from_changelog(json.loads(json.dumps(fs.to_changelog())), "default")
    assert again.to_changelog()["v"] == fleet_state.STATE_VERSION and again.planner.epoch == 3
