"""docs/producer.md's examples are what the controller accepts and refuses, and its query-type
list is the catalog's."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from controller.cli import main
from schemas import RequestRecord, TelemetryBatch, load_catalog

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "producer.md"


def examples() -> list[tuple[str, dict]]:
    """(the sentence before the block, the JSON) of every ```json block."""
    text = GUIDE.read_text()
    out = []
    for m in re.finditer(r"```json\n(.*?)\n```", text, re.S):
        lead = text[:m.start()].rstrip().split("\n\n")[-1]
        out.append((lead, json.loads(m.group(1))))
    return out


def test_guide_examples_get_the_verdicts_it_states() -> None:
    found = examples()
    assert len(found) >= 3
    for lead, msg in found:
        model = TelemetryBatch if msg.get("kind") == "batch" else RequestRecord
        if "(accepted" in lead:
            model.model_validate(msg)
        else:
            assert "Dead-lettered" in lead or "dead-lettered" in lead, lead
            with pytest.raises(ValidationError):
                model.model_validate(msg)


def test_guide_lists_the_catalog_query_types() -> None:
    text = GUIDE.read_text()
    ids = [q.id for q in load_catalog().query_types]
    assert all(f"`{q}`" in text for q in ids)
    res = CliRunner().invoke(main, ["query-types", "--json"])
    assert res.exit_code == 0 and [json.loads(line)["id"] for line in res.output.splitlines()] == ids
