"""The generated Grafana dashboard: committed file up to date, valid for the SDK's model, sound layout and
queries; and the two Grafana provisioning templates of roles/grafana."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import combinations

import jinja2
import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import prometheus
from grafana_foundation_sdk.models.dashboard import Dashboard, RowPanel

from chaoslab.report import dashboard as generator
from tests.conftest import ROOT

PROTOTYPE_PANELS = ["Workers online", "Tasks executing", "Average run time", "Prefetch time", "Prefetched tasks",
                    "Success ratio", "Failure ratio"]
OTHER_PANELS = ["Queue depth and unacked", "Publish rate vs completion rate", "Publish errors", "End-to-end latency",
                "Worker restarts and OOM kills", "Node CPU", "Node memory", "Node network", "Redis ops",
                "Redis memory", "Broker publish, deliver and ack rates", "Broker connections"]
TEMPLATE_VARS = {
    "ansible_managed": "Ansible managed",
    "grafana_prometheus_address": "198.18.0.20",
    "grafana_prometheus_port": 9090,
    "grafana_dashboards_dir": "/var/lib/grafana/dashboards/chaoslab",
}


@pytest.fixture(scope="module")
def built():
    return generator.build()


def panels(data: dict) -> list[dict]:
    return [panel for panel in data["panels"] if panel["type"] != "row"]


# (a) the committed file is what the code generates

def test_committed_json_is_generated(built):
    path = ROOT / generator.DASHBOARD_FILE
    assert path.read_text(encoding="utf-8") == generator.render(built), "run: python -m chaoslab.report.dashboard"
    assert json.loads(path.read_text(encoding="utf-8")) == built
    assert generator.render(built).endswith("}\n")


def test_check_command_passes():
    proc = subprocess.run([sys.executable, "-m", "chaoslab.report.dashboard", "--check"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_check_reports_a_difference(tmp_path, monkeypatch, capsys):
    target = tmp_path / generator.DASHBOARD_FILE
    target.parent.mkdir(parents=True)
    target.write_text("{}\n")
    monkeypatch.setenv("CHAOSLAB_HOME", str(tmp_path))
    assert generator.main(["--check"]) == 1
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "differs" in message
    assert generator.main([]) == 0 and generator.main(["--check"]) == 0
    assert target.read_text() == generator.render(generator.build())


# (b) valid for the SDK's model; datasource, ids, titles, grid

def test_loads_back_into_the_sdk_model(built):
    register_default_plugins()  # typed options and Prometheus queries instead of untyped dicts
    model = Dashboard.from_json(built)
    assert model.uid == "celery-chaos-lab" and model.title == "celery-chaos-lab"
    assert model.refresh == "5s" and model.time.from_val == "now-15m" and model.time.to == "now"
    queries = [target for panel in model.panels if not isinstance(panel, RowPanel) for target in panel.targets]
    assert queries and all(isinstance(query, prometheus.Dataquery) for query in queries)
    again = json.loads(json.dumps(model, cls=JSONEncoder))
    # Nothing the model does not know is dropped: panels and variables survive the round trip whole.
    assert again["panels"] == built["panels"] and again["templating"] == built["templating"]
    # The SDK's AnnotationQuery has no Prometheus fields (titleFormat, step, ...): those alone are dropped.
    for mine, theirs in zip(built["annotations"]["list"], again["annotations"]["list"], strict=True):
        assert theirs.items() <= mine.items()


def test_every_query_names_the_lab_datasource(built):
    for panel in panels(built):
        assert panel["datasource"] == {"type": "prometheus", "uid": "chaoslab-prometheus"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "chaoslab-prometheus", panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert all(ref_ids) and len(set(ref_ids)) == len(ref_ids), panel["title"]
    assert built["templating"]["list"][0]["datasource"]["uid"] == "chaoslab-prometheus"
    assert built["annotations"]["list"][0]["datasource"]["uid"] == "chaoslab-prometheus"


def test_ids_titles_descriptions_and_units(built):
    ids = [panel["id"] for panel in built["panels"]]
    assert len(set(ids)) == len(ids) and all(isinstance(value, int) and value > 0 for value in ids)
    for panel in built["panels"]:
        assert panel.get("title"), panel
    for panel in panels(built):
        assert panel.get("description"), panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]


def test_grid_within_24_columns_without_overlaps(built):
    boxes = []
    for panel in built["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["y"] >= 0 and pos["w"] > 0 and pos["h"] > 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        boxes.append((panel["title"], pos))
    for (one, a), (other, b) in combinations(boxes, 2):
        apart = (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                 or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"])
        assert apart, f"{one} overlaps {other}"
    rows = [panel for panel in built["panels"] if panel["type"] == "row"]
    assert rows and all(row["gridPos"]["w"] == 24 and not row["collapsed"] and not row["panels"] for row in rows)


def test_node_variable_and_fault_annotation(built):
    (variable,) = built["templating"]["list"]
    assert variable["name"] == "node" and variable["type"] == "query"
    assert variable["query"] == "label_values(chaoslab_worker_up, node)"
    assert variable["multi"] is True and variable["includeAll"] is True
    (annotation,) = built["annotations"]["list"]
    assert annotation["name"] == "Faults" and annotation["expr"] == "chaoslab_fault_active == 1"
    assert annotation["step"] == "5s" and annotation["useValueForTime"] is False
    assert "{{fault}}" in annotation["titleFormat"] and "{{target}}" in annotation["titleFormat"]
    assert generator.annotation_query() == generator.annotation_query(built) == "chaoslab_fault_active == 1"


# (c) the panels

def test_every_panel_is_there(built):
    titles = [panel["title"] for panel in panels(built)]
    assert len(set(titles)) == len(titles)
    assert set(PROTOTYPE_PANELS + OTHER_PANELS) <= set(titles)


def test_panel_details(built):
    by_title = {panel["title"]: panel for panel in panels(built)}
    workers = by_title["Workers online"]
    assert workers["type"] == "stat"
    assert [target["legendFormat"] for target in workers["targets"]][1] == "Flower (stale after SIGKILL)"
    assert [target["expr"] for target in workers["targets"]] == [
        'sum(chaoslab_worker_up{node=~"$node"})', "sum(flower_worker_online)"]
    for ratio in ("Success ratio", "Failure ratio"):
        assert by_title[ratio]["fieldConfig"]["defaults"]["unit"] == "percentunit"
    queue = by_title["Queue depth and unacked"]
    assert [(t["expr"], t["legendFormat"]) for t in queue["targets"]] == [
        ('redis_key_size{key="celery"}', "queue (Redis)"), ('redis_key_size{key="unacked"}', "unacked (Redis)"),
        ("sum(rabbitmq_queue_messages_ready)", "ready (RabbitMQ)"),
        ("sum(rabbitmq_queue_messages_unacked)", "unacked (RabbitMQ)")]
    assert by_title["Node memory"]["fieldConfig"]["defaults"]["unit"] == "bytes"
    assert by_title["Node network"]["fieldConfig"]["defaults"]["unit"] == "Bps"
    assert "CPUs" in by_title["Node CPU"]["fieldConfig"]["defaults"]["unit"]
    latency = [target["expr"] for target in by_title["End-to-end latency"]["targets"]]
    assert any(expr.startswith("histogram_quantile(0.95,") for expr in latency)
    assert any(expr.startswith("histogram_quantile(0.5,") for expr in latency)


# (d) the queries, ready to run against Prometheus

def balanced(expr: str) -> bool:
    pairs, stack, quote = {")": "(", "]": "[", "}": "{"}, [], None
    for char in expr:
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack and quote is None


def test_panel_queries_fill_in_the_variables(built):
    queries = generator.panel_queries(built, "worker-1")
    assert len(queries) == sum(len(panel["targets"]) for panel in panels(built))
    assert {title for title, _ in queries} == {panel["title"] for panel in panels(built)}
    for title, expr in queries:
        assert "$" not in expr, (title, expr)
        assert balanced(expr), (title, expr)
    exprs = [expr for _, expr in queries]
    assert 'sum(chaoslab_worker_up{node=~"worker-1"})' in exprs
    assert any("[1m]" in expr for expr in exprs)
    assert not any("rate_interval" in expr for expr in exprs)


def test_each_broker_panel_asks_both_brokers_and_a_lab_only_its_own(built):
    """The broker panels have a query for Redis and one for RabbitMQ; a lab's view leaves out the other broker's."""
    every = generator.panel_queries(built, "worker-1")
    redis = generator.panel_queries(built, "worker-1", "redis")
    rabbit = generator.panel_queries(built, "worker-1", "rabbitmq")
    for title in ("Queue depth and unacked", "Broker publish, deliver and ack rates", "Broker connections"):
        mine = {lab: [expr for name, expr in queries if name == title] for lab, queries in (("redis", redis),
                                                                                             ("rabbitmq", rabbit))}
        assert mine["redis"] and mine["rabbitmq"], title
        assert not any("rabbitmq_" in expr for expr in mine["redis"]), mine["redis"]
        assert all("rabbitmq_" in expr or "redis_connected_clients" in expr for expr in mine["rabbitmq"]), mine
    # every other panel is the same on both labs
    assert set(every) == set(redis) | set(rabbit) and len(set(redis) & set(rabbit)) == len(every) - 11


def test_panel_queries_refuse_unknown_variables():
    data = {"panels": [{"type": "timeseries", "title": "x", "targets": [{"expr": "up{job=~\"$job\"}"}]}]}
    with pytest.raises(ValueError, match=r"\$job"):
        generator.panel_queries(data, "worker-1")


def test_balanced_checker():
    assert balanced('sum(rate(x{a="b)"}[1m]))') and not balanced("sum(rate(x[1m])") and not balanced('x{a="b}')


# (e) the provisioning templates

def render_template(name: str, **overrides: object) -> dict:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "roles" / "grafana" / "templates"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return yaml.safe_load(env.get_template(name).render({**TEMPLATE_VARS, **overrides}))


def test_datasource_template():
    data = render_template("datasource.yml.j2")
    assert data["apiVersion"] == 1
    (source,) = data["datasources"]
    assert source["uid"] == "chaoslab-prometheus" == generator.DATASOURCE_UID
    assert source["name"] == "Prometheus" and source["type"] == "prometheus"
    assert source["url"] == "http://198.18.0.20:9090"
    assert source["isDefault"] is True and source["editable"] is False
    assert source["jsonData"]["timeInterval"] == "5s"


def test_dashboards_template():
    data = render_template("dashboards.yml.j2")
    assert data["apiVersion"] == 1
    (provider,) = data["providers"]
    assert provider["type"] == "file" and provider["folder"] == "celery-chaos-lab"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/chaoslab"
    assert provider["allowUiUpdates"] is False


@pytest.mark.parametrize("name", ["datasource.yml.j2", "dashboards.yml.j2"])
def test_templates_need_their_variables(name):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "roles" / "grafana" / "templates"),
                             undefined=jinja2.StrictUndefined)
    with pytest.raises(jinja2.UndefinedError):
        env.get_template(name).render({"ansible_managed": "Ansible managed"})


def test_grafana_unit_override_template():
    """Grafana's settings for the lab: the lab address, no anonymous access; the admin password from an
    EnvironmentFile of mode 0600, never in the unit (systemctl show prints a unit's Environment= to anyone)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "roles" / "grafana" / "templates"),
                             undefined=jinja2.StrictUndefined)
    text = env.get_template("override.conf.j2").render(ansible_managed="managed", lab_address="198.18.0.20",
                                                        grafana_port=3000, lab_grafana_admin_password="s3cret",
                                                        grafana_secrets_file="/etc/grafana/celery-chaos-lab.env")
    settings = dict(line.removeprefix("Environment=").strip('"').split("=", 1) for line in text.splitlines()
                    if line.startswith("Environment="))
    assert "[Service]" in text.splitlines()
    assert settings == {"GF_SERVER_HTTP_ADDR": "198.18.0.20", "GF_SERVER_HTTP_PORT": "3000",
                        "GF_SECURITY_ADMIN_USER": "admin",
                        "GF_AUTH_ANONYMOUS_ENABLED": "false", "GF_AUTH_DISABLE_LOGIN_FORM": "false",
                        "GF_USERS_ALLOW_SIGN_UP": "false"}
    assert "EnvironmentFile=/etc/grafana/celery-chaos-lab.env" in text.splitlines()
    assert "s3cret" not in text
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("override.conf.j2").render(ansible_managed="m", lab_address="x", grafana_port=1)
