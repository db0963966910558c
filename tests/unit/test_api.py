"""The HTTP API without a lab: authentication, refusals before anything runs, the OpenAPI document, and the
interactive docs page rendered by headless Chromium (its assets are served locally)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest
import uvicorn
from fastapi.testclient import TestClient

from chaoslab.api.operations import LabOperations
from chaoslab.api.server import create_app
from tests import report_browser
from tests.conftest import ROOT

TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def log(tmp_path):
    return tmp_path / "api.log"


@pytest.fixture
def client(log):
    return TestClient(create_app(LabOperations(ROOT), TOKEN, log))


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
@pytest.mark.parametrize(("method", "path", "body"), [
    ("get", "/faults", None), ("get", "/faults/active", None),
    ("post", "/faults/network-delay", {"duration": "10s", "params": {"delay": "5ms"}}),
    ("delete", "/faults", None), ("delete", "/faults/redis/network-delay", None), ("get", "/runs", None),
    ("post", "/runs", {"scenario": "demo.yml"}), ("delete", "/runs/x", None)])
def test_every_operation_needs_the_token(client, log, headers, method, path, body):
    response = client.request(method.upper(), path, headers=headers, json=body)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    record = json.loads(log.read_text().splitlines()[-1])
    assert record["path"] == path and record["status"] == 401 and record["token"] in ("none", "invalid")


def test_fault_kinds_come_from_their_declarations(client):
    kinds = {kind["name"]: kind for kind in client.get("/faults", headers=AUTH).json()}
    assert set(kinds) >= {"network-delay", "network-loss", "memory-limit", "redis-restart", "worker-kill"}
    delay = kinds["network-delay"]["parameters"]
    assert delay["delay"]["required"] is True and delay["distribution"]["choices"][0] == "uniform"
    assert delay["peers"]["default"] == "redis:workers"


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/faults/no-such-fault", {"duration": "10s"}, 404, "unknown fault 'no-such-fault'"),
    ("/faults/network-delay", {"duration": "10s", "params": {"delay": "20"}}, 422,
     "network-delay: delay: '20' has no unit (use ms, s, m or h)"),
    ("/faults/network-delay", {"duration": "10s", "params": {"dealy": "20ms"}}, 422,
     "network-delay: unknown parameter dealy (allowed: delay, jitter"),
    ("/faults/network-delay", {"duration": "-1s", "params": {"delay": "20ms"}}, 422,
     "network-delay: duration: '-1s' is negative"),
    ("/faults/network-loss", {"duration": "10s", "params": {"loss": "120%"}}, 422, "loss: '120%' is above 100%"),
    ("/faults/worker-pause", {"duration": "0s"}, 422, "worker-pause: duration must be above 0"),
    ("/faults/network-delay", {"duration": "10s", "params": {"delay": "{{ lookup('pipe', 'id') }}"}}, 422,
     "network-delay: delay: '{{ lookup('pipe', 'id') }}' is not a duration"),
    ("/faults/network-delay", {"duration": "10s", "target": "redis; id", "params": {"delay": "5ms"}}, 422,
     "target: 'redis; id' is not an inventory pattern"),
    ("/faults/network-delay", {"duration": "10s", "target": "localhost", "params": {"delay": "5ms"}}, 422,
     "network-delay: target: 'localhost' matches no node of the inventory"),
])
def test_bad_requests_are_refused_with_the_playbooks_message(client, path, body, status, message):
    response = client.post(path, headers=AUTH, json=body)
    assert response.status_code == status and message in response.json()["detail"], response.text


def test_runs_only_from_experiments(client):
    for scenario in ("../pyproject.toml", "/etc/passwd", "nope.yml"):
        response = client.post("/runs", headers=AUTH, json={"scenario": scenario})
        assert response.status_code == 404 and "no scenario" in response.json()["detail"]
    assert client.get("/runs/..%2F..%2Fetc", headers=AUTH).status_code == 404


def test_openapi_document_describes_every_operation(client):
    document = client.get("/openapi.json").json()
    operations = {(method, path) for path, item in document["paths"].items() for method in item}
    assert {("get", "/faults"), ("post", "/faults/{fault}"), ("get", "/faults/active"),
            ("delete", "/faults/{node}/{fault}"), ("delete", "/faults"), ("post", "/runs"), ("get", "/runs"),
            ("get", "/runs/{run_id}"), ("get", "/runs/{run_id}/report"), ("delete", "/runs/{run_id}")} <= operations
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


SHOWN_OPERATION = re.compile(
    r'<span class="opblock-summary-method">(?P<method>\w+)</span>.*?data-path="(?P<path>[^"]+)"')
"""An operation as Swagger UI lists it: its method and its path."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(not report_browser.available(), reason="chromium is not installed")
def test_the_docs_page_renders_in_headless_chromium(log):
    port = free_port()
    app = create_app(LabOperations(ROOT), TOKEN, log)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        page = report_browser.load(f"http://127.0.0.1:{port}/docs")
    finally:
        server.should_exit = True
        thread.join(10)
    # Swagger UI ran (its JavaScript and style sheet, served by the API itself) and lists every operation
    assert page.errors == []
    assert '<h1 class="title">celery-chaos-lab<' in page.dom, page.dom[:2000]
    shown = {(found["method"].lower(), found["path"]) for found in SHOWN_OPERATION.finditer(page.dom)}
    documented = {(method, path) for path, item in app.openapi()["paths"].items() for method in item}
    assert shown == documented and len(shown) >= 10
    requested = [json.loads(line)["path"] for line in log.read_text().splitlines()]
    assert {"/assets/swagger-ui-bundle.js", "/assets/swagger-ui.css", "/openapi.json"} <= set(requested)
