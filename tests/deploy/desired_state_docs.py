"""The KEDA / HPA snippets of docs/deploy.md ("Act on plans"), parsed, so tests run what users copy."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
SECTION = "## Act on plans: Prometheus gauges for KEDA and HPA"


def snippets() -> dict[str, Any]:
    """{"ScaledObject": ..., "HorizontalPodAutoscaler": ..., "adapter": ...} from the section's yaml blocks."""
    text = DOC.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    out: dict[str, Any] = {}
    for block in re.findall(r"```yaml\n(.*?)```", text[start:end if end > 0 else None], re.S):
        doc = yaml.safe_load(block)
        out["adapter" if "externalRules" in doc else doc["kind"]] = doc
    return out


def keda_trigger() -> dict[str, Any]:
    return snippets()["ScaledObject"]["spec"]["triggers"][0]


def hpa_selector() -> dict[str, str]:
    return snippets()["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["external"]["metric"]["selector"]["matchLabels"]
