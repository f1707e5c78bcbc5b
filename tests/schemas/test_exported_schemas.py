"""The JSON Schemas checked into schemas/json/ must match what the models render now."""
from __future__ import annotations

import json

from click.testing import CliRunner

from controller.cli import main
from schemas.export import EXPORTED_DIR, MESSAGE_TYPES, render_schemas


def test_exported_schemas_are_current() -> None:
    rendered = render_schemas()
    stale = [name for name, text in rendered.items()
             if not (EXPORTED_DIR / name).exists() or (EXPORTED_DIR / name).read_text() != text]
    assert not stale, (f"stale JSON Schemas {stale}: run `llmfleet schemas export schemas/json` "
                       "and commit the result")
    assert len(rendered) == len(MESSAGE_TYPES)


def test_cli_export_writes_one_file_per_type(tmp_path) -> None:
    res = CliRunner().invoke(main, ["schemas", "export", str(tmp_path)])
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(f"{n}.schema.json" for n in MESSAGE_TYPES)
    ev = json.loads((tmp_path / "allocation_event.schema.json").read_text())
    assert "epoch" in ev["required"] and ev["properties"]["epoch"]["minimum"] == 1
