"""Lookup plugin: '' when the inventory's lab is up, else one line naming the inventory to use.

The fault playbooks' preflight calls it with the inventory's ``lab_backend`` (local, vagrant; any other
backend, e.g. real hosts, is not checked), so that a fault run against a lab that is not up says which
inventory to use before anything is tried on a node.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = """
name: chaoslab_lab_state
short_description: whether the inventory's lab is up
description:
  - Takes the lab backend and the project directory; returns a list with one string, empty when that lab
    is up, else a one-line message naming the inventory to use.
"""


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any) -> list[Any]:
        from pathlib import Path

        from chaoslab.experiment.labs import wrong_lab

        if len(terms) != 2:
            raise AnsibleError("chaoslab_lab_state: needs the lab backend and the project directory")
        return [wrong_lab(str(terms[0]), Path(str(terms[1])))]
