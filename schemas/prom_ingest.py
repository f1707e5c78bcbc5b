"""The label mapping of `llmfleet ingest prometheus`: which series is which deployment and query type.

vLLM labels its metrics by `model_name` (and Prometheus adds `instance`/`job`, relabelling may add
`pod`). The mapping says which label names the llmfleet deployment, how its values translate to
deployment ids, and how requests get a query type: by the model, by a label, or left to the
controller's token-length rules (docs/deploy.md, "Feed llmfleet from what you have").
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ._base import Frozen, Id

LabelName = str


class QueryTypeRule(Frozen):
    """How the requests a series counts get their query type.

    - `model`: by the `model_name` label, through `values` (model name -> query type id);
    - `label`: by the value of `label`, through `values` when given, else the value itself;
    - `length`: none is set; the controller classifies each synthesised record by its token lengths
      (the `LLMFLEET_CLASSIFY_RULES` the workers use, `llmfleet query-types`).
    """

    by: Literal["model", "label", "length"] = "length"
    label: LabelName | None = Field(default=None, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$",
                                    description="the label carrying the query type (by: label)")
    values: dict[str, Id] = Field(default_factory=dict,
                                  description="label value -> query type id; a value missing here is skipped "
                                              "and counted (by: model always needs it)")

    @model_validator(mode="after")
    def _complete(self) -> QueryTypeRule:
        if self.by == "label" and not self.label:
            raise ValueError("query_type.by is 'label' but query_type.label is not set")
        if self.by == "model" and not self.values:
            raise ValueError("query_type.by is 'model' but query_type.values (model name -> query type) is empty")
        if self.by == "length" and (self.label or self.values):
            raise ValueError("query_type.by is 'length': label and values are not used, remove them")
        return self

    @property
    def source_label(self) -> str | None:
        """The label whose value picks the query type (None: by token lengths)."""
        return "model_name" if self.by == "model" else self.label


class PromIngestMapping(Frozen):
    """Series labels -> llmfleet deployment ids and query types (a YAML or JSON file)."""

    kind: Literal["prom_ingest_mapping"] = "prom_ingest_mapping"
    deployment_label: LabelName = Field(
        default="model_name", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$",
        description="the label whose value names the deployment (vLLM: model_name; or pod, instance)")
    deployments: dict[str, Id] = Field(
        default_factory=dict, description="label value -> llmfleet deployment id; empty: the value itself "
                                          "(when it is a valid id). A value missing from a non-empty map is "
                                          "an unexpected label: skipped and counted")
    query_type: QueryTypeRule = QueryTypeRule()
    pairing: Literal["independent", "antimonotone"] = Field(
        default="independent", description="how synthesised prompt and generation lengths are paired (the "
        "metrics keep them in separate histograms): independent pairs them at random (closest on the bundled "
        "Azure traces, scripts/bench_prom_ingest.py); antimonotone gives the longest prompts the shortest "
        "answers, which recovers a long-prompt/short-answer type exactly when the types separate that way")
    ignore_labels: list[LabelName] = Field(
        default_factory=lambda: ["model_name", "instance", "job", "engine", "finished_reason", "pod", "namespace"],
        description="labels that may vary within one deployment and are summed over; any other label not "
                    "named above makes a series unexpected (skipped and counted)")

    def deployment_of(self, labels: dict[str, str]) -> str | None:
        value = labels.get(self.deployment_label)
        if value is None:
            return None
        if self.deployments:
            return self.deployments.get(value)
        return value

    def query_type_of(self, labels: dict[str, str]) -> tuple[bool, str | None]:
        """(known, query type): known False when the series' query-type label is missing or unmapped."""
        src = self.query_type.source_label
        if src is None:
            return True, None
        value = labels.get(src)
        if value is None:
            return False, None
        if self.query_type.values:
            qt = self.query_type.values.get(value)
            return qt is not None, qt
        return True, value

    def expected_labels(self) -> set[str]:
        names = {self.deployment_label, *self.ignore_labels}
        if self.query_type.source_label:
            names.add(self.query_type.source_label)
        return names
