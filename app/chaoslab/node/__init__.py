"""What runs on a lab node: the Celery app and its tasks, the worker's ledger hooks, the load generator and
its publisher, the fault agent and its faults, the node's exporter and the HTTP target.

Nodes install the project without the ``controller`` extra, so nothing here imports the controller's
packages (experiment, analysis, report, api) or their dependencies."""
