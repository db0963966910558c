"""The two sides of the service-manager switch render the same service (supervisor here, systemd on VMs)."""

from __future__ import annotations

import configparser

import jinja2
import pytest

from tests.conftest import ROOT

SERVICE = {
    "ansible_managed": "Ansible managed",
    "lab_service_name": "celery-worker",
    "lab_service_command": ("/opt/chaoslab/venv/bin/python -m celery -A chaoslab.node.worker_app worker"
                            " --hostname celery@worker-1"),
    "lab_service_user": "chaoslab",
    "lab_service_directory": "/var/lib/chaoslab",
    "lab_service_environment": {"CHAOSLAB_CONFIG": "/etc/chaoslab/chaoslab.yml", "B": "2"},
    "lab_service_secret_environment": {},
    "lab_etc_dir": "/etc/chaoslab",
    "lab_service_stop_signal": "TERM",
    "lab_service_stop_timeout": 20,
    "lab_service_start_seconds": 1,
    "lab_service_memory_max": "",
    "lab_service_state": "started",
    "lab_log_dir": "/var/log/chaoslab",
}


def render(name: str, **overrides: object) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "roles" / "lab_service" / "templates"),
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    return env.get_template(name).render({**SERVICE, **overrides})


def parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read_string(text)
    return parser


def test_supervisor_program():
    program = parse(render("program.conf.j2"))["program:celery-worker"]
    assert program["command"] == SERVICE["lab_service_command"]
    assert program["user"] == "chaoslab" and program["autostart"] == "true" and program["autorestart"] == "true"
    assert program["stopasgroup"] == program["killasgroup"] == "true"
    assert program["environment"] == 'B="2",CHAOSLAB_CONFIG="/etc/chaoslab/chaoslab.yml"'
    assert program["startsecs"] == "1"
    stopped = parse(render("program.conf.j2", lab_service_state="stopped"))["program:celery-worker"]
    assert stopped["autostart"] == "false"
    assert parse(render("program.conf.j2", lab_service_start_seconds=0))["program:celery-worker"]["startsecs"] == "0"


@pytest.mark.parametrize("memory_max", ["", "512M"])
def test_systemd_unit(memory_max):
    text = render("unit.service.j2", lab_service_memory_max=memory_max)
    service = parse(text)["Service"]
    assert service["ExecStart"] == SERVICE["lab_service_command"]
    assert service["User"] == "chaoslab" and service["Restart"] == "always"
    assert service["KillMode"] == "control-group" and service["KillSignal"] == "SIGTERM"
    assert text.count("Environment=") == 2 and 'Environment="CHAOSLAB_CONFIG=/etc/chaoslab/chaoslab.yml"' in text
    assert ("MemoryMax" in service) == bool(memory_max)
    assert parse(text)["Install"]["WantedBy"] == "multi-user.target"
    assert "EnvironmentFile" not in service


SECRET = {"REDIS_PASSWORD": "s3cret-value"}


def test_a_secret_goes_to_a_0600_environment_file_never_into_the_systemd_unit():
    """systemctl show prints a unit's Environment= to any user; an EnvironmentFile only by its path."""
    unit = render("unit.service.j2", lab_service_secret_environment=SECRET)
    assert "s3cret-value" not in unit
    assert parse(unit)["Service"]["EnvironmentFile"] == "/etc/chaoslab/celery-worker.env"
    environment = render("environment.j2", lab_service_secret_environment=SECRET)
    assert "REDIS_PASSWORD=s3cret-value\n" in environment
    # the supervisor program (mode 0600, root's) carries it as the service's environment
    program = parse(render("program.conf.j2", lab_service_secret_environment=SECRET))["program:celery-worker"]
    assert 'REDIS_PASSWORD="s3cret-value"' in program["environment"]
