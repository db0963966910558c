"""The package's folders are its architecture, and the imports keep to it: node code runs on lab nodes and
imports nothing of the controller; analysis reads run directories and never drives a lab; the shared
vocabulary at the top imports neither side."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "app" / "chaoslab"
SHARED = {"chaoslab.inputs", "chaoslab.celery_settings", "chaoslab.app_spec",
          "chaoslab.units", "chaoslab.ledger", "chaoslab.broker_state", "chaoslab.clock",
          "chaoslab.fault_params", "chaoslab.fault_kinds", "chaoslab.fault_values", "chaoslab.project",
          "chaoslab.brokers", "chaoslab.triggers"}
LAB_CONTROL = {"chaoslab.experiment.lab", "chaoslab.experiment.labs", "chaoslab.experiment.lab_lock",
               "chaoslab.experiment.ansible_runner", "chaoslab.experiment.runner", "chaoslab.experiment.study",
               "chaoslab.experiment.progress", "chaoslab.experiment.redis_snapshot", "chaoslab.experiment.series",
               "chaoslab.experiment.rabbitmq_snapshot", "chaoslab.experiment.lab_broker"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path) -> set[str]:
    """Every chaoslab module a file imports, at module level or inside a function."""
    found: set[str] = set()
    known = modules()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                dotted = f"{node.module}.{alias.name}"
                found.add(dotted if dotted in known else node.module)
    return {name for name in found if name == "chaoslab" or name.startswith("chaoslab.")}


def allowed_for(module: str, target: str) -> bool:
    if module in SHARED:
        return target in SHARED
    if module.startswith("chaoslab.node."):
        return target in SHARED or target.startswith("chaoslab.node.")
    if module.startswith("chaoslab.analysis."):
        return not target.startswith(("chaoslab.api", "chaoslab.report")) and target not in LAB_CONTROL
    if module.startswith("chaoslab.report."):
        return not target.startswith("chaoslab.api") and target not in LAB_CONTROL - {"chaoslab.experiment.series"}
    return True


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_keep_the_direction(module):
    wrong = sorted(target for target in imported(modules()[module]) if not allowed_for(module, target))
    assert not wrong, f"{module} must not import {wrong}"


def test_every_module_sits_in_a_folder_that_says_where_it_runs():
    top = sorted(module_name(path) for path in PACKAGE.glob("*.py") if path.stem != "__init__")
    assert set(top) <= SHARED | {"chaoslab.cli"}, top
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert folders == {"node", "experiment", "analysis", "report", "api"}


def test_the_direction_check_catches_a_node_module_importing_the_runner(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("def f():\n    from chaoslab.experiment import runner\n    return runner\n")
    assert "chaoslab.experiment.runner" in imported(path)
    assert not allowed_for("chaoslab.node.bad", "chaoslab.experiment.runner")
    assert not allowed_for("chaoslab.analysis.bad", "chaoslab.experiment.lab")
    assert allowed_for("chaoslab.analysis.bad", "chaoslab.experiment.scenario")
