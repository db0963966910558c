"""The lab's HTTP API: the same faults, playbooks and runner a user runs from the command line."""
