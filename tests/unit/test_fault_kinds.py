"""Adding a fault kind takes its declaration and its node code, nothing else: the playbook, the role's entry
point and argument spec, the docs table, the API's schema and every check follow from the declaration."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools import fault_files

from chaoslab.fault_kinds import DURATION, KINDS, FaultKind, Param
from chaoslab.fault_params import check, request
from chaoslab.fault_values import Value
from chaoslab.node import fault_agent
from chaoslab.node.fault_record import Detail, Fault, Node
from tests.conftest import ROOT

# --- the new kind's node code: write a file, and remove it again ----------------------------------------------------

def touch(values: dict[str, Any], node: Node) -> Fault:
    path = Path(str(values["path"]))

    def apply() -> Detail:
        path.write_text(node.name, encoding="ascii")
        return {"path": str(path)}

    return Fault("file-touch", {"path": str(path)}, apply, untouch)


def untouch(detail: Detail) -> None:
    Path(detail["path"]).unlink(missing_ok=True)


def absolute_path(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path")
    return value


TOUCH = FaultKind("file-touch", "Write a file on the node", target="workers[0]",
                  params=(Param("path", Value("path", absolute_path), None, "The file to write."), DURATION),
                  apply="tests.unit.test_fault_kinds:touch", revert="tests.unit.test_fault_kinds:untouch")


@pytest.fixture
def declared(monkeypatch):
    """The new kind declared beside the project's own, as a line in fault_kinds.KINDS would."""
    monkeypatch.setitem(KINDS, TOUCH.name, TOUCH)
    return TOUCH


def test_its_parameters_are_checked_from_the_declaration(declared):
    assert check("file-touch", {"path": "/tmp/x", "duration": "5s"}) == {"path": "/tmp/x", "duration": 5.0}
    with pytest.raises(ValueError, match=r"^file-touch: path is required$"):
        check("file-touch", {})
    with pytest.raises(ValueError, match=r"^file-touch: unknown parameter mode \(allowed: path, duration\)$"):
        check("file-touch", {"path": "/tmp/x", "mode": "all"})
    groups = {"all": ["worker-1", "redis"], "workers": ["worker-1"]}
    assert request("file-touch", "workers", {"path": "/tmp/x"}, groups) == {
        "path": "/tmp/x", "duration": "", "target": "worker-1"}
    assert declared.schema()["parameters"]["path"] == {
        "type": "str", "required": True, "value": "path", "description": "The file to write."}


def test_its_files_are_made_from_the_declaration(declared, tmp_path):
    files = fault_files.rendered(ROOT)
    plays = yaml.safe_load(files["faults/file-touch.yml"])
    assert plays[0]["vars"] == {"fault_name": "file-touch", "fault_target": "{{ target | default('workers[0]') }}"}
    assert plays[1]["tasks"][0]["vars"]["fault_params"] == {"path": "{{ path | default('') }}",
                                                            "duration": "{{ duration | default('') }}"}
    entry = yaml.safe_load(files["roles/fault/tasks/file_touch.yml"])
    assert entry[0]["vars"] == {"fault_name": "file-touch", "fault_agent_params": "{{ fault_params }}"}
    spec = yaml.safe_load(files[fault_files.SPECS])["argument_specs"]["file_touch"]
    assert spec["options"]["fault_params"]["options"]["path"]["required"] is True
    assert "#### file-touch" in files[fault_files.DOCS]
    # the project's own files are untouched by it, and stale only in what the new kind adds
    assert set(fault_files.stale(ROOT)) == {"faults/file-touch.yml", "roles/fault/tasks/file_touch.yml",
                                            fault_files.SPECS, fault_files.DOCS}

    # Ansible reads the generated playbook and role in a copy of the project
    copy = tmp_path / "project"
    for part in ("faults", "roles", "plugins", "docs", "ansible.cfg"):
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy)(ROOT / part, copy / part)
    for path, text in files.items():
        (copy / path).write_text(text, encoding="utf-8")
    (copy / "hosts.ini").write_text("[workers]\nworker-1\n", encoding="ascii")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "--syntax-check", "-i", "hosts.ini",
                           "faults/file-touch.yml"], cwd=copy, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_the_node_agent_applies_and_clear_reverts_it(declared, tmp_path, capsys):
    target = tmp_path / "touched"
    common = ["--node", "worker-1", "--state-dir", str(tmp_path / "state"), "--textfile-dir", str(tmp_path / "tf"),
              "--events", str(tmp_path / "events.jsonl")]
    assert fault_agent.main([*common, "file-touch", f"path={target}"]) == 0
    assert target.read_text(encoding="ascii") == "worker-1"
    assert (tmp_path / "state" / "file-touch.json").is_file()  # held until clear, which reverts it
    assert fault_agent.main([*common, "clear", "only=file-touch"]) == 0
    assert not target.exists() and not (tmp_path / "state" / "file-touch.json").exists()
    assert '"cleared": ["file-touch"]' in capsys.readouterr().out
