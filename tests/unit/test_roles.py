"""Every role documents its interface: argument specs in sync with defaults, and a README naming every variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if path.is_dir())


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLES)
def test_role_layout(role):
    base = ROOT / "roles" / role
    for part in ("defaults/main.yml", "tasks/main.yml", "handlers/main.yml", "meta/main.yml",
                 "meta/argument_specs.yml", "README.md"):
        assert (base / part).is_file(), f"{role}: missing {part}"


@pytest.mark.parametrize("role", ROLES)
def test_argument_spec_matches_defaults(role):
    base = ROOT / "roles" / role
    defaults = load(base / "defaults" / "main.yml")
    options = load(base / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    for name, value in defaults.items():
        assert name.startswith(f"{role}_"), f"{role}: default {name} lacks the role prefix"
        assert name in options, f"{role}: {name} is in defaults/main.yml but not in the argument spec"
        assert options[name].get("default") == value, f"{role}: {name} defaults differ"
    for name, option in options.items():
        if not option.get("required"):
            assert name in defaults, f"{role}: optional {name} has no default in defaults/main.yml"


@pytest.mark.parametrize("role", ROLES)
def test_readme_names_every_variable(role):
    base = ROOT / "roles" / role
    readme = (base / "README.md").read_text()
    for entry in load(base / "meta" / "argument_specs.yml")["argument_specs"].values():
        for name in entry.get("options", {}):
            assert f"`{name}`" in readme, f"{role}: README does not document {name}"


def test_readmes_are_generated_from_the_specs():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "role_docs.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def role_code(role: str) -> str:
    """A role's tasks, handlers, defaults, vars and templates: what decides what it does."""
    parts = ("tasks", "handlers", "defaults", "vars", "templates")
    return "\n".join(path.read_text(encoding="utf-8") for part in parts
                     for path in sorted((ROOT / "roles" / role / part).glob("*")) if path.is_file())


@pytest.mark.parametrize("role", ROLES)
def test_roles_go_by_what_a_node_can_do_not_by_the_backends_name(role):
    """lab_in_namespace, lab_installs_packages and lab_service_manager, set by each inventory, say what a node can
    do; a role that tested lab_backend would break on a backend it was not written for."""
    assert "lab_backend" not in role_code(role)


@pytest.mark.parametrize("role", ROLES)
def test_installing_a_package_and_stopping_its_service_is_written_once(role):
    """Roles that run a packaged program as a lab service use lab_service's package entry point."""
    code = role_code(role)
    if role == "lab_service":
        assert "ansible.builtin.apt:" in code and "Stop the package's own service" in code
        return
    assert "Stop the package's own service" not in code
    if "tasks_from: package" in code:
        assert "ansible.builtin.apt:" not in code
