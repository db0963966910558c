"""Live figures for the runner's progress display: published (load generator), completed and failed (task events)."""

from __future__ import annotations

import re
import threading
import urllib.request
from collections import Counter

from chaoslab.experiment.lab import LabInfo, client_app

PUBLISHED = re.compile(r'^chaoslab_loadgen_published_total\{[^}]*outcome="(?P<outcome>\w+)"[^}]*\} (?P<value>\S+)$',
                       re.MULTILINE)


def published(info: LabInfo, timeout: float = 1.0) -> Counter[str]:
    """Tasks the load generator tried to publish, by outcome (empty when it cannot be reached)."""
    url = f"http://{info.monitor_address}:{info.loadgen_metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode()
    except OSError:
        return Counter()
    counts: Counter[str] = Counter()
    for match in PUBLISHED.finditer(text):
        counts[match["outcome"]] += int(float(match["value"]))
    return counts


class TaskEvents(threading.Thread):
    """Counts task-started, -succeeded, -failed and -retried events from the workers, until stopped."""

    def __init__(self, info: LabInfo) -> None:
        super().__init__(name="task-events", daemon=True)
        self.app = client_app(info, "chaoslab-progress")
        self.counts: Counter[str] = Counter()
        self._halt = threading.Event()

    def _on_event(self, event: dict) -> None:
        kind = event.get("type", "")
        if kind.startswith("task-"):
            self.counts[kind.removeprefix("task-")] += 1

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                with self.app.connection_for_read() as connection:
                    receiver = self.app.events.Receiver(connection, handlers={"*": self._on_event})
                    for _ in receiver.itercapture(limit=None, timeout=1.0, wakeup=False):
                        if self._halt.is_set():
                            return
            except Exception:
                self._halt.wait(1.0)

    def stop(self) -> None:
        self._halt.set()
