"""Lookup plugin: the extra variables given on the command line (-e name=value, -e @file, -e JSON).

The fault playbooks use it to refuse a parameter the fault does not know (a typo such as
``-e dealy=20ms`` would otherwise be ignored silently and the fault run with its default), and to check every
value against its grammar before anything templates it. The values come back as plain data: Ansible trusts
command-line extra variables as templates, so they are copied without that trust (JSON round trip).
"""

from __future__ import annotations

import json
from typing import Any

from ansible import context
from ansible.plugins.lookup import LookupBase
from ansible.utils.vars import load_extra_vars

DOCUMENTATION = """
name: chaoslab_extra_vars
short_description: the extra variables of the command line, as one mapping
description:
  - Returns a list with one mapping, the extra variables given with -e (empty when there are none).
"""


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any) -> list[Any]:
        if not context.CLIARGS.get("extra_vars"):
            return [{}]
        return [json.loads(json.dumps(dict(load_extra_vars(self._loader)), default=str))]
