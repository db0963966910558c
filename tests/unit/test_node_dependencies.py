"""What lab nodes run imports with the project's own dependencies alone: VMs and hosts install the project
without the `controller` extra (Ansible, reports, the API), so a controller package imported at module level
by node code would stop a node's service."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.conftest import ROOT

# Controller-only packages (import names) of the `controller` extra.
CONTROLLER = ["ansible", "jinja2", "rich", "matplotlib", "numpy", "fastapi", "uvicorn", "fastapi_offline",
              "grafana_foundation_sdk", "netfilterqueue"]
# Everything in chaoslab.node runs on a node: the roles start some of these modules, which import the rest.
NODE_MODULES = sorted(f"chaoslab.node.{path.stem}" for path in (ROOT / "app/chaoslab/node").glob("*.py")
                      if path.stem != "__init__")


def run_without_controller(code: str) -> subprocess.CompletedProcess:
    blocker = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in CONTROLLER)
    return subprocess.run([sys.executable, "-c", blocker + code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def test_node_modules_import_without_the_controller_extra():
    for module in NODE_MODULES:
        proc = run_without_controller(f"import importlib; importlib.import_module({module!r})")
        assert proc.returncode == 0, (module, proc.stderr[-1500:])


def test_the_load_generator_cli_starts_without_the_controller_extra():
    proc = run_without_controller("from chaoslab.cli import main; main(['load', '--help'])")
    assert proc.returncode == 0 and "--metrics-port" in proc.stdout, proc.stderr[-1500:]


def test_the_node_dependencies_leave_the_controller_packages_out():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {spec.split("[")[0].split("=")[0].strip().lower() for spec in project["dependencies"]}
    assert {"celery", "kombu", "redis", "psutil", "prometheus-client", "pyyaml", "flower"} <= names
    assert not names & {"ansible-core", "matplotlib", "numpy", "fastapi", "rich", "netfilterqueue"}
    assert "controller" in project["optional-dependencies"]
