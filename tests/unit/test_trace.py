"""A recorded trace to replay: every bad line is one error naming the line."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("line", "message"), [
    ('{"task": "a"}', "line 1: offset: must be seconds >= 0"),
    ('{"offset": 1, "task": "a", "kind": "noop"}', "line 1: give a task (of the app under test) or a kind"),
    ('{"offset": 1, "task": "a b"}', "line 1: task: a task's registered name"),
    ('{"offset": 1, "task": "a", "args": {"x": 1}}', "line 1: args: the task's positional arguments"),
    ('{"offset": 1, "kind": "rm"}', "line 1: kind: one of noop"),
    ('{"offset": 1, "task": "a", "eta": 5}', "line 1: eta: unknown key"),
    ("[1, 2]", "line 1: must be a JSON object"),
    ("{not json", "line 1: Expecting property name"),
    ("\n\n", "holds no task"),
])
def test_a_bad_trace_line_is_one_error_naming_the_line(tmp_path, line, message):
    from chaoslab.node import trace

    path = tmp_path / "trace.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        trace.read(path)
    assert str(caught.value).startswith(message)
