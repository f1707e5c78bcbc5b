"""Load the label mapping file and resolve one series to (deployment, query type) or a skip reason."""
from __future__ import annotations

import json
import re
from collections.abc import Collection
from pathlib import Path

import yaml
from pydantic import ValidationError

from schemas import describe
from schemas.prom_ingest import PromIngestMapping

from .samples import SeriesKey


_ID = re.compile(r"^[A-Za-z0-9_.:/+@-]{1,200}$")  # schemas._base.Id


class MappingError(ValueError):
    """The mapping file is unreadable, invalid, or names query types the catalog does not have."""


def load_mapping(path: Path | None, known_query_types: Collection[str]) -> PromIngestMapping:
    """The mapping in `path` (YAML or JSON; None: the defaults: deployment = model_name, query type by
    token length), checked against the catalog's query types."""
    if path is None:
        mapping = PromIngestMapping()
    else:
        try:
            text = Path(path).read_text()
            data = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise MappingError(f"cannot read mapping file {path}: {exc}") from exc
        try:
            mapping = PromIngestMapping.model_validate(data or {})
        except ValidationError as exc:
            raise MappingError(f"invalid mapping file {path}: {describe(exc)}") from exc
    unknown = sorted(set(mapping.query_type.values.values()) - set(known_query_types))
    if unknown:
        raise MappingError(f"mapping names query types the catalog does not have: {unknown} "
                           f"(known: {sorted(known_query_types)}; see `llmfleet query-types`)")
    return mapping


def resolve(key: SeriesKey, mapping: PromIngestMapping,
            known_query_types: Collection[str]) -> tuple[str, str | None] | str:
    """(deployment, query type or None) for a series, or the reason it is skipped:
    `unexpected_label`, `no_deployment_label`, `unmapped_deployment`, `unmapped_query_type`."""
    labels = dict(key)
    extra = set(labels) - mapping.expected_labels()
    if extra:
        return "unexpected_label"
    if mapping.deployment_label not in labels:
        return "no_deployment_label"
    deployment = mapping.deployment_of(labels)
    if deployment is None or not _ID.match(deployment):
        return "unmapped_deployment"
    known, qt = mapping.query_type_of(labels)
    if not known or (qt is not None and qt not in known_query_types):
        return "unmapped_query_type"
    return deployment, qt
