"""docs/producer.md's examples do what the guide says, through the worker's real decode path."""
from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from controller.worker.app import Controller
from controller.cli import main
from controller.common.settings import Settings
from controller.worker.windows.demand_window import new_state

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "producer.md"
EXAMPLE = re.compile(r"<!-- example: (?P<verdict>accepted|dead-lettered|partly)(?:: (?P<what>[^>]*?))? -->\s*"
                     r"```json\n(?P<body>.*?)```", re.S)


def _examples() -> list[tuple[str, str, bytes]]:
    out = [(m["verdict"], (m["what"] or "").strip(), json.dumps(json.loads(m["body"])).encode())
           for m in EXAMPLE.finditer(GUIDE.read_text())]
    assert len(out) >= 7, "the guide's examples were not found"
    return out


@pytest.fixture(scope="module")
def ctl() -> Controller:
    return Controller(Settings(bootstrap_servers="127.0.0.1:1", web_port=0, tick_key="guide-test"))


def _run(ctl: Controller, raw: bytes) -> tuple[Any, list[tuple[str, int | None]]]:
    letters: list[tuple[str, int | None]] = []

    async def dead(raw: bytes, msg: Any, reason: str, index: int | None = None, record: Any = None) -> None:
        letters.append((reason, index))

    ctl._dead = dead  # type: ignore[method-assign]
    msg = SimpleNamespace(topic=ctl.s.topics.telemetry, partition=0, offset=0)
    state = new_state()
    state.wm = 1_700_000_000.0
    cols, _, _ = asyncio.run(ctl._decode(raw, msg, state))
    return cols, letters


@pytest.mark.parametrize(("verdict", "what", "raw"), _examples())
def test_the_guide_example_does_what_the_guide_says(ctl: Controller, verdict: str, what: str, raw: bytes) -> None:
    cols, letters = _run(ctl, raw)
    n = len(json.loads(raw)["ts"]) if isinstance(json.loads(raw).get("ts"), list) else 1
    if verdict == "accepted":
        assert not letters and cols is not None and len(cols[0]) == n
    elif verdict == "dead-lettered":
        assert len(letters) == 1 and what in letters[0][0], letters
        assert cols is None or len(cols[0]) == 0
    else:  # partly: "<index> <reason words>"
        idx, reason = what.split(" ", 1)
        assert [(i, reason in r) for r, i in letters] == [(int(idx), True)], letters
        assert cols is not None and len(cols[0]) == n - 1


def test_query_types_command_lists_the_catalog_ids_the_guide_names() -> None:
    res = CliRunner().invoke(main, ["query-types", "--json"])
    assert res.exit_code == 0, res.output
    ids = json.loads(res.output.splitlines()[0])["query_types"]
    assert "conversation" in ids and "conv" not in ids
    assert ", ".join(f"`{q}`" for q in ids) in " ".join(GUIDE.read_text().split())


def test_router_doc_uses_catalog_ids() -> None:
    doc = (GUIDE.parent / "router.md").read_text()
    assert '"conv"' not in doc and '"conversation"' in doc


def test_dead_letters_name_the_original_index_when_schema_and_time_faults_mix(ctl: Controller) -> None:
    t = 1_700_000_000.0
    raw = json.dumps({"kind": "batch", "ts": [t, t, t, 4_102_444_800.0, t],
                      "query_type": ["code", "code", "code", "code", "conv"],
                      "input_tokens": [5, -5, 5, 5, 5], "output_tokens": [1, 1, 1, 1, 1]}).encode()
    cols, letters = _run(ctl, raw)
    assert [(i, r.split(" ")[0]) for r, i in letters] == [(1, "invalid"), (3, "event"), (4, "unknown")]
    assert cols is not None and len(cols[0]) == 2
