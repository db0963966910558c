"""The local lab, for real: namespaces, cgroups, services, Redis security, idempotence, bad input."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from chaoslab.experiment.lab import LabControl, lab_info
from chaoslab.node.loadgen import LoadGenerator, LoadProfile, MixEntry
from chaoslab.node.publisher import Publisher
from lab_state import (
    netns_inode,
    process_cgroups,
    process_netns_inode,
    service_pid,
    service_processes,
    snapshot,
    supervisorctl,
)
from tests.conftest import BIN, ROOT, ansible_env, recap, run_playbook

NODE_SERVICES = [("redis", "redis"), ("monitor", "http-target"), ("worker-1", "celery-worker"),
                 ("worker-2", "celery-worker")]


def secrets() -> dict:
    return yaml.safe_load((ROOT / ".lab" / "local" / "secrets.yml").read_text())


def test_ping_and_facts_run_inside_each_node(lab):
    proc = subprocess.run(
        [str(BIN / "ansible"), "all", "-m", "ansible.builtin.setup", "-a", "filter=ansible_all_ipv4_addresses",
         "--tree", "/tmp/chaoslab-test-facts"],
        cwd=ROOT, env=ansible_env(), capture_output=True, text=True, check=True,
    )
    assert proc.returncode == 0
    for node in ("redis", "monitor", "worker-1", "worker-2"):
        facts = json.loads(Path(f"/tmp/chaoslab-test-facts/{node}").read_text())["ansible_facts"]
        # Inside the node: its own lab address and nothing of the host's.
        assert facts["ansible_all_ipv4_addresses"] == [lab[node]["lab_address"]]
    shutil.rmtree("/tmp/chaoslab-test-facts")
    ping = subprocess.run([str(BIN / "ansible"), "all", "-m", "ansible.builtin.ping"], cwd=ROOT, env=ansible_env(),
                          capture_output=True, text=True, check=False)
    assert ping.returncode == 0, ping.stdout
    assert ping.stdout.count("pong") == 4


@pytest.mark.parametrize(("node", "program"), NODE_SERVICES)
def test_service_processes_live_in_their_node(lab, node, program):
    processes = service_processes(node, program)
    if program == "celery-worker":
        assert len(processes) >= 3, "a prefork worker with concurrency 2 has a main process and 2 children"
    expected_inode = netns_inode(lab[node]["lab_netns"])
    for proc in processes:
        assert process_netns_inode(proc.pid) == expected_inode, f"{proc} is not in {node}'s namespace"
        groups = process_cgroups(proc.pid)
        for controller in ("memory", "cpu", "pids"):
            key = controller if controller in groups else ""
            assert groups[key] == f"/chaoslab/{node}", f"{proc} {controller} cgroup is {groups[key]}"


def test_redis_requires_the_password_and_listens_on_the_lab_address_only(lab):
    address = lab["redis"]["lab_address"]
    # From the monitor node, as a client on the lab network: no password -> NOAUTH.
    probe = (
        "import redis,sys\n"
        f"r = redis.Redis(host='{address}', port=6379, socket_timeout=3)\n"
        "try:\n    r.ping()\nexcept redis.AuthenticationError as e:\n    print('NOAUTH', e)\n    sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    proc = subprocess.run(["ip", "netns", "exec", lab["monitor"]["lab_netns"], str(BIN / "python"), "-c", probe],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NOAUTH" in proc.stdout or "Authentication required" in proc.stdout
    # With the lab's password it answers (from the controller, on the bridge).
    assert redis.Redis(host=address, password=secrets()["lab_redis_password"], socket_timeout=3).ping()
    # The lab's Redis listens on its lab address only: not on the host's loopback, not on the node's.
    pid = service_pid("redis", "redis")
    listening = subprocess.run(["ip", "netns", "exec", lab["redis"]["lab_netns"], "ss", "-ltnpH"],
                               capture_output=True, text=True, check=True).stdout
    redis_sockets = [line.split()[3] for line in listening.splitlines() if f"pid={pid}," in line]
    assert redis_sockets == [f"{address}:6379"]
    with socket.socket() as sock:
        sock.settimeout(2)
        if sock.connect_ex(("127.0.0.1", 6379)) == 0:
            # Something listens on the host's loopback: it must not be the lab's Redis.
            with pytest.raises(redis.RedisError):
                redis.Redis(host="127.0.0.1", password=secrets()["lab_redis_password"], socket_timeout=2).ping()


def test_secrets_are_generated_private_and_not_defaults(lab):
    path = ROOT / ".lab" / "local" / "secrets.yml"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    values = secrets()
    for key in ("lab_redis_password", "lab_flower_password", "lab_grafana_admin_password", "lab_api_token"):
        assert len(values[key]) == 32 and values[key] not in ("admin", "password", "changeme")
    ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT, check=False)
    assert ignored.returncode == 0, ".lab/ must be git-ignored"


def test_demo_burst_runs_every_kind_on_two_worker_nodes(lab):
    proc = subprocess.run([str(BIN / "chaoslab"), "demo", "--per-kind", "10"], cwd=ROOT, env=ansible_env(),
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {line.split("│")[1].strip(): line for line in proc.stdout.splitlines() if line.count("│") >= 4}
    for kind in ("noop", "sleep", "http_request", "cpu", "memory"):
        cells = [cell.strip() for cell in rows[kind].split("│")[2:-1]]
        succeeded = [int(cell) for cell in cells[:-1]]
        assert len([count for count in succeeded if count > 0]) >= 2, rows[kind]
        assert cells[-1] == "0", f"{kind} had failures: {rows[kind]}"


def test_site_second_run_changes_nothing(lab):
    """The first lab test of a session (tests/lab/conftest.py): the lab fixture's site.yml was the first run."""
    proc = run_playbook("playbooks/site.yml")
    counts = recap(proc.stdout)
    assert set(counts) == {"redis", "monitor", "worker-1", "worker-2"}
    for host, host_counts in counts.items():
        assert host_counts["changed"] == 0, f"{host}: {host_counts}"
        assert host_counts["failed"] == 0


def test_any_celery_setting_reaches_the_worker_and_takes_effect(lab):
    """Settings outside the lab's usual handful, under Celery's own names: the changed settings file restarts the
    worker, which runs with them (inspect conf), and worker_max_tasks_per_child really replaces pool processes; site.yml
    without them puts the defaults back."""
    control = LabControl(lab_info())
    settings = {"worker_max_tasks_per_child": 2, "task_acks_on_failure_or_timeout": False,
                "worker_cancel_long_running_tasks_on_connection_loss": True, "worker_prefetch_multiplier": 1,
                "broker_transport_options": {"visibility_timeout": 45, "polling_interval": 0.5}}
    written_file = Path("/etc/chaoslab/nodes/worker-1/celery-worker.yml")
    before = service_pid("worker-1", "celery-worker")
    try:
        proc = run_playbook("playbooks/site.yml", "--limit", "worker-1", "-e",
                            json.dumps({"celery_worker_settings": settings}))
        assert recap(proc.stdout)["worker-1"]["changed"] >= 1
        written = yaml.safe_load(written_file.read_text())["celery"]
        assert written["worker_prefetch_multiplier"] == 1 and written["worker_max_tasks_per_child"] == 2
        assert service_pid("worker-1", "celery-worker") != before
        assert given_once_ready(control) is not None
        conf = control._inspect("conf")["celery@worker-1"]
        assert conf["worker_max_tasks_per_child"] == 2 and conf["task_acks_on_failure_or_timeout"] is False
        assert conf["worker_cancel_long_running_tasks_on_connection_loss"] is True
        # the given mapping wins over the role's default visibility_timeout (3600)
        assert conf["broker_transport_options"]["visibility_timeout"] == 45
        assert conf["broker_transport_options"]["polling_interval"] == 0.5
        children = {proc.pid for proc in service_processes("worker-1", "celery-worker")[1:]}
        load_for_seconds(4)
        after = {proc.pid for proc in service_processes("worker-1", "celery-worker")[1:]}
        assert children - after, "no pool process was replaced after its second task"
    finally:
        run_playbook("playbooks/site.yml", "--limit", "worker-1")
    assert given_once_ready(control) is not None
    assert "worker_max_tasks_per_child" not in control._inspect("conf")["celery@worker-1"]["chaoslab_given"]
    assert yaml.safe_load(written_file.read_text())["celery"]["worker_prefetch_multiplier"] == 4


def load_for_seconds(seconds: float) -> None:
    """No-op tasks at 20/s from the controller, for a while."""
    profile = LoadProfile(rate=20, mix=(MixEntry("noop"),), duration=seconds, publish_timeout=2.0)
    LoadGenerator(profile, Publisher(lab_info().broker_url(), 2.0), None).run()
    time.sleep(2)


def given_once_ready(control: LabControl, timeout: float = 60.0) -> dict[str, Any] | None:
    """The settings the workers report once every worker answers (a restarted worker answers when ready)."""
    deadline = time.monotonic() + timeout
    while (given := control.workers_given()) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    return given


def test_a_run_applies_celery_settings_only_when_the_workers_run_others(lab):
    control = LabControl(lab_info())
    workers = control.info.worker_hostnames
    plays: list[dict[str, Any] | None] = []
    play = control._play

    def recorded(path: str, extra: dict[str, Any] | None = None, tags: str | None = None) -> None:
        plays.append(extra)
        play(path, extra, tags)

    control._play = recorded  # type: ignore[method-assign]
    settings = {"worker_prefetch_multiplier": 1}
    try:
        control.prepare(settings)
        assert plays[-1]["celery_worker_settings"] == settings
        assert given_once_ready(control) == {worker: settings for worker in workers}
        pid = service_pid("worker-1", "celery-worker")
        control.prepare(settings)  # as the workers say they run: no settings play, no restart
        assert plays[-1] == {}
        assert service_pid("worker-1", "celery-worker") == pid
        control.prepare({"worker_prefetch_multiplier": 2})
        assert plays[-1] == {"celery_worker_settings": {"worker_prefetch_multiplier": 2}}
    finally:
        control.prepare({})
        control.background_load()  # prepare stopped the load: the lab's other tests find it running
    assert given_once_ready(control) == {worker: {} for worker in workers}


def bad_inventory(tmp_path: Path, address: str = "198.18.0.10", bridge: str = "chaoslab0") -> str:
    text = (ROOT / "inventory" / "local.yml").read_text()
    path = tmp_path / "local.yml"
    text = re.sub(r"address: 198\.18\.0\.10\b", f"address: {address}", text)
    path.write_text(text.replace("bridge: chaoslab0", f"bridge: {bridge}"))
    shutil.copytree(ROOT / "inventory" / "group_vars", tmp_path / "group_vars")  # an inventory comes with these
    return str(path)


FOREIGN_BRIDGE = "clforeign0"


BAD_LAB_INPUT = {
    "workers-0": (["playbooks/lab-up.yml"], {"LAB_WORKERS": "0"}, "worker count must be 1 to 32, got 0"),
    "workers-33": (["playbooks/lab-up.yml"], {"LAB_WORKERS": "33"}, "worker count must be 1 to 32, got 33"),
    "address-outside-subnet": (
        ["playbooks/lab-up.yml", "-i", "{bad_inventory}"], {},
        "node redis: address 192.0.2.10 is outside the lab subnet 198.18.0.0/24",
    ),
    "bridge-is-lo": (
        ["playbooks/lab-up.yml", "-i", "{bridge:lo}"], {},
        "refusing to use the host's interface lo: it exists and the lab did not make it",
    ),
    "bridge-not-the-labs": (
        ["playbooks/lab-up.yml", "-i", "{bridge:" + FOREIGN_BRIDGE + "}"], {},
        f"refusing to use the host's interface {FOREIGN_BRIDGE}: it exists and the lab did not make it",
    ),
    "unknown-pool": (
        ["playbooks/site.yml", "-e", '{"celery_worker_settings": {"worker_pool": "custom"}}'], {},
        "celery_worker_settings: worker_pool: must be one of prefork, eventlet, gevent, solo, processes, threads, "
        "got 'custom'",
    ),
    "pool-the-node-lacks": (
        ["playbooks/site.yml", "-e", '{"celery_worker_settings": {"worker_pool": "gevent"}}'], {},
        "celery_worker_settings: worker_pool: gevent cannot run on this node (No module named 'gevent')",
    ),
    "negative-prefetch": (
        ["playbooks/site.yml", "-e", '{"celery_worker_settings": {"worker_prefetch_multiplier": -1}}'], {},
        "celery_worker_settings: worker_prefetch_multiplier: must be >= 0, got -1",
    ),
    "unknown-celery-setting": (
        ["playbooks/site.yml", "-e", '{"celery_worker_settings": {"task_acks_lat": true}}'], {},
        "celery_worker_settings: task_acks_lat: unknown Celery setting (did you mean task_acks_late?)",
    ),
    "lab-owned-setting": (
        ["playbooks/site.yml", "-e", '{"celery_worker_settings": {"broker_url": "redis://198.18.0.99:6379/0"}}'], {},
        "celery_worker_settings: broker_url: the lab sets it (the lab points every worker at its own broker)",
    ),
    "setting-of-the-wrong-type": (
        ["playbooks/site.yml", "-e", '{"celery_worker_settings": {"worker_max_memory_per_child": "200MB"}}'], {},
        "celery_worker_settings: worker_max_memory_per_child: must be a whole number, got '200MB'",
    ),
    "transport-key-renamed": (
        ["playbooks/site.yml", "-e",
         '{"celery_worker_settings": {"broker_transport_options": {"global_keyprefix": "app:"}}}'], {},
        "celery_worker_settings: broker_transport_options: global_keyprefix: the lab reads the broker's keys",
    ),
    "rabbitmq-listener-on-every-address": (
        ["playbooks/site.yml", "-e", '{"rabbitmq_settings": {"listeners.tcp.2": "0.0.0.0:5672"}}'],
        {"LAB_BROKER": "rabbitmq"},
        "rabbitmq_settings: 'listeners.tcp.2' is not a setting the lab lets you change",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_LAB_INPUT))
def test_bad_input_gets_one_line_error_and_changes_nothing(lab, tmp_path, case):
    args, env, message = BAD_LAB_INPUT[case]
    if "{bad_inventory}" in args:
        args = [bad_inventory(tmp_path, "192.0.2.10") if arg == "{bad_inventory}" else arg for arg in args]
    args = [bad_inventory(tmp_path, bridge=arg[8:-1]) if arg.startswith("{bridge:") else arg for arg in args]
    nodes = ["redis", "monitor", "worker-1", "worker-2"]
    if case == "bridge-not-the-labs":  # a bridge of the host's own, with the name the inventory gives
        subprocess.run(["ip", "link", "add", FOREIGN_BRIDGE, "type", "bridge"], check=True)
    try:
        before = snapshot(nodes)
        proc = run_playbook(*args, env=env, check=False)
    finally:
        if case == "bridge-not-the-labs":
            still_there = subprocess.run(["ip", "link", "show", FOREIGN_BRIDGE], capture_output=True, check=False)
            subprocess.run(["ip", "link", "delete", FOREIGN_BRIDGE], check=False)
            assert still_there.returncode == 0, "the lab removed a bridge it did not make"
    assert proc.returncode != 0
    fatal = [line for line in proc.stdout.splitlines() if line.startswith("fatal:")]
    assert fatal, proc.stdout[-3000:]
    assert any(message in line for line in fatal), fatal
    if message.startswith(("celery_worker_settings", "rabbitmq_settings")) and case != "pool-the-node-lacks":
        # refused before any node's play
        ran = [line for line in proc.stdout.splitlines() if line.startswith("TASK [")]
        assert ran and all("Check" in line for line in ran), f"site.yml did more than check before refusing: {ran}"
    assert snapshot(nodes) == before
    assert all(supervisorctl(node, "status").returncode == 0 for node in nodes)
