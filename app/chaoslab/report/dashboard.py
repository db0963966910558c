"""The lab's Grafana dashboard, generated from code with grafana-foundation-sdk.

    python -m chaoslab.report.dashboard          # writes monitoring/grafana/dashboards/celery-chaos-lab.json
    python -m chaoslab.report.dashboard --check  # exit 1 when that file differs from build()

:func:`build` returns the dashboard as plain JSON data; Grafana loads the committed file through the
file provider of ``roles/grafana/templates/dashboards.yml.j2``, and every query names the datasource of
uid ``chaoslab-prometheus`` that ``datasource.yml.j2`` provisions. :func:`panel_queries` lists every
panel's PromQL with the template variables filled in, so tests can run each one against a real
Prometheus; :func:`annotation_query` gives the fault annotation's expression.

Metric contract
---------------
The exporters provide these series. Every series carries ``node``, the inventory node name (set by
the scrape configuration). Jobs:

``node``
    prometheus-node-exporter on every node: ``node_network_transmit_bytes_total{device}``,
    ``node_network_receive_bytes_total{device}`` and the rest of its series; and from its textfile
    collector ``chaoslab_fault_active{fault,target}``, 1 while a fault is applied (the "Faults"
    annotation).
``redis``
    redis_exporter for the redis node: ``redis_connected_clients``, ``redis_commands_processed_total``,
    ``redis_commands_total{cmd}``, ``redis_memory_used_bytes`` and ``redis_key_size{db,key}`` (key ``celery``: the
    queue; ``unacked``: the hash of delivered, unacknowledged messages).
``rabbitmq``
    RabbitMQ's Prometheus plugin on a RabbitMQ lab's broker node, its series summed over the node's queues and
    channels: ``rabbitmq_queue_messages_ready``, ``rabbitmq_queue_messages_unacked``, ``rabbitmq_connections``,
    ``rabbitmq_channel_messages_published_total``, ``rabbitmq_channel_messages_delivered_ack_total`` and
    ``rabbitmq_channel_messages_acked_total``. A broker panel has a query for each broker; the lab's broker answers
    its own.
``flower``
    Flower's ``/metrics``: ``flower_worker_online{worker}``,
    ``flower_worker_number_of_currently_executing_tasks{worker}``, ``flower_worker_prefetched_tasks{worker,task}``,
    ``flower_task_prefetch_time_seconds{worker,task}``, the histogram ``flower_task_runtime_seconds{worker,task}``
    and ``flower_events_total{worker,type,task}``. Flower keeps a worker "online" until its heartbeat
    times out, so it lags behind a SIGKILL.
``loadgen``
    the load generator: ``chaoslab_loadgen_published_total{kind,outcome}`` (outcome ``ok`` or not) and
    ``chaoslab_loadgen_publish_errors_total{kind}``.
``lab``
    the lab's own exporter on every node: ``chaoslab_worker_up``, ``chaoslab_worker_processes``,
    ``chaoslab_worker_restarts_total``, ``chaoslab_node_cpu_seconds_total``, ``chaoslab_node_memory_bytes``,
    ``chaoslab_node_memory_limit_bytes``, ``chaoslab_node_oom_kills_total`` and the histogram
    ``chaoslab_task_e2e_seconds`` (publish to completion, ``_bucket{le}``, ``_sum``, ``_count``).

The template variable ``node`` (multi-select, with "All") narrows the panels that use ``node=~"$node"``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    AnnotationQuery,
    DashboardCursorSync,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from chaoslab.project import find_project

DASHBOARD_UID = "celery-chaos-lab"
DASHBOARD_TITLE = "celery-chaos-lab"
DATASOURCE_UID = "chaoslab-prometheus"
DASHBOARD_FILE = Path("monitoring/grafana/dashboards/celery-chaos-lab.json")
NODE_VARIABLE_QUERY = "label_values(chaoslab_worker_up, node)"
FAULT_ANNOTATION = "Faults"
FAULT_EXPR = "chaoslab_fault_active == 1"
RATE_INTERVAL = "1m"  # what panel_queries puts for $__rate_interval

REF_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
GRID_WIDTH = 24

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel and its legend."""

    expr: str
    legend: str
    broker: str | None = None
    """The lab broker whose lab answers the query (redis, rabbitmq); None: every lab."""


@dataclass(frozen=True)
class PanelSpec:
    """A panel: what it shows (targets), how (kind, unit) and its size on the 24-column grid."""

    title: str
    description: str
    targets: tuple[Target, ...]
    unit: str
    kind: Literal["timeseries", "stat"] = "timeseries"
    width: int = 12
    height: int = 8
    max_value: float | None = None
    thresholds: tuple[tuple[float | None, str], ...] = ()  # (from value, colour); the first from None


def _ratio(event_type: str) -> str:
    """Share of finished tasks (succeeded or failed, from Flower's events) that are of ``event_type``."""
    finished = 'sum(rate(flower_events_total{type=~"task-succeeded|task-failed"}[$__rate_interval]))'
    return (f'sum(rate(flower_events_total{{type="{event_type}"}}[$__rate_interval])) '
            f"/ clamp_min({finished}, 1e-9)")


def _e2e_quantile(quantile: str) -> str:
    return (f"histogram_quantile({quantile}, sum by (le) "
            '(rate(chaoslab_task_e2e_seconds_bucket{node=~"$node"}[$__rate_interval])))')


def _redis_rate(command: str, legend: str) -> Target:
    """Calls of one Redis command per second (kombu's Redis transport: LPUSH publishes, BRPOP delivers, HDEL of
    the unacked hash acknowledges), on a Redis lab."""
    return Target(f'sum(rate(redis_commands_total{{cmd="{command}"}}[$__rate_interval]))',
                  f"{legend} (Redis {command.upper()})", "redis")


def _rabbitmq_rate(counter: str, legend: str) -> Target:
    """One of RabbitMQ's channel message counters per second, on a RabbitMQ lab."""
    return Target(f"sum(rate(rabbitmq_channel_messages_{counter}_total[$__rate_interval]))", f"{legend} (RabbitMQ)",
                  "rabbitmq")


ROWS: tuple[tuple[str, tuple[PanelSpec, ...]], ...] = (
    ("Workers and tasks", (
        PanelSpec("Workers online",
                  "Celery workers up per the lab's exporter, against Flower's view, which keeps a SIGKILLed "
                  "worker online until its heartbeat times out.",
                  (Target('sum(chaoslab_worker_up{node=~"$node"})', "Lab exporter"),
                   Target("sum(flower_worker_online)", "Flower (stale after SIGKILL)")),
                  "short", kind="stat", width=8, height=6, thresholds=((None, "red"), (1, "green"))),
        PanelSpec("Success ratio", "Succeeded / finished (succeeded or failed) tasks, from Flower's events.",
                  (Target(_ratio("task-succeeded"), "succeeded"),),
                  "percentunit", kind="stat", width=8, height=6, max_value=1,
                  thresholds=((None, "red"), (0.95, "orange"), (0.99, "green"))),
        PanelSpec("Failure ratio", "Failed / finished (succeeded or failed) tasks, from Flower's events.",
                  (Target(_ratio("task-failed"), "failed"),),
                  "percentunit", kind="stat", width=8, height=6, max_value=1,
                  thresholds=((None, "green"), (0.01, "orange"), (0.05, "red"))),
        PanelSpec("Tasks executing", "Tasks each worker is executing now (Flower).",
                  (Target("sum by (worker) (flower_worker_number_of_currently_executing_tasks)", "{{worker}}"),),
                  "short"),
        PanelSpec("Average run time", "Mean task run time per task name over the rate window (Flower).",
                  (Target("sum by (task) (rate(flower_task_runtime_seconds_sum[$__rate_interval])) / "
                          "sum by (task) (rate(flower_task_runtime_seconds_count[$__rate_interval]))", "{{task}}"),),
                  "s"),
        PanelSpec("Prefetch time", "How long the last task waited in a worker's prefetch buffer (Flower).",
                  (Target("flower_task_prefetch_time_seconds", "{{task}} @ {{worker}}"),),
                  "s"),
        PanelSpec("Prefetched tasks", "Tasks reserved by a worker but not started yet (Flower).",
                  (Target("flower_worker_prefetched_tasks", "{{task}} @ {{worker}}"),),
                  "short"),
    )),
    ("Broker and load", (
        PanelSpec("Queue depth and unacked",
                  "Messages waiting in the broker's queues, and messages delivered to a worker and not acknowledged "
                  "yet: Redis' task queue and unacked hash, or RabbitMQ's ready and unacknowledged messages (all of "
                  "its queues).",
                  (Target('redis_key_size{key="celery"}', "queue (Redis)", "redis"),
                   Target('redis_key_size{key="unacked"}', "unacked (Redis)", "redis"),
                   Target("sum(rabbitmq_queue_messages_ready)", "ready (RabbitMQ)", "rabbitmq"),
                   Target("sum(rabbitmq_queue_messages_unacked)", "unacked (RabbitMQ)", "rabbitmq")),
                  "short"),
        PanelSpec("Broker publish, deliver and ack rates",
                  "Messages the broker took in, handed to consumers and had acknowledged, per second: RabbitMQ's "
                  "channel counters, or the Redis commands kombu's transport uses for each (LPUSH, BRPOP, HDEL of "
                  "the unacked hash; the result backend's commands are others).",
                  (_redis_rate("lpush", "publish"), _redis_rate("brpop", "deliver"), _redis_rate("hdel", "ack"),
                   _rabbitmq_rate("published", "publish"), _rabbitmq_rate("delivered_ack", "deliver"),
                   _rabbitmq_rate("acked", "ack")),
                  "suffix: msg/s"),
        PanelSpec("Broker connections",
                  "Clients connected to Redis (the broker; on a RabbitMQ lab the result backend) and RabbitMQ's "
                  "connections (workers, load generator, Flower).",
                  (Target("sum(redis_connected_clients)", "Redis clients"),
                   Target("sum(rabbitmq_connections)", "RabbitMQ connections", "rabbitmq")),
                  "short"),
        PanelSpec("Publish rate vs completion rate",
                  "Tasks the load generator published successfully against tasks that succeeded on the workers.",
                  (Target('sum(rate(chaoslab_loadgen_published_total{outcome="ok"}[$__rate_interval]))', "published"),
                   Target('sum(rate(flower_events_total{type="task-succeeded"}[$__rate_interval]))', "completed")),
                  "suffix: tasks/s"),
        PanelSpec("Publish errors", "Publishes that failed or timed out, per kind of error.",
                  (Target("sum by (kind) (rate(chaoslab_loadgen_publish_errors_total[$__rate_interval]))",
                          "{{kind}}"),),
                  "suffix: errors/s"),
        PanelSpec("End-to-end latency", "Publish to completion, p50 and p95, from the lab's histogram.",
                  (Target(_e2e_quantile("0.5"), "p50"), Target(_e2e_quantile("0.95"), "p95")),
                  "s"),
    )),
    ("Nodes", (
        PanelSpec("Worker restarts and OOM kills", "Worker restarts and OOM kills per node over the rate window.",
                  (Target('sum by (node) (increase(chaoslab_worker_restarts_total{node=~"$node"}[$__rate_interval]))',
                          "restarts {{node}}"),
                   Target('sum by (node) (increase(chaoslab_node_oom_kills_total{node=~"$node"}[$__rate_interval]))',
                          "OOM kills {{node}}")),
                  "short"),
        PanelSpec("Node CPU", "CPU used by each node's processes (its cgroup), in CPUs.",
                  (Target("sum by (node) (rate(chaoslab_node_cpu_seconds_total[$__rate_interval]))", "{{node}}"),),
                  "suffix: CPUs"),
        PanelSpec("Node memory", "Memory used by each node's processes (its cgroup).",
                  (Target("chaoslab_node_memory_bytes", "{{node}}"),),
                  "bytes"),
        PanelSpec("Node network", "Bytes sent and received per node, loopback excluded.",
                  (Target('sum by (node) (rate(node_network_transmit_bytes_total{device!="lo"}[$__rate_interval]))',
                          "tx {{node}}"),
                   Target('sum by (node) (rate(node_network_receive_bytes_total{device!="lo"}[$__rate_interval]))',
                          "rx {{node}}")),
                  "Bps"),
        PanelSpec("TCP retransmissions", "Segments each node's TCP sent again (node_exporter's netstat): loss on the "
                  "wire makes the sender resend.",
                  (Target('sum by (node) (rate(node_netstat_Tcp_RetransSegs{node=~"$node"}[$__rate_interval]))',
                          "{{node}}"),),
                  "pps"),
    )),
    ("Redis", (
        PanelSpec("Redis ops", "Commands Redis processes per second.",
                  (Target("rate(redis_commands_processed_total[$__rate_interval])", "{{node}}"),), "ops"),
        PanelSpec("Redis memory", "Memory Redis uses for its data.",
                  (Target("redis_memory_used_bytes", "{{node}}"),), "bytes"),
    )),
)


class Prebuilt(cogbuilder.Builder[T], Generic[T]):
    """A builder for an object made directly (for a model the SDK's builders cannot fill in)."""

    def __init__(self, built: T) -> None:
        self._built = built

    def build(self) -> T:
        return self._built


class PrometheusAnnotation(AnnotationQuery):
    """The SDK's AnnotationQuery plus the Prometheus annotation fields its model lacks.

    Grafana's Prometheus datasource reads ``expr`` and ``step`` (moved into its target when loaded),
    ``titleFormat``, ``tagKeys``, ``textFormat`` and ``useValueForTime`` at the annotation's top level.
    """

    def __init__(self, *, step: str, title_format: str, tag_keys: str, text_format: str = "",
                 use_value_for_time: bool = False, **fields: Any) -> None:
        super().__init__(**fields)
        self.step = step
        self.title_format = title_format
        self.tag_keys = tag_keys
        self.text_format = text_format
        self.use_value_for_time = use_value_for_time

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "step": self.step, "titleFormat": self.title_format,
                "tagKeys": self.tag_keys, "textFormat": self.text_format,
                "useValueForTime": self.use_value_for_time}


def datasource() -> DataSourceRef:
    return DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)


def _query(target: Target, ref_id: str) -> prometheus.Dataquery:
    return (prometheus.Dataquery().expr(target.expr).legend_format(target.legend).ref_id(ref_id)
            .range().datasource(datasource()))


def _thresholds(steps: tuple[tuple[float | None, str], ...]) -> dashboard_builders.ThresholdsConfig:
    return (dashboard_builders.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE)
            .steps([Threshold(value=value, color=color) for value, color in steps]))


def _stat_panel(spec: PanelSpec) -> stat.Panel:
    panel = (stat.Panel().graph_mode(common.BigValueGraphMode.AREA).color_mode(common.BigValueColorMode.VALUE)
             .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if spec.thresholds:
        panel.thresholds(_thresholds(spec.thresholds))
    return panel


def _timeseries_panel() -> timeseries.Panel:
    legend = (common_builders.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
              .placement(common.LegendPlacement.BOTTOM).show_legend(True))
    tooltip = (common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
               .sort(common.SortOrder.DESCENDING))
    return timeseries.Panel().legend(legend).tooltip(tooltip).fill_opacity(10).min(0)


def panel(spec: PanelSpec, panel_id: int) -> stat.Panel | timeseries.Panel:
    """The SDK builder of one panel; its position is left to the dashboard builder's grid layout."""
    builder = _stat_panel(spec) if spec.kind == "stat" else _timeseries_panel()
    builder.id(panel_id).title(spec.title).description(spec.description).datasource(datasource())
    builder.unit(spec.unit).span(spec.width).height(spec.height)
    if spec.max_value is not None:
        builder.min(0).max(spec.max_value)
    for index, target in enumerate(spec.targets):
        builder.with_target(_query(target, REF_IDS[index]))
    return builder


def node_variable() -> dashboard_builders.QueryVariable:
    return (dashboard_builders.QueryVariable("node").label("Node").query(NODE_VARIABLE_QUERY).datasource(datasource())
            .multi(True).include_all(True).all_value(".*").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC).current(VariableOption(selected=True, text=["All"], value=["$__all"])))


def fault_annotation() -> Prebuilt[AnnotationQuery]:
    return Prebuilt(PrometheusAnnotation(
        name=FAULT_ANNOTATION, datasource=datasource(), enable=True, hide=False, icon_color="red", expr=FAULT_EXPR,
        step="5s", title_format="{{fault}} on {{target}}", tag_keys="fault,target", use_value_for_time=False))


def dashboard_builder() -> dashboard_builders.Dashboard:
    builder = (dashboard_builders.Dashboard(DASHBOARD_TITLE).uid(DASHBOARD_UID)
               .description("Celery task queues under faults: workers, queue, load, nodes and Redis.")
               .tags(["celery", "chaos", "chaoslab"]).readonly().tooltip(DashboardCursorSync.CROSSHAIR)
               .time("now-15m", "now").refresh("5s").with_variable(node_variable()).annotation(fault_annotation()))
    next_id = 1
    for title, specs in ROWS:
        builder.with_row(dashboard_builders.Row(title).id(next_id))
        next_id += 1
        for spec in specs:
            builder.with_panel(panel(spec, next_id))
            next_id += 1
    return builder


def build() -> dict[str, Any]:
    """The dashboard as plain JSON data (the SDK's model through its JSONEncoder)."""
    return json.loads(json.dumps(dashboard_builder().build(), cls=JSONEncoder))


def render(dashboard: dict[str, Any]) -> str:
    """The file's text: indented, keys sorted, with a trailing newline."""
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _substitute(expr: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise ValueError(f"unknown template variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def target_brokers() -> dict[tuple[str, str], str]:
    """(panel title, PromQL as written) -> the lab broker that answers it, for the targets of one broker only."""
    return {(spec.title, target.expr): target.broker for _, specs in ROWS for spec in specs
            for target in spec.targets if target.broker is not None}


def panel_queries(dashboard: dict[str, Any], node: str, broker: str | None = None) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, with $node and $__rate_interval filled in; with
    *broker*, only the targets a lab of that broker answers (not the other broker's)."""
    values = {"node": node, "__rate_interval": RATE_INTERVAL}
    brokers = target_brokers()
    return [(item["title"], _substitute(target["expr"], values))
            for item in dashboard.get("panels", []) if item.get("type") != "row"
            for target in item.get("targets", [])
            if broker is None or brokers.get((item["title"], target["expr"]), broker) == broker]


def annotation_query(dashboard: dict[str, Any] | None = None) -> str:
    """The PromQL of the "Faults" annotation (of ``dashboard``, else of :func:`build`)."""
    annotations = (dashboard or build())["annotations"]["list"]
    return next(item["expr"] for item in annotations if item["name"] == FAULT_ANNOTATION)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaoslab.report.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help=f"compare {DASHBOARD_FILE} with the code, change nothing")
    args = parser.parse_args(argv)
    root = find_project()
    if root is None:
        parser.error("cannot find the project (a directory with ansible.cfg and playbooks/)")
    path = root / DASHBOARD_FILE
    text = render(build())
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            state = "is missing" if current is None else "differs from the code"
            print(f"{DASHBOARD_FILE} {state}: run python -m chaoslab.report.dashboard", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
