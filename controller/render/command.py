"""`llmfleet render k8s | gateway`: thin click wrappers over controller/render/."""
from __future__ import annotations

import asyncio
from pathlib import Path

import click

from controller.render.engines import RenderError


def _event(source: Path | None, bootstrap: str | None, topic: str | None, fleet: str, epoch: int | None):
    from controller.render.source import event_from_file, event_from_topic

    if source is not None:
        return event_from_file(source, fleet=fleet, epoch=epoch or 1)
    if not bootstrap:
        raise RenderError("give an event or plan file, or --bootstrap-servers (LLMFLEET_BOOTSTRAP_SERVERS) "
                          "to read the allocation topic")
    from controller.common.settings import Settings

    return asyncio.run(event_from_topic(bootstrap, topic or Settings().topics.allocations, fleet, epoch))


def _common(f):
    f = click.option("--epoch", type=int, default=None, help="the topic's event at this epoch (default: newest)")(f)
    f = click.option("--fleet", default="default", show_default=True)(f)
    f = click.option("--topic", default=None, help="allocation topic (default: the settings')")(f)
    f = click.option("--bootstrap-servers", envvar="LLMFLEET_BOOTSTRAP_SERVERS", default=None)(f)
    f = click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     default=None, help="render config (YAML/JSON; schemas/json/render_config.schema.json)")(f)
    f = click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
                     help="directory to write (replaced as a whole; files not rendered by llmfleet are kept)")(f)
    f = click.argument("source", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))(f)
    return f


@click.group()
def render() -> None:
    """Write a plan as Kubernetes manifests (k8s) or Gateway API routes (gateway). SOURCE is an
    allocation event or plan JSON file; without it the allocation topic is read."""


@render.command("k8s")
@_common
@click.option("--autoscaler", type=click.Choice(["none", "keda", "hpa"]), default=None,
              help="also a KEDA ScaledObject or an HPA per Deployment on llmfleet_transition_replicas")
@click.option("--engine", type=click.Choice(["vllm", "sglang"]), default=None)
def k8s(source: Path | None, out_dir: Path, config_path: Path | None, bootstrap_servers: str | None,
        topic: str | None, fleet: str, epoch: int | None, autoscaler: str | None, engine: str | None) -> None:
    """One Deployment and Service per llmfleet deployment (and ScaledObjects or HPAs)."""
    from controller.render.k8s import render_k8s
    from controller.render.source import load_config, write_all

    try:
        cfg = load_config(config_path)
        cfg = cfg.model_copy(update={k: v for k, v in (("autoscaler", autoscaler), ("engine", engine)) if v})
        ev = _event(source, bootstrap_servers, topic, fleet, epoch)
        paths = write_all(render_k8s(ev, cfg), out_dir)
    except RenderError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"fleet {ev.fleet_id} epoch {ev.epoch}: {len(paths)} files in {out_dir}")


@render.command("gateway")
@_common
@click.option("--match", type=click.Choice(["header", "model"]), default=None,
              help="select a query type by a request header, or by the requested model name")
@click.option("--gateway", "gateway_name", default=None, help="the Gateway the HTTPRoute attaches to")
def gateway(source: Path | None, out_dir: Path, config_path: Path | None, bootstrap_servers: str | None,
            topic: str | None, fleet: str, epoch: int | None, match: str | None, gateway_name: str | None) -> None:
    """An InferencePool per llmfleet deployment and HTTPRoutes that split each query type over
    them by the plan's fractions."""
    from controller.render.gateway import render_gateway
    from controller.render.source import load_config, write_all

    try:
        cfg = load_config(config_path)
        g = cfg.gateway.model_copy(update={k: v for k, v in (("match", match), ("gateway", gateway_name)) if v})
        cfg = cfg.model_copy(update={"gateway": g})
        ev = _event(source, bootstrap_servers, topic, fleet, epoch)
        out = render_gateway(ev, cfg)
        paths = write_all(out.files, out_dir)
    except RenderError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"fleet {ev.fleet_id} epoch {ev.epoch}: {len(paths)} files in {out_dir}")
    for qt, share in sorted(out.unserved.items()):
        if share > 1e-9:
            click.echo(f"  {qt}: the plan leaves {share:.1%} unserved; the route spreads it over the pools "
                       "in proportion", err=True)
