"""`llmfleet render k8s | gateway`: manifests valid against the official schemas, deterministic,
all or nothing on bad input, and the docs' examples are what the render writes."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from controller.cli import main
from controller.render.engines import RenderError
from controller.render.gateway import integer_weights, render_gateway
from controller.render.k8s import k8s_name, render_k8s
from controller.render.source import event_from_file, load_config, write_all
from schemas import AllocationEvent
from schemas.render import RenderConfig
from tests.conftest import SHARED

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"
EVENT = EXAMPLES / "allocation-event.json"
CONFIG = EXAMPLES / "render-config.yaml"
CRDS = {("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
        ("inference.networking.k8s.io/v1", "InferencePool"): "inference.networking.k8s.io_inferencepools.yaml",
        ("gateway.networking.k8s.io/v1", "HTTPRoute"): "gateway.networking.k8s.io_httproutes.yaml"}


def _crd_schema(api_version: str, kind: str) -> dict:
    path = SHARED / "k8s-crds" / CRDS[(api_version, kind)]
    if not path.exists():
        pytest.skip(f"CRD schemas not found at {path}")
    crd = yaml.safe_load(path.read_text())
    version = api_version.rsplit("/", 1)[1]
    return next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]


def validate(obj: dict) -> None:
    """Core objects against Kubernetes 1.30 (kubernetes-validate), CRDs against their CRD schema."""
    import jsonschema
    import kubernetes_validate

    key = (obj["apiVersion"], obj["kind"])
    if key in CRDS:
        jsonschema.validate(obj, _crd_schema(*key))
    elif obj["kind"] != "Kustomization":
        kubernetes_validate.validate(obj, "1.30", strict=True)


def _event(**changes) -> AllocationEvent:
    ev = event_from_file(EVENT)
    return ev.model_copy(update=changes) if changes else ev


@pytest.mark.parametrize("autoscaler", ["none", "keda", "hpa"])
@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_every_rendered_object_validates_against_the_official_schemas(autoscaler: str, engine: str) -> None:
    cfg = load_config(CONFIG).model_copy(update={"autoscaler": autoscaler, "engine": engine})
    files = {**render_k8s(_event(), cfg), **render_gateway(_event(), cfg).files}
    kinds = set()
    for name, text in files.items():
        obj = yaml.safe_load(text)
        validate(obj)
        kinds.add(obj["kind"])
        assert obj.get("metadata", {}).get("namespace", cfg.namespace) == cfg.namespace, name
    want = {"Deployment", "Service", "ConfigMap", "Kustomization", "InferencePool", "HTTPRoute"}
    want |= {"keda": {"ScaledObject"}, "hpa": {"HorizontalPodAutoscaler"}, "none": set()}[autoscaler]
    assert kinds == want


def test_a_broken_object_does_fail_the_validation() -> None:
    import jsonschema
    import kubernetes_validate

    files = render_gateway(_event(), load_config(CONFIG)).files
    route = yaml.safe_load(next(t for n, t in files.items() if n.startswith("httproute-")))
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = -1
    with pytest.raises(jsonschema.ValidationError):
        validate(route)
    dep = yaml.safe_load(render_k8s(_event(), RenderConfig())["deployment-" + k8s_name(
        _event().plan.deployments[0].id) + ".yaml"])
    dep["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(dep)


def test_deployments_carry_the_plan() -> None:
    ev = _event()
    files = render_k8s(ev, RenderConfig())
    for d in ev.plan.deployments:
        obj = yaml.safe_load(files[f"deployment-{k8s_name(d.id)}.yaml"])
        c = obj["spec"]["template"]["spec"]["containers"][0]
        assert obj["spec"]["replicas"] == d.replicas
        assert c["resources"]["limits"]["nvidia.com/gpu"] == str(d.tp * d.pp)
        assert c["command"][c["command"].index("--tensor-parallel-size") + 1] == str(d.tp)
        assert c["command"][c["command"].index("--pipeline-parallel-size") + 1] == str(d.pp)
        assert obj["metadata"]["annotations"]["llmfleet.dev/deployment"] == d.id
    keda = render_k8s(ev, RenderConfig(autoscaler="keda"))
    assert "replicas" not in yaml.safe_load(keda[f"deployment-{k8s_name(ev.plan.deployments[0].id)}.yaml"])["spec"]


def test_same_plan_same_bytes_and_a_change_touches_only_its_files(tmp_path: Path) -> None:
    cfg = load_config(CONFIG)
    assert render_k8s(_event(), cfg) == render_k8s(_event(), cfg)
    assert render_gateway(_event(), cfg).files == render_gateway(_event(), cfg).files
    ev = _event()
    deps = [d.model_copy(update={"replicas": d.replicas + 1}) if k == 0 else d
            for k, d in enumerate(ev.plan.deployments)]
    changed = ev.model_copy(update={"epoch": 43, "plan": ev.plan.model_copy(update={"deployments": deps})})
    a, b = render_k8s(ev, RenderConfig()), render_k8s(changed, RenderConfig())
    diff = sorted(n for n in a if a[n] != b[n])
    assert diff == ["deployment-" + k8s_name(deps[0].id) + ".yaml", "plan-configmap.yaml"]
    a, b = render_k8s(ev, cfg), render_k8s(changed, cfg)   # KEDA sets replicas: only the plan moves
    assert sorted(n for n in a if a[n] != b[n]) == ["plan-configmap.yaml"]


def test_bad_input_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    write_all({"keep.yaml": "kind: Mine\n"}, out)
    ev = _event()
    deps = [*ev.plan.deployments, ev.plan.deployments[0].model_copy(update={"id": "x.MI300X", "gpu": "MI300X"})]
    mi300 = ev.model_copy(update={"plan": ev.plan.model_copy(update={"deployments": deps})})
    with pytest.raises(RenderError, match="MI300X.*no node selector"):
        render_k8s(mi300, RenderConfig())
    bad_file = tmp_path / "mi300.json"
    bad_file.write_text(mi300.model_dump_json())
    res = CliRunner().invoke(main, ["render", "k8s", str(bad_file), "-o", str(out)])
    assert res.exit_code != 0 and "no node selector" in res.output
    unknown = ev.model_copy(update={"plan": ev.plan.model_copy(update={"deployments": [
        ev.plan.deployments[0].model_copy(update={"model": "my-finetune"})], "routes": []})})
    with pytest.raises(RenderError, match="my-finetune.*no source"):
        render_k8s(unknown, RenderConfig())
    assert render_k8s(unknown, RenderConfig(models={"my-finetune": "s3://models/ft"}))
    res2 = CliRunner().invoke(main, ["render", "gateway", str(EVENT), "-o", str(out), "--config",
                                     str(_config(tmp_path, {"gateway": {"weight_total": 0}}))])
    assert res2.exit_code != 0 and "weight_total" in res2.output
    sg = _event()
    deep = sg.model_copy(update={"plan": sg.plan.model_copy(update={"deployments": [
        sg.plan.deployments[0].model_copy(update={"pp": 2})]})})
    with pytest.raises(RenderError, match="pipeline"):
        render_k8s(deep, RenderConfig(engine="sglang"))
    with pytest.raises(RenderError, match="model name"):
        render_gateway(_event(), RenderConfig(gateway={"match": "model"}))
    with pytest.raises(RenderError, match="does not route"):
        render_gateway(_event(), RenderConfig(gateway={"values": {"summaries": "s"}}))
    twins = ev.model_copy(update={"plan": ev.plan.model_copy(update={"deployments": [
        ev.plan.deployments[0].model_copy(update={"id": "a.b"}), ev.plan.deployments[0].model_copy(update={"id": "a-b"})],
        "routes": []})})
    with pytest.raises(RenderError, match="both map"):
        render_k8s(twins, RenderConfig())
    assert sorted(p.name for p in out.iterdir()) == ["keep.yaml"], res.output  # untouched by the failures
    bad = CliRunner().invoke(main, ["render", "k8s", "-o", str(out)], env={"LLMFLEET_BOOTSTRAP_SERVERS": ""})
    assert bad.exit_code != 0 and "--bootstrap-servers" in bad.output


def _config(tmp: Path, doc: dict) -> Path:
    p = tmp / f"cfg-{uuid.uuid4().hex[:6]}.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_a_retired_deployment_leaves_the_directory_and_foreign_files_stay(tmp_path: Path) -> None:
    out = tmp_path / "m"
    cfg = RenderConfig()
    write_all(render_k8s(_event(), cfg), out)
    (out / "README.md").write_text("mine")
    ev = _event()
    fewer = ev.model_copy(update={"plan": ev.plan.model_copy(update={
        "deployments": ev.plan.deployments[1:], "routes": [r for r in ev.plan.routes
                                                            if r.deployment != ev.plan.deployments[0].id]})})
    write_all(render_k8s(fewer, cfg), out)
    gone = k8s_name(ev.plan.deployments[0].id)
    assert not (out / f"deployment-{gone}.yaml").exists() and (out / "README.md").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".yaml") == sorted(render_k8s(fewer, cfg))


@given(st.dictionaries(st.text("abcdefgh", min_size=1, max_size=4), st.floats(0, 1), min_size=1, max_size=16),
       st.sampled_from([1, 7, 100, 1000, 1_000_000]))
def test_weights_sum_to_the_total_within_one_unit_per_ref(fractions: dict[str, float], total: int) -> None:
    w = integer_weights(fractions, total)
    served = sum(v for v in fractions.values() if v > 0)
    if served <= 0:
        assert w == {}
        return
    assert sum(w.values()) == total and all(v > 0 for v in w.values())
    for k, v in fractions.items():
        assert abs(w.get(k, 0) / total - (v / served if v > 0 else 0.0)) < 1 / total + 1e-12


def test_gateway_weights_follow_the_plan_and_report_the_unserved() -> None:
    out = render_gateway(_event(), load_config(CONFIG))
    code = out.weights["code"]
    assert sum(code.values()) == 1000 and max(code.values()) == 667
    assert out.unserved["conversation"] == pytest.approx(0.05) and out.unserved["code"] == pytest.approx(0.0, abs=1e-9)


def test_the_docs_examples_are_what_the_render_writes(tmp_path: Path) -> None:
    for kind in ("k8s", "gateway"):
        res = CliRunner().invoke(main, ["render", kind, str(EVENT), "--config", str(CONFIG), "-o", str(tmp_path / kind)])
        assert res.exit_code == 0, res.output
        ours = {p.name: p.read_text() for p in (tmp_path / kind).iterdir()}
        docs = {p.name: p.read_text() for p in (EXAMPLES / kind).iterdir()}
        assert ours == docs, f"docs/examples/{kind} is stale: run the command in docs/deploy.md"
    guide = (REPO / "docs" / "deploy.md").read_text()
    for name in ("httproute-llmfleet-default.yaml", "scaledobject-qwen2-5-14b-instruct-h100-sxm-fp8-tp1pp1.yaml"):
        sub = "gateway" if name.startswith("httproute") else "k8s"
        assert (EXAMPLES / sub / name).read_text().strip() in guide, f"docs/deploy.md does not show {name} as rendered"


@pytest.mark.broker
async def test_the_topic_at_an_epoch(broker: str, tmp_path: Path) -> None:
    from tests.e2e.harness import produce

    topic = f"render-{uuid.uuid4().hex[:8]}.allocations"
    base = _event()
    events = [base.model_copy(update={"epoch": k, "plan": base.plan.model_copy(update={"deployments": [
        d.model_copy(update={"replicas": d.replicas + k}) for d in base.plan.deployments]})}) for k in (1, 2, 3)]
    other = base.model_copy(update={"fleet_id": "other", "epoch": 9})
    await produce(broker, topic, [e.model_dump_json().encode() for e in [*events, other]], partitions=1)
    from controller.render.source import event_from_topic

    assert (await event_from_topic(broker, topic, "default", 2)).epoch == 2
    newest = await event_from_topic(broker, topic, "default", None)
    assert newest.epoch == 3 and newest.plan.deployments[0].replicas == base.plan.deployments[0].replicas + 3
    with pytest.raises(RenderError, match="no allocation event"):
        await event_from_topic(broker, topic, "default", 7)
