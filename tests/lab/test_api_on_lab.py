"""The HTTP API on the local lab: a fault started, seen and reverted through it; refused without the token;
a schema-based fuzz run finds no server error and leaves no fault behind."""

from __future__ import annotations

import statistics

import pytest
import schemathesis
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from chaoslab.api.operations import LabOperations
from chaoslab.api.server import create_app
from fault_state import is_baseline, node_state, probe, settled_node_state
from tests.conftest import ROOT


def token() -> str:
    return yaml.safe_load((ROOT / ".lab" / "local" / "secrets.yml").read_text())["lab_api_token"]


@pytest.fixture
def client(lab, tmp_path):
    return TestClient(create_app(LabOperations(ROOT), token(), tmp_path / "api.log"))


def connect_ms() -> float:
    return statistics.median(probe("worker-1", "connect", "198.18.0.10", 6379, 10)["ms"])


def test_a_fault_started_listed_and_reverted_through_the_api(client):
    auth = {"Authorization": f"Bearer {token()}"}
    baseline = connect_ms()
    started = client.post("/faults/network-delay", headers=auth,
                          json={"target": "redis", "duration": "120s", "params": {"delay": "100ms"}})
    assert started.status_code == 201, started.text
    (report,) = started.json()["nodes"]
    assert report["node"] == "redis" and report["detail"]["engine"] in ("nfqueue", "netem")
    assert connect_ms() - baseline >= 95  # in force on the node
    active = client.get("/faults/active", headers=auth).json()
    assert [(f["node"], f["fault"]) for f in active] == [("redis", "network-delay")]
    assert active[0]["deadline"] == pytest.approx(report["start"] + 120, abs=1)
    assert client.delete("/faults/redis/network-delay", headers=auth).status_code == 204
    assert client.get("/faults/active", headers=auth).json() == []
    assert connect_ms() <= baseline + 2
    assert is_baseline(node_state()) == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-the-token"}])
def test_without_the_token_nothing_happens(client, headers):
    before = settled_node_state()
    response = client.post("/faults/worker-pause", headers=headers, json={"duration": "30s"})
    assert response.status_code == 401
    assert client.delete("/faults", headers=headers).status_code == 401
    assert node_state() == before


def test_a_fuzz_run_finds_no_server_error_and_leaves_no_fault(client):
    auth = {"Authorization": f"Bearer {token()}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures = []
    # runs (which take minutes and the whole lab) are fuzzed up to the point of refusal: only their GETs here
    operations = schema.include(path_regex="^/faults").include(method="GET", path_regex="^/runs")
    for result in operations.get_all_operations():
        operation = result.ok()

        @settings(max_examples=8, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def exercise(case: schemathesis.Case) -> None:
            response = case.call(headers=auth)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.path} {case.path_parameters} {case.body} -> "
                                f"{response.status_code}: {response.text}")

        exercise()
    assert client.delete("/faults", headers=auth).status_code == 204
    assert failures == []
    assert client.get("/faults/active", headers=auth).json() == []
    assert is_baseline(node_state()) == []
