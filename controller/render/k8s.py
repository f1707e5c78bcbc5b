"""A plan as Kubernetes objects: per llmfleet deployment a Deployment and a Service, and
optionally a KEDA ScaledObject or an HPA that follows the leader's desired-state gauge.

Pure functions of (event, config) -> {file name: YAML text}. Output is deterministic (sorted
keys, objects in deployment-id order, no timestamps) and an object carries no epoch, so a GitOps
diff between two plans shows only the deployments that changed, and the plan ConfigMap
(`plan-configmap.yaml`: epoch, cost and the plan itself).
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

import yaml

from controller.render.engines import ENGINES, RenderError
from schemas import AllocationEvent, Deployment
from schemas.render import RenderConfig

GROUP = "llmfleet.dev"
_DNS = re.compile(r"[^a-z0-9-]+")


def k8s_name(deployment_id: str) -> str:
    """A DNS-1123 label for a deployment id: lower case, '-' for anything else, at most 63
    characters (a long id keeps a hash of itself so two long ids do not collide)."""
    name = _DNS.sub("-", deployment_id.lower()).strip("-") or "deployment"
    if len(name) > 63:
        digest = hashlib.sha256(deployment_id.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-')}-{digest}"
    return name


def names(event: AllocationEvent) -> dict[str, str]:
    """Deployment id -> object name; two ids that map to one name are an error."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for d in sorted(event.plan.deployments, key=lambda d: d.id):
        n = k8s_name(d.id)
        if n in seen:
            raise RenderError(f"deployments {seen[n]!r} and {d.id!r} both map to the Kubernetes name {n!r}")
        seen[n] = d.id
        out[d.id] = n
    return out


def labels(fleet: str, name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "llmfleet",
            "app.kubernetes.io/managed-by": "llmfleet", f"{GROUP}/fleet": fleet}


def _annotations(d: Deployment) -> dict[str, str]:
    return {f"{GROUP}/deployment": d.id, f"{GROUP}/model": d.model, f"{GROUP}/gpu": d.gpu,
            f"{GROUP}/precision": d.precision, f"{GROUP}/tp": str(d.tp), f"{GROUP}/pp": str(d.pp)}


def deployment(event: AllocationEvent, d: Deployment, name: str, cfg: RenderConfig) -> dict[str, Any]:
    engine = ENGINES[cfg.engine]
    node = cfg.gpus.get(d.gpu)
    if node is None:
        raise RenderError(f"deployment {d.id}: GPU {d.gpu!r} has no node selector; add it to the config's "
                          f"`gpus` (label, value, resource); configured: {sorted(cfg.gpus)}")
    model = cfg.models.get(d.model)
    if model is None:
        raise RenderError(f"deployment {d.id}: model {d.model!r} has no source for the engine; add it to "
                          f"the config's `models`")
    gpus = str(d.tp * d.pp)
    meta = labels(event.fleet_id, name)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": cfg.namespace, "labels": meta, "annotations": _annotations(d)},
        "spec": {
            # with an autoscaler the replica count is its to set (a GitOps sync would fight it)
            **({"replicas": d.replicas} if cfg.autoscaler == "none" else {}),
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": meta, "annotations": _annotations(d)},
                "spec": {
                    "nodeSelector": {node.label: node.value},
                    "containers": [{
                        "name": "engine", "image": cfg.image or engine.image,
                        "command": engine.command(d, model, cfg.port),
                        "ports": [{"name": "http", "containerPort": cfg.port, "protocol": "TCP"}],
                        "resources": {"limits": {node.resource: gpus}, "requests": {node.resource: gpus}},
                        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"},
                                           "periodSeconds": 5, "failureThreshold": 3},
                    }],
                },
            },
        },
    }


def service(event: AllocationEvent, d: Deployment, name: str, cfg: RenderConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": cfg.namespace, "labels": labels(event.fleet_id, name),
                     "annotations": _annotations(d)},
        "spec": {"selector": {"app.kubernetes.io/name": name},
                 "ports": [{"name": "http", "port": cfg.port, "targetPort": "http", "protocol": "TCP"}]},
    }


def scaled_object(event: AllocationEvent, d: Deployment, name: str, cfg: RenderConfig) -> dict[str, Any]:
    """KEDA follows llmfleet_transition_replicas (docs/deploy.md, 'Act on plans')."""
    from controller.worker.desired_state_metrics import keda_query

    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": cfg.namespace, "labels": labels(event.fleet_id, name)},
        "spec": {
            "scaleTargetRef": {"name": name}, "minReplicaCount": 0, "maxReplicaCount": cfg.max_replicas,
            "pollingInterval": 15, "cooldownPeriod": 60,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {
                "stabilizationWindowSeconds": 0}}}},
            "triggers": [{"type": "prometheus", "metricType": "AverageValue", "metadata": {
                "serverAddress": cfg.prometheus, "query": keda_query(event.fleet_id, d.id),
                "threshold": "1", "activationThreshold": "0", "ignoreNullValues": "false"}}],
        },
    }


def hpa(event: AllocationEvent, d: Deployment, name: str, cfg: RenderConfig) -> dict[str, Any]:
    """An autoscaling/v2 HPA on the external metric prometheus-adapter serves (docs/deploy.md)."""
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": cfg.namespace, "labels": labels(event.fleet_id, name)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1, "maxReplicas": cfg.max_replicas,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
            "metrics": [{"type": "External", "external": {
                "metric": {"name": "llmfleet_transition_replicas",
                           "selector": {"matchLabels": {"fleet": event.fleet_id, "deployment": d.id}}},
                "target": {"type": "AverageValue", "averageValue": "1"}}}],
        },
    }


class _Dumper(yaml.SafeDumper):
    """No YAML anchors: a label dict used twice is written out twice, as kubectl users expect."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(obj: dict[str, Any]) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=1000)


def plan_config_map(event: AllocationEvent, cfg: RenderConfig) -> dict[str, Any]:
    """The plan itself, epoch and cost: the one object that changes on every epoch (an
    annotation on the Deployments would restart their pods each time)."""
    name = k8s_name(f"llmfleet-plan-{event.fleet_id}")
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": cfg.namespace, "labels": labels(event.fleet_id, name)},
            "data": {"fleet": event.fleet_id, "epoch": str(event.epoch),
                     "cost_per_hour": f"{event.cost_per_hour:.4f}",
                     "plan.json": json.dumps(event.plan.to_spec(), sort_keys=True, separators=(",", ":"))}}


def kustomization(files: Iterable[str], cfg: RenderConfig) -> str:
    return dump({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                 "namespace": cfg.namespace, "resources": sorted(files)})


def render_k8s(event: AllocationEvent, cfg: RenderConfig) -> dict[str, str]:
    """{file name: YAML} for the plan of `event` (raises RenderError before anything is built)."""
    by_name = names(event)
    files: dict[str, str] = {}
    extra = {"keda": ("scaledobject", scaled_object), "hpa": ("hpa", hpa)}.get(cfg.autoscaler)
    for d in sorted(event.plan.deployments, key=lambda d: d.id):
        n = by_name[d.id]
        files[f"deployment-{n}.yaml"] = dump(deployment(event, d, n, cfg))
        files[f"service-{n}.yaml"] = dump(service(event, d, n, cfg))
        if extra is not None:
            files[f"{extra[0]}-{n}.yaml"] = dump(extra[1](event, d, n, cfg))
    files["plan-configmap.yaml"] = dump(plan_config_map(event, cfg))
    files["kustomization.yaml"] = kustomization(files, cfg)
    return files
