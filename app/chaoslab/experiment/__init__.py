"""The controller's side of a run: scenario files, the runner and its handle on a lab (playbooks, lock,
inventory), the Redis snapshot and Prometheus series it collects, and studies of many runs."""
