"""What a user reads: a run's report, a study's report, the comparison of runs and the Grafana dashboard."""
