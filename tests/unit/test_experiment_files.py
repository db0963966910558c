"""The scenario files shipped in experiments/: each loads, states a hypothesis, and every fault has one."""

import pytest

from chaoslab.experiment.scenario import fault_playbooks, load_scenario
from tests.conftest import ROOT

EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yml"))
NOT_FAULTS = {"clear", "preflight"}
FAULTS = sorted(path.stem for path in (ROOT / "faults").glob("*.yml") if path.stem not in NOT_FAULTS)


def test_there_are_scenario_files_and_fault_playbooks():
    assert EXPERIMENTS, "no experiments/*.yml"
    assert FAULTS, "no fault playbooks in faults/"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[path.name for path in EXPERIMENTS])
def test_scenario_file_loads_and_has_a_hypothesis(path):
    scenario = load_scenario(path, ROOT)
    assert scenario.hypothesis, f"{path.name}: no hypothesis"


def test_every_fault_playbook_is_a_fault_the_loader_knows():
    assert sorted(fault_playbooks(ROOT)) == FAULTS


@pytest.mark.parametrize("fault", FAULTS)
def test_every_fault_has_a_scenario_named_after_it(fault):
    path = ROOT / "experiments" / f"{fault}.yml"
    assert path.is_file(), f"no scenario file experiments/{fault}.yml for faults/{fault}.yml"
    scenario = load_scenario(path, ROOT)
    assert scenario.name == fault
    assert scenario.fault_phase is not None and scenario.fault_phase.fault.playbook == fault
    assert scenario.hypothesis, f"experiments/{fault}.yml: no hypothesis"
