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
