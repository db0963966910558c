"""The Vagrant lab end to end on real VMs (make vagrant-test): provisioning by the same roles, systemd units,
a second provisioning that changes nothing, netem on a VM's real NIC, and an experiment whose checker report
comes from the VMs' ledgers. The commands a user types find the VMs with no -i."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest
import redis
import yaml

from chaoslab.experiment.ansible_runner import adhoc_json, unwrap_unsafe
from chaoslab.experiment.labs import local_up
from tests.conftest import BIN, ROOT, ansible_env, changed_tasks, recap
from tests.vagrant.conftest import BROKER, must, vagrant

pytestmark = pytest.mark.vagrant

# Each node's systemd units (chaoslab-<service>.service); a RabbitMQ lab's broker node runs RabbitMQ and its own
# epmd beside Redis (the result backend).
UNITS = {
    "redis": ["redis", "node-exporter", "lab-exporter", "redis-exporter",
              *(["epmd", "rabbitmq"] if BROKER == "rabbitmq" else [])],
    "monitor": ["http-target", "loadgen", "flower", "prometheus", "node-exporter", "lab-exporter"],
    "worker-1": ["celery-worker", "node-exporter", "lab-exporter"],
}
# The broker's own unit, the one broker-restart restarts.
BROKER_UNIT = f"chaoslab-{BROKER}.service"


def as_user(*cmd: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """A command as the README shows it: no -i, the default inventory finds the VMs."""
    env = ansible_env()
    env.pop("ANSIBLE_INVENTORY", None)
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def hostvars() -> dict:
    out = must(as_user("ansible-inventory", "--list"), "ansible-inventory")
    return json.loads(out, object_hook=unwrap_unsafe)["_meta"]["hostvars"]


def secrets() -> dict:
    return yaml.safe_load((ROOT / ".lab" / "vagrant" / "secrets.yml").read_text(encoding="utf-8"))


def connect_ms(count: int = 40) -> list[float]:
    """TCP connect times from worker-1 to Redis, in ms, measured on worker-1."""
    redis_address = hostvars()["redis"]["lab_address"]
    result = adhoc_json("worker-1", "ansible.builtin.script",
                        f"{ROOT}/tests/lab/probe.py connect {redis_address} 6379 {count} executable=/usr/bin/python3")
    return json.loads(result["worker-1"]["stdout"])["ms"]


def test_every_vm_is_provisioned(vms):
    assert sorted(vms) == ["monitor", "redis", "worker-1"]
    for host, counts in vms.items():
        assert counts["failed"] == 0 and counts["unreachable"] == 0, (host, counts)


def test_a_second_provisioning_changes_nothing(vms):
    out = must(vagrant("provision"), "second vagrant provision")
    again = recap(out)
    print("second provision:", again)
    assert sorted(again) == sorted(vms)
    assert changed_tasks(out) == [], again
    for host, counts in again.items():
        assert counts["changed"] == 0 and counts["failed"] == 0, (host, counts, out[-4000:])


def test_every_service_runs_as_a_systemd_unit(vms):
    for host, units in UNITS.items():
        names = " ".join(f"chaoslab-{unit}.service" for unit in units)
        out = must(as_user("ansible", host, "-m", "ansible.builtin.command", "-a", f"systemctl is-active {names}"),
                   f"systemctl on {host}")
        states = [line.strip() for line in out.splitlines()[1:] if line.strip()]
        assert states == ["active"] * len(units), (host, out)
    info = hostvars()
    monitor, redis_address = info["monitor"]["lab_address"], info["redis"]["lab_address"]
    assert redis.Redis(host=redis_address, password=secrets()["lab_redis_password"], socket_timeout=10).ping()
    # every target up at once, within a minute (a scrape of an emulated VM may miss its 5 s now and then)
    for _ in range(12):
        with urllib.request.urlopen(f"http://{monitor}:9090/api/v1/targets", timeout=20) as response:
            targets = json.load(response)["data"]["activeTargets"]
        down = [(t["labels"]["job"], t["labels"].get("instance"), t.get("lastError")) for t in targets
                if t["health"] != "up"]
        if targets and not down:
            break
        time.sleep(5)
    print(f"prometheus: {len(targets)} targets, down: {down}")
    # node and lab per VM; prometheus, redis, loadgen, flower; and rabbitmq on a RabbitMQ lab
    assert len(targets) == 4 + 2 * len(info) + (BROKER == "rabbitmq") and not down
    auth = b64encode(f"chaoslab:{secrets()['lab_flower_password']}".encode()).decode()
    request = urllib.request.Request(f"http://{monitor}:5555/api/workers", headers={"Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(request, timeout=20) as response:
        assert "celery@worker-1" in json.load(response)


def on_broker_node(command: str) -> str:
    """*command*'s output on the broker's VM (as root), its first line (the host's status) left out."""
    out = must(as_user("ansible", "redis", "-m", "ansible.builtin.command", "-a", command), f"{command} on redis")
    return "\n".join(out.splitlines()[1:])


def management_status(address: str, user: str, password: str) -> int:
    """The status of a GET of RabbitMQ's /api/whoami with these credentials."""
    auth = b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(f"http://{address}:15672/api/whoami", headers={"Authorization": f"Basic {auth}"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.skipif(BROKER != "rabbitmq", reason="the VMs run Redis as the broker (make vagrant-test BROKER=rabbitmq)")
def test_rabbitmq_listens_on_the_lab_address_and_knows_only_the_labs_user(vms):
    address = hostvars()["redis"]["lab_address"]
    sockets = on_broker_node("ss -H -ltnp").splitlines()
    listening = {tuple(line.split()[3].rsplit(":", 1)) for line in sockets if '"beam.smp"' in line or '"epmd"' in line}
    public = {(ip, port) for ip, port in listening if ip not in ("127.0.0.1", "[::1]")}
    # AMQP, the management API and Prometheus on the lab address; Erlang's distribution and epmd on loopback only
    assert public == {(address, "5672"), (address, "15672"), (address, "15692")}, sockets
    assert {("127.0.0.1", "25672"), ("127.0.0.1", "4369")} <= listening, sockets
    users = on_broker_node("/etc/chaoslab/rabbitmqctl list_users --silent --formatter json")
    print(f"rabbitmq on {address}: listening {sorted(listening)}; users {users}")
    assert [user["user"] for user in json.loads(users)] == ["chaoslab"]
    assert management_status(address, "chaoslab", secrets()["lab_rabbitmq_password"]) == 200
    assert management_status(address, "guest", "guest") == 401


def broker_main_pid() -> int:
    out = on_broker_node(f"systemctl show -p MainPID -p ActiveState {BROKER_UNIT}")
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert values["ActiveState"] == "active", out
    return int(values["MainPID"])


def test_a_broker_kill_sigkills_every_process_of_its_unit_and_systemd_starts_it_afresh(vms):
    """broker-restart mode=kill on a systemd unit: every process of the broker's unit is SIGKILLed (RabbitMQ's
    rabbitmq-server script and its Erlang VM alike: neither gets to shut down), the unit stays down for down_for,
    then runs a new process that clients reach."""
    before = broker_main_pid()
    must(as_user("ansible-playbook", "faults/broker-restart.yml", "-e", "mode=kill", "-e", "down_for=10s"),
         "faults/broker-restart.yml")
    window = measured_window("broker-restart")
    after = broker_main_pid()
    print(f"{BROKER_UNIT}: main pid {before} -> {after}; measured {window['effect']['measured']}")
    measured = window["effect"]["measured"]
    assert after != before and measured["restarted"] is True and measured["answering"] is True, window
    assert 9 <= measured["down_seen_s"] <= 10 + 180, window
    assert window["effect"]["effective"] is True, window
    if BROKER == "rabbitmq":
        log = on_broker_node("journalctl --no-pager -o cat -u chaoslab-rabbitmq.service --since=-15min")
        assert "SIGTERM received" not in log, log[-3000:]  # killed, not shut down


def memory_max() -> str:
    out = must(as_user("ansible", "worker-1", "-m", "ansible.builtin.command",
                       "-a", "systemctl show -p MemoryMax chaoslab-celery-worker.service"), "systemctl show")
    return next(line.split("=", 1)[1].strip() for line in out.splitlines() if line.startswith("MemoryMax="))


def test_memory_limit_sets_the_worker_units_memorymax_and_puts_it_back(vms):
    assert memory_max() == "infinity"
    must(as_user("ansible-playbook", "faults/memory-limit.yml", "-e", "limit=400MiB", "-e", "duration=120s"),
         "faults/memory-limit.yml")
    try:
        during = memory_max()
    finally:
        must(as_user("ansible-playbook", "faults/clear.yml"), "faults/clear.yml")
    print(f"worker-1 MemoryMax: {during} during memory-limit=400MiB, {memory_max()} after clear")
    assert during == str(400 * 2**20)
    assert memory_max() == "infinity"


def test_network_delay_adds_100ms_with_netem_and_reverts(vms, tmp_path):
    before = connect_ms()
    report = tmp_path / "report"
    report.mkdir()
    # A duration far past the measurement: under emulation the playbook and each probe take minutes, and the
    # fault must still be in force for every connect measured; clear.yml reverts it.
    proc = as_user("ansible-playbook", "faults/network-delay.yml", "-e", "delay=100ms", "-e", "duration=900s",
                   "-e", f"report={report}")
    must(proc, "faults/network-delay.yml")
    try:
        applied = json.loads((report / "redis-network-delay.json").read_text(encoding="utf-8"))
        during = connect_ms()
    finally:
        must(as_user("ansible-playbook", "faults/clear.yml"), "faults/clear.yml")
    after = connect_ms()
    nic = hostvars()["redis"]["lab_nic"]
    qdisc = must(as_user("ansible", "redis", "-m", "ansible.builtin.command", "-a", f"/sbin/tc qdisc show dev {nic}"),
                 "tc qdisc show")
    # netem adds a fixed 100 ms; an emulated VM's scheduling only ever adds to a connect, so the fastest of
    # 40 connects is the one to compare (the medians are shown).
    added = min(during) - min(before)
    print(f"worker-1 -> redis TCP connect, fastest (median) of 40: {min(before):.1f} ({statistics.median(before):.1f})"
          f" ms before, {min(during):.1f} ({statistics.median(during):.1f}) ms with delay=100ms (+{added:.1f} ms, "
          f"engine {applied['detail'].get('engine')}), {min(after):.1f} ({statistics.median(after):.1f}) ms after")
    assert applied["detail"]["engine"] == "netem", applied
    assert 95 <= added <= 105
    assert min(after) < min(before) + 5
    assert "c1a0:" not in qdisc and "netem" not in qdisc, qdisc


def redis_write_iops_max() -> str:
    """The unit's IOWriteIOPSMax: "<device> <iops>", or "" when unset (systemctl show prints one line per entry of
    this list, and none at all for an empty one, even with --all)."""
    out = must(as_user("ansible", "redis", "-m", "ansible.builtin.command",
                       "-a", "systemctl show -p IOWriteIOPSMax chaoslab-redis.service"), "systemctl show")
    return next((line.split("=", 1)[1].strip() for line in out.splitlines() if line.startswith("IOWriteIOPSMax=")), "")


def fault_window(fault: str) -> dict:
    """The last window of *fault*, as ``chaoslab faults`` shows it."""
    shown = must(as_user("chaoslab", "faults", "--json"), "chaoslab faults")
    return [row for row in json.loads(shown) if row["fault"] == fault][-1]


def measured_window(fault: str, timeout: float = 600) -> dict:
    """The last window of *fault* once it is over and its measurement recorded."""
    deadline = time.monotonic() + timeout
    while fault_window(fault)["in_force"] or fault_window(fault)["effect"] is None:
        assert time.monotonic() < deadline, fault_window(fault)
        time.sleep(10)
    return fault_window(fault)


def test_redis_slow_fsync_caps_the_units_disk_writes_and_lifts_it(vms):
    """Redis's data directory is an ext4 image on a loop device; the cap is the unit's IOWriteIOPSMax."""
    assert redis_write_iops_max() == ""
    mounted = must(as_user("ansible", "redis", "-m", "ansible.builtin.command", "-a",
                           "findmnt --noheadings --output SOURCE,FSTYPE --target /var/lib/chaoslab/redis"), "findmnt")
    assert "/dev/loop" in mounted and "ext4" in mounted, mounted
    must(as_user("ansible-playbook", "faults/redis-slow-fsync.yml", "-e", "iops=5", "-e", "duration=60s"),
         "faults/redis-slow-fsync.yml")
    during = redis_write_iops_max()
    window = measured_window("redis-slow-fsync")
    print(f"redis IOWriteIOPSMax {during!r} during iops=5, {redis_write_iops_max()!r} after; measured "
          f"{window['effect']['measured']}")
    assert during.startswith("/dev/loop") and during.endswith(" 5"), during
    measured = window["effect"]["measured"]
    # the fsyncs ran at the cap or below (the journal's writes pass it under cgroup v2), fast before
    assert measured["fsyncs_per_s"] <= 5 / 0.9 and measured["fsyncs_per_s_before"] >= 20, window
    assert measured["aof_enabled"] == 0 and window["effect"]["effective"] is False, window  # Redis persists nothing
    assert redis_write_iops_max() == ""


def clock_lead() -> float:
    """worker-1's wall clock's lead over Redis's (the redis VM's clock), in seconds."""
    venv = hostvars()["worker-1"]["lab_venv"]
    result = adhoc_json("worker-1", "ansible.builtin.script",
                        f"{ROOT}/tests/vagrant/clock_lead.py executable={venv}/bin/python")
    return float(json.loads(result["worker-1"]["stdout"])["lead_s"])


def test_clock_skew_steps_and_drifts_a_workers_clock_and_puts_it_back(vms):
    before = clock_lead()
    must(as_user("ansible-playbook", "faults/clock-skew.yml", "-e", "step=30s", "-e", "drift=5%", "-e",
                 "duration=90s"), "faults/clock-skew.yml")
    during = clock_lead()
    window = measured_window("clock-skew")
    after = clock_lead()
    print(f"worker-1's clock ahead of redis's: {before:.3f} s before, {during:.3f} s during step=30s drift=5%, "
          f"{after:.3f} s after; measured {window['effect']['measured']}; window {window['end'] - window['start']:.1f}"
          " s")
    assert 30 <= during - before <= 30 + 0.05 * 90 + 1
    measured = window["effect"]["measured"]
    assert abs(measured["step_s"] - 30) <= 1 and abs(measured["drift_percent"] - 5) <= 0.5, window
    assert window["effect"]["effective"] is True, window
    # lasted its 90 s of real time (the agent counts on the raw clock), recorded in true time, and the clock is back
    assert abs(after - before) <= 0.5
    assert 89 <= window["end"] - window["start"] <= 95, window


def test_a_worker_kill_experiment_is_checked_from_the_vms_ledgers(vms, tmp_path):
    results = tmp_path / "results"
    scenario = ROOT / "experiments" / "vagrant-worker-kill.yml"
    if BROKER == "rabbitmq":  # visibility_timeout is Redis's (RabbitMQ requeues a closed channel's messages itself)
        data = yaml.safe_load(scenario.read_text(encoding="utf-8"))
        del data["celery"]["visibility_timeout"]
        scenario = tmp_path / scenario.name
        scenario.write_text(yaml.safe_dump(data), encoding="utf-8")
    proc = as_user("chaoslab", "run", str(scenario), "--results", str(results), timeout=1800)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    run_dir = next(results.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    verdict = json.loads((run_dir / "verdict.json").read_text(encoding="utf-8"))
    ledgers = sorted(path.name for path in (run_dir / "ledgers").iterdir())
    print(f"run {run_dir.name}: {summary['tasks']} tasks, {summary['classes']}, verdict {verdict.get('passed')}")
    assert "worker-1.jsonl" in " ".join(ledgers) and "publish.jsonl" in " ".join(ledgers), ledgers
    assert summary["tasks"] > 100 and summary["classes"]["lost"] == 0
    assert summary["snapshot"]["broker"] == BROKER
    assert (run_dir / "report.html").exists()
    kills = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert "worker-kill" in json.dumps(kills)


def test_grafana_is_on_the_forwarded_port(vms):
    port = int(os.environ.get("LAB_GRAFANA_PORT", "3000"))
    try:
        urllib.request.urlopen("https://apt.grafana.com/gpg.key", timeout=10).close()
    except OSError as err:
        pytest.skip(f"Grafana's package repository cannot be reached from here ({err}): the grafana role skips it")
    auth = b64encode(f"admin:{secrets()['lab_grafana_admin_password']}".encode()).decode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/search?query=celery",
                                     headers={"Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(request, timeout=20) as response:
        assert json.load(response)


def test_wrong_inventory_says_which_to_use(vms):
    if local_up():
        pytest.skip("a local lab is up on this host too: -i inventory/local.yml is right for it")
    proc = as_user("ansible-playbook", "-i", "inventory/local.yml", "faults/network-delay.yml", "-e", "delay=10ms",
                   "-e", "duration=5s")
    assert proc.returncode != 0
    fatal = [line for line in proc.stdout.splitlines() if line.startswith("fatal:")]
    assert len(fatal) == 1 and "use -i inventory/vagrant.yml" in fatal[0], proc.stdout[-2000:]


def test_the_secrets_are_generated_not_defaults(vms):
    values = secrets()
    assert all(len(value) == 32 for value in values.values())
    assert Path(ROOT / ".lab" / "vagrant" / "secrets.yml").stat().st_mode & 0o077 == 0
