"""AGH's anytime search is driven by a work budget and the seed (issue 15): the same
instance, seed and options give the same plan on an idle machine and on one with a
CPU-bound process beside it, as long as the deadline is not what ends the search. No
timing is asserted; the deadline is set far beyond what the budget needs."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from solvers import Status, compile_instance, solve
from solvers.generator import generate_family

HOG = "import time\nt = time.time()\nwhile time.time() - t < 120:\n    sum(i * i for i in range(10000))\n"


def _solve(ci, work: float):
    return solve(ci, "agh", deadline_s=120.0, seed=7, work=work)


@pytest.mark.parametrize("family,work", [("tight_budget", 400), ("mixed", 250)])
def test_same_plan_with_a_cpu_hog_beside_it(catalog, family, work) -> None:
    ci = compile_instance(generate_family(catalog, family, 8, 6, 8, seed=5))
    idle = _solve(ci, work)
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    try:
        busy = _solve(ci, work)
    finally:
        hog.kill()
        hog.wait()
    assert idle.status == busy.status == Status.FEASIBLE
    assert idle.stats["ended_by"] in ("budget", "converged")
    assert busy.stats["ended_by"] == idle.stats["ended_by"]
    assert busy.stats["work"] == idle.stats["work"]
    assert np.array_equal(idle.replicas, busy.replicas)
    assert np.array_equal(idle.x, busy.x)
    assert busy.objective == idle.objective


def test_budget_ends_the_search_and_more_work_never_hurts(catalog) -> None:
    ci = compile_instance(generate_family(catalog, "high_load", 8, 6, 8, seed=2))
    small = _solve(ci, 60)
    large = _solve(ci, 600)
    assert small.stats["ended_by"] == "budget"
    assert small.stats["work"] >= 60 and large.stats["work"] > small.stats["work"]
    assert large.objective <= small.objective + 1e-9


def test_bad_work_budget_is_refused(catalog) -> None:
    ci = compile_instance(generate_family(catalog, "high_load", 3, 3, 3, seed=0))
    with pytest.raises(ValueError, match="work"):
        solve(ci, "agh", work=0)
