"""One lab lock on the real lab: ten identical fault requests at once leave one fault; during a run, faults (API and
playbook), clear and a second run are refused naming the run; afterwards clear leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml

from chaoslab.api.operations import LabOperations
from chaoslab.api.server import create_app
from fault_state import is_baseline, node_state, wait_until
from tests.conftest import BIN, ROOT, ansible_env, run_playbook

TOKEN = "lock-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STATE_DIR = Path("/run/chaoslab/nodes/worker-1/faults")


@pytest.fixture(scope="module")
def api(lab, tmp_path_factory):
    """The API on a real server (requests in parallel, as clients make them)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(LabOperations(ROOT), TOKEN, tmp_path_factory.mktemp("api") / "api.log")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def post_fault(base: str, fault: str, body: dict) -> httpx.Response:
    return httpx.post(f"{base}/faults/{fault}", headers=AUTH, json=body, timeout=300)


def test_ten_identical_fault_requests_at_once_leave_one_fault_and_clear_leaves_nothing(api):
    assert is_baseline(node_state()) == []
    body = {"target": "workers[0]", "duration": "30s"}
    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda _: post_fault(api, "worker-pause", body), range(10)))
    codes = sorted(response.status_code for response in responses)
    assert codes.count(201) == 1, [(r.status_code, r.text[:200]) for r in responses]
    refused = [r for r in responses if r.status_code != 201]
    assert all(r.status_code in (409, 422) and "\n" not in r.json()["detail"] for r in refused)
    assert [path.name for path in STATE_DIR.glob("*.json")] == ["worker-pause.json"]
    assert json.loads((STATE_DIR / "worker-pause.json").read_text())["pid"] is not None
    assert httpx.delete(f"{api}/faults", headers=AUTH, timeout=300).status_code == 204
    assert list(STATE_DIR.glob("*.json")) == []
    assert wait_until(lambda: is_baseline(node_state()) == [], timeout=10)


def quiet_scenario(tmp_path: Path) -> Path:
    path = tmp_path / "lock-hold.yml"
    path.write_text(yaml.safe_dump({
        "name": "lock-hold", "load": {"rate": 2, "mix": [{"kind": "noop", "weight": 1}]},
        "phases": [{"name": "baseline", "duration": "120s"}, {"name": "drain", "duration": "5s"}]}))
    return path


def test_during_a_run_faults_clear_and_a_second_run_are_refused_naming_it(api, tmp_path):
    results = tmp_path / "results"
    run = subprocess.Popen([str(BIN / "chaoslab"), "run", str(quiet_scenario(tmp_path)), "--results", str(results)],
                           cwd=ROOT, env=ansible_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: any(results.glob("*/run.json")), timeout=120), "the run did not start"
        fault = post_fault(api, "worker-pause", {"target": "workers[0]", "duration": "5s"})
        assert fault.status_code == 409 and "chaoslab run lock-hold" in fault.json()["detail"], fault.text
        assert httpx.delete(f"{api}/faults", headers=AUTH, timeout=60).status_code == 409
        playbook = run_playbook("faults/worker-pause.yml", "-e", "duration=5s", check=False)
        fatal = [line for line in playbook.stdout.splitlines() if line.startswith("fatal:")]
        assert playbook.returncode == 2 and len(fatal) == 1 and "the lab is busy: chaoslab run lock-hold" in fatal[0]
        second = subprocess.run([str(BIN / "chaoslab"), "run", str(quiet_scenario(tmp_path)), "--results",
                                 str(tmp_path / "second")], cwd=ROOT, env=ansible_env(), capture_output=True,
                                text=True, timeout=120, check=False)
        assert second.returncode == 2 and "the lab is busy: chaoslab run lock-hold" in second.stderr
        assert not (tmp_path / "second").exists()
        assert list(STATE_DIR.glob("*.json")) == []  # nothing of the refused faults reached the node
    finally:
        os.kill(run.pid, signal.SIGINT)
        assert run.wait(300) == 130
    # the lock went with the run
    assert run_playbook("faults/clear.yml").returncode == 0
    assert is_baseline(node_state()) == []
