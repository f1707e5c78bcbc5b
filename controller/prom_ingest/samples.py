"""Samples from either source, grouped into one cumulative histogram set per series.

A *series* is one label set (without `le` and `__name__`), e.g. one vLLM engine's `model_name`,
`instance` and `job`; it carries up to four histograms (`vllm_metrics.HISTOGRAMS`), each as
cumulative bucket counts, `_sum` and `_count`. Both the direct scrape (exposition text, parsed by
prometheus_client) and the Prometheus HTTP API (an instant vector of raw values) end here, so the
delta logic does not know where numbers came from.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from .vllm_metrics import HISTOGRAMS, canonical

SeriesKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Hist:
    """A cumulative histogram: upper bounds (ascending, last +Inf), cumulative counts, sum, count."""

    bounds: tuple[float, ...]
    cum: tuple[float, ...]
    total: float
    count: float


def series_key(labels: Mapping[str, str]) -> SeriesKey:
    return tuple(sorted((k, v) for k, v in labels.items() if k not in ("le", "__name__")))


def from_exposition(text: str) -> list[Sample]:
    """Samples of the histograms the ingest reads, from Prometheus text exposition (an engine's /metrics)."""
    out = []
    for family in text_string_to_metric_families(text):
        if canonical(family.name) not in HISTOGRAMS:
            continue
        out += [Sample(s.name, dict(s.labels), float(s.value)) for s in family.samples]
    return out


def from_api(body: Mapping[str, Any]) -> list[Sample]:
    """Samples from a Prometheus `/api/v1/query` answer (resultType vector)."""
    data = body.get("data") or {}
    if data.get("resultType") != "vector":
        raise ValueError(f"expected an instant vector, got resultType {data.get('resultType')!r}")
    out = []
    for s in data.get("result", []):
        labels = dict(s["metric"])
        name = labels.pop("__name__", "")
        out.append(Sample(name, labels, float(s["value"][1])))
    return out


def group(samples: Iterable[Sample]) -> dict[SeriesKey, dict[str, Hist]]:
    """Series -> histogram name -> Hist. A histogram without buckets or without `_count` is left out."""
    raw: dict[SeriesKey, dict[str, dict[str, Any]]] = {}
    for s in samples:
        base, suffix = _split(s.name)
        if base is None:
            continue
        h = raw.setdefault(series_key(s.labels), {}).setdefault(base, {"buckets": {}})
        if suffix == "_bucket":
            le = s.labels.get("le")
            if le is not None:
                h["buckets"][float(le)] = s.value
        else:
            h[suffix] = s.value
    out: dict[SeriesKey, dict[str, Hist]] = {}
    for key, hists in raw.items():
        for name, h in hists.items():
            b = h["buckets"]
            if not b or "_count" not in h or math.inf not in b:
                continue
            bounds = tuple(sorted(b))
            out.setdefault(key, {})[name] = Hist(bounds, tuple(b[x] for x in bounds), h.get("_sum", 0.0), h["_count"])
    return out


def _split(name: str) -> tuple[str | None, str]:
    name = canonical(name)
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS:
            return name[: -len(suffix)], suffix
    return None, ""
