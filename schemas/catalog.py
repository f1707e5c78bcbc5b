"""The fleet catalog: what can be deployed (GPUs, models, precisions) and the SLOs per query type.

Catalog entries are the instance entries plus provenance (`sources`, `benchmarks`, ...),
so `Catalog.to_instance` is a projection plus the window's demand.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from ._base import Frozen, NonNegFloat
from .instance import Constants, Gpu, Instance, Model, Parallelism, Precision, QueryType

_OPEN = ConfigDict(frozen=True, extra="allow", allow_inf_nan=False)
DEFAULT_CATALOG_DIR = Path(__file__).resolve().parent.parent / "solvers" / "catalog"


class CatalogGpu(Gpu):
    model_config = _OPEN


class CatalogModel(Model):
    model_config = _OPEN


class CatalogQueryType(QueryType):
    model_config = _OPEN


class CatalogPrecision(Precision):
    model_config = _OPEN


class Catalog(Frozen):
    name: str = "catalog"
    query_types: list[CatalogQueryType] = Field(min_length=1)
    models: list[CatalogModel] = Field(min_length=1)
    gpus: list[CatalogGpu] = Field(min_length=1)
    precisions: list[CatalogPrecision] = Field(min_length=1)
    parallelism: Parallelism = Parallelism(tp=[1, 2, 4, 8], pp=[1, 2, 4])
    budget_per_hour: NonNegFloat = 1000.0
    constants: Constants = Constants()

    def to_instance(self, demand: dict[str, dict[str, float]] | None = None,
                    name: str | None = None, budget_per_hour: float | None = None,
                    performance_model: str = "spec") -> Instance:
        """Instance for one window: `demand[qt]` may override arrival_rate, input_tokens,
        output_tokens and max_unserved.

        Query types absent from `demand` keep the catalog's defaults; pass rate 0 to plan none.
        `performance_model` ("spec" or "allreduce_table", the LLMFLEET_PERFORMANCE_MODEL setting)
        is carried by the instance, so everything that compiles it (planner, audit) agrees.
        """
        demand = demand or {}
        unknown = sorted(set(demand) - {q.id for q in self.query_types})
        if unknown:
            raise ValueError(f"demand names query types not in the catalog: {unknown}")
        spec_fields = set(QueryType.model_fields)
        qts = []
        for q in self.query_types:
            base = {k: v for k, v in q.model_dump().items() if k in spec_fields}
            base.update({k: float(v) for k, v in demand.get(q.id, {}).items()
                         if k in ("arrival_rate", "input_tokens", "output_tokens", "max_unserved")})
            qts.append(base)

        def project(items: list[Any], cls: type[Frozen]) -> list[dict[str, Any]]:
            keep = set(cls.model_fields)
            return [{k: v for k, v in it.model_dump().items() if k in keep} for it in items]

        qt_ids = {q["id"] for q in qts}
        models = project(self.models, Model)
        for m in models:
            m["error"] = {k: v for k, v in m["error"].items() if k in qt_ids}
        return Instance.model_validate({
            "name": name or self.name, "query_types": qts, "models": models,
            "gpus": project(self.gpus, Gpu), "precisions": project(self.precisions, Precision),
            "parallelism": self.parallelism.model_dump(),
            "budget_per_hour": self.budget_per_hour if budget_per_hour is None else budget_per_hour,
            "constants": self.constants.model_dump(), "performance_model": performance_model,
        })


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load a catalog from one JSON file, or from a folder of gpus/models/query_types/precisions.json."""
    p = Path(path) if path is not None else DEFAULT_CATALOG_DIR
    if p.is_dir():
        data: dict[str, Any] = {"name": p.name}
        for part in ("gpus", "models", "query_types", "precisions"):
            f = p / f"{part}.json"
            if not f.exists():
                raise FileNotFoundError(f"catalog folder {p} has no {part}.json")
            loaded = json.loads(f.read_text())
            data[part] = loaded[part] if isinstance(loaded, dict) else loaded
        settings = p / "fleet.json"
        if settings.exists():
            data.update(json.loads(settings.read_text()))
        return Catalog.model_validate(data)
    return Catalog.model_validate_json(p.read_text())
