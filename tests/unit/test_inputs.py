"""The closed grammar of what users and requests may give the lab."""

from __future__ import annotations

import pytest

from chaoslab.inputs import InputError, groups_of, name, pattern, resolve, text, unsafe

INVENTORY = {
    "_meta": {"hostvars": {}},
    "all": {"children": ["ungrouped", "redis", "workers", "monitor"]},
    "redis": {"hosts": ["redis"]},
    "workers": {"hosts": ["worker-1", "worker-2", "worker-3"]},
    "monitor": {"hosts": ["monitor"]},
}
GROUPS = groups_of(INVENTORY)


def test_groups_of_lists_every_group_and_all_in_inventory_order():
    assert GROUPS["all"] == ["redis", "worker-1", "worker-2", "worker-3", "monitor"]
    assert GROUPS["workers"] == ["worker-1", "worker-2", "worker-3"]


@pytest.mark.parametrize(("given", "hosts"), [
    ("workers", ["worker-1", "worker-2", "worker-3"]),
    ("workers[0]", ["worker-1"]),
    ("workers[-1]", ["worker-3"]),
    ("workers[1:2]", ["worker-2", "worker-3"]),
    ("redis:workers[0]", ["redis", "worker-1"]),
    ("redis,monitor", ["redis", "monitor"]),
    ("all:!workers", ["redis", "monitor"]),
    ("!workers:all", ["redis", "monitor"]),  # exclusions apply after unions, whatever the order
    ("workers:&worker-2", ["worker-2"]),
    ("worker-3", ["worker-3"]),
])
def test_patterns_resolve_as_ansible_resolves_them(given, hosts):
    assert resolve(given, GROUPS) == hosts


@pytest.mark.parametrize("given", [
    "localhost", "127.0.0.1", "controller", "workers[7]", "all:!all", "nosuchgroup",
])
def test_a_pattern_that_names_no_inventory_host_is_refused(given):
    with pytest.raises(InputError, match="matches no node of the inventory"):
        resolve(given, GROUPS)


@pytest.mark.parametrize("given", [
    "{{ lookup('pipe', 'id') }}", "#jinja2:variable_start_string:'[['\n[[ 7*7 ]]", "work*", "~work.*",
    "-i /etc/passwd", "--help", "workers; touch /tmp/x", "workers[0", "a b", "", "w\x00", "wörker-1",
    "workers[1:2:3]", "x" * 300, 7, None, ["workers"],
])
def test_anything_else_is_not_a_pattern(given):
    with pytest.raises(InputError):
        pattern(given, "target")


def test_text_refuses_non_ascii_unprintable_long_and_option_like_values():
    assert text("200ms", "delay") == "200ms"
    for bad in ("\uff12\uff10\uff10ms", "200ms\n", "\x00", "-200ms", "x" * 257, b"200ms", 200):
        with pytest.raises(InputError):
            text(bad, "delay")


def test_names():
    assert name("worker-1", "node") == "worker-1"
    for bad in ("worker 1", "../etc", ".hidden", "a/b", "x" * 64, "w\u043erker-1"):  # the last has a Cyrillic o
        with pytest.raises(InputError):
            name(bad, "node")


def test_unsafe_marks_every_string_for_ansible():
    assert unsafe({"a": "x", "b": [1, "y", {"c": "z"}], "d": None, "e": True}) == {
        "a": {"__ansible_unsafe": "x"}, "b": [1, {"__ansible_unsafe": "y"}, {"c": {"__ansible_unsafe": "z"}}],
        "d": None, "e": True}
