"""Inventory plugin: the project's default inventory, the lab that is up.

``inventory/lab.yml`` (ansible.cfg's inventory) names the Vagrant lab's and the local lab's inventory
files; this plugin reads the Vagrant one when Vagrant has made VMs for the project, else the local one,
with that file's own plugin. ``-i inventory/local.yml`` or ``-i inventory/vagrant.yml`` picks one
explicitly (the Makefile's local targets do).
"""

from __future__ import annotations

from pathlib import Path

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin
from ansible.plugins.loader import inventory_loader

DOCUMENTATION = r"""
name: chaoslab_auto
short_description: the lab that is up, Vagrant VMs or the local lab
description:
  - Reads O(vagrant) when the project has Vagrant VMs, else O(local), with the plugin that file names.
options:
  plugin:
    description: the name of this plugin
    required: true
    choices: [chaoslab_auto]
  local:
    description: the local lab's inventory file, beside this one
    type: str
    default: local.yml
  vagrant:
    description: the Vagrant lab's inventory file, beside this one
    type: str
    default: vagrant.yml
"""

PLUGINS = {"local": "chaoslab_local", "vagrant": "chaoslab_vagrant"}


class InventoryModule(BaseInventoryPlugin):
    NAME = "chaoslab_auto"

    def verify_file(self, path: str) -> bool:
        from chaoslab.experiment.labs import names_plugin

        return bool(super().verify_file(path)) and names_plugin(path, self.NAME)

    def parse(self, inventory, loader, path: str, cache: bool = True) -> None:  # noqa: ANN001
        from chaoslab.experiment.labs import default_backend

        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        here = Path(path).resolve().parent
        backend = default_backend(here.parent)
        chosen = here / self.get_option(backend)
        plugin = inventory_loader.get(PLUGINS[backend])
        if plugin is None or not plugin.verify_file(str(chosen)):
            raise AnsibleParserError(f"{path}: {chosen} is not a {PLUGINS[backend]} inventory")
        plugin.parse(inventory, loader, str(chosen), cache)
