"""A reference study made of parts: studies of disjoint scenario sets (e.g. ``experiments/study`` and the seed
experiments of ``experiments/study/seed``, each about an hour and a half) published one after another, on the same
or another day, into one reference with one report.

Each part keeps what its own study.json said of it (source, repeats, when it ran, on which machine, with which
versions and project commit). Publishing a study replaces the runs of its scenarios in every part (a part left with
no scenario goes) and, unless it ran only some scenarios of its source (``chaoslab study --only``: study.json
``only``), every part from the same source; every other part and scenario, and its runs, stays. A part keeps its
own times, including those of scenarios a later part replaced.

    merged = merge(previous_reference_data, study_data)     # the reference's new study.json
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

PART_FIELDS: Final = ("study_id", "source", "only", "repeat", "started", "ended", "status", "machine", "versions")
"""What a part keeps of its study's study.json, besides the names of its scenarios."""


def scenario_names(data: Mapping[str, Any]) -> list[str]:
    """The scenarios a study.json lists, then any other its runs name, in order."""
    names = [str(item.get("name") or "") for item in data.get("scenarios") or [] if isinstance(item, Mapping)]
    names += [str(run.get("scenario") or "") for run in data.get("runs") or [] if isinstance(run, Mapping)]
    return list(dict.fromkeys(name for name in names if name))


def part_of(data: Mapping[str, Any]) -> dict[str, Any]:
    """One study's study.json as a part of a reference."""
    return {**{name: data.get(name) for name in PART_FIELDS}, "scenarios": scenario_names(data)}


def parts_of(data: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The parts of a reference's study.json (a study published whole is its one part); none for no reference."""
    if not data:
        return []
    listed = data.get("parts")
    if isinstance(listed, Sequence) and listed:
        return [dict(part) for part in listed if isinstance(part, Mapping)]
    return [part_of(data)]


def _duration(part: Mapping[str, Any]) -> float | None:
    started, ended = part.get("started"), part.get("ended")
    return None if started is None or ended is None else float(ended) - float(started)


def total_seconds(parts: Sequence[Mapping[str, Any]]) -> float | None:
    """The time the parts took together (the days between them not counted); None if one's is unknown."""
    durations = [_duration(part) for part in parts]
    return None if not durations or None in durations else sum(d for d in durations if d is not None)


def merge(reference: Mapping[str, Any] | None, study: Mapping[str, Any]) -> dict[str, Any]:
    """The study.json of *reference* with *study* published into it: the parts kept, each without the study's
    scenarios (a part from the study's source goes whole unless the study ran only some of the source's scenarios),
    with their scenarios and runs, then the study's (its own study.json when no part is kept). The top-level fields
    say what holds for the whole: the newest part's identity, machine and versions, the fewest repeats, the earliest
    start, the latest end, and "completed" only when every part completed."""
    new = part_of(study)
    taken = set(new["scenarios"])
    kept = []
    for part in parts_of(reference):
        rest = [name for name in part.get("scenarios") or [] if name not in taken]
        if rest and (new["only"] or part.get("source") != new["source"]):
            kept.append({**part, "scenarios": rest})
    if not kept:  # the study alone: its own study.json as it is
        return dict(study)
    keep = {name for part in kept for name in part.get("scenarios") or []}
    old = reference or {}
    parts = [*kept, new]
    repeats = [int(part["repeat"]) for part in parts if isinstance(part.get("repeat"), int)]
    starts = [float(part["started"]) for part in parts if part.get("started") is not None]
    ends = [float(part["ended"]) for part in parts if part.get("ended") is not None]
    statuses = [str(part.get("status") or "unknown") for part in parts]
    return {
        **{name: study.get(name) for name in ("study_id", "machine", "versions")},
        "source": ", ".join(dict.fromkeys(str(part.get("source") or "") for part in parts)),
        "repeat": min(repeats) if repeats else None,
        "started": min(starts) if starts else None,
        "ended": max(ends) if len(ends) == len(parts) else None,
        "status": next((status for status in statuses if status != "completed"), "completed"),
        "parts": parts,
        "scenarios": [*(item for item in old.get("scenarios") or [] if item.get("name") in keep),
                      *(study.get("scenarios") or [])],
        "runs": [*(run for run in old.get("runs") or [] if run.get("scenario") in keep), *(study.get("runs") or [])],
    }
