"""Reading a run's recorded history and judging it: the checker, the run's figures and the verdict.

Analysis works on a run directory alone: it never drives a lab."""
