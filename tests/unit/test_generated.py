"""Generated task arguments: checked at scenario time, made per task from the load's seed."""

from __future__ import annotations

import random

import pytest

from chaoslab.node import generated


def test_each_generator_makes_its_value():
    rng = random.Random(1)
    value = {"order": {"$seq": 1000}, "id": {"$id": "o-"}, "qty": {"$int": [1, 3]},
             "currency": {"$choice": ["EUR", {"$int": [7, 7]}]}, "fixed": [1, {"a": "b"}]}
    made = [generated.render(value, rng, seq) for seq in range(50)]
    assert [m["order"] for m in made] == list(range(1000, 1050))
    assert all(m["id"].startswith("o-") and len(m["id"]) == 34 for m in made) and len({m["id"] for m in made}) == 50
    assert {m["qty"] for m in made} == {1, 2, 3} and {m["currency"] for m in made} == {"EUR", 7}
    assert all(m["fixed"] == [1, {"a": "b"}] for m in made)
    again = random.Random(1)
    assert [generated.render(value, again, seq) for seq in range(50)] == made  # the same seed, the same values


def test_plain_data_has_no_generators_and_passes_unchanged():
    value = [1, "x", {"a": [True, None]}, {"$": 1, "b": 2}]
    assert not generated.has_generators(value)
    assert generated.render(value, random.Random(0), 5) == value
    assert generated.has_generators([{"k": [{"$seq": 0}]}])


@pytest.mark.parametrize(("value", "message"), [
    ({"$uuid": True}, "args.$uuid: unknown generator (allowed: $seq, $id, $int, $choice)"),
    ({"$seq": -1}, "args.$seq: must be a whole number from 0"),
    ({"$seq": True}, "args.$seq: must be a whole number from 0"),
    ({"$int": [5, 1]}, "args.$int: must be [low, high], two whole numbers with low <= high"),
    ({"$int": [1, 2.5]}, "args.$int: must be [low, high]"),
    ({"$choice": []}, "args.$choice: must be a list of 1 to 1000 values"),
    ({"$id": 7}, "args.$id: must be a prefix of up to 64 characters"),
    ([1, {"x": {"$seq": "a"}}], "args[1].x.$seq: must be a whole number"),
    ({"$choice": [1, {"$nope": 1}]}, "args.$choice[1].$nope: unknown generator"),
])
def test_a_bad_generator_is_one_line_naming_its_key(value, message):
    with pytest.raises(ValueError) as caught:
        generated.check(value, "args")
    assert str(caught.value).startswith(message)

