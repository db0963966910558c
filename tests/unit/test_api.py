"""The HTTP API without a lab: authentication, refusals before anything runs, the OpenAPI document, and the
interactive docs page rendered by headless Chromium (its assets are served locally)."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from chaoslab.api.operations import LabOperations
from chaoslab.api.server import create_app
from tests import report_browser
from tests.conftest import ROOT
from tests.unit.test_report import png_pixels

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(not report_browser.available(), reason="chromium is not installed")
def test_the_docs_page_renders_in_headless_chromium(log, tmp_path):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(LabOperations(ROOT), TOKEN, log), host="127.0.0.1",
                                          port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        url = f"http://127.0.0.1:{port}/docs"
        dom = report_browser.dump_dom(url)
        shot = report_browser.screenshot(url, tmp_path / "docs.png")
    finally:
        server.should_exit = True
        thread.join(10)
    # Swagger UI ran (its JavaScript, served by the API itself) and drew every operation
    assert dom.count('class="opblock ') >= 10 and "celery-chaos-lab" in dom, dom[:2000]
    pixels = png_pixels(shot.png)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    assert shot.errors == []
    requested = [json.loads(line)["path"] for line in log.read_text().splitlines()]
    assert "/assets/swagger-ui-bundle.js" in requested and "/openapi.json" in requested
