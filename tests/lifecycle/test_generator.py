"""The generator: reproducible per seed, bounded by the switchboard, covering what it allows."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from lifecycle.generator import UNMAPPED, Do, generate
from lifecycle.space import SPACE, Space

FLAGS = [f.name for f in fields(Space) if f.type == "bool"]
ALL = replace(Space(periods=3, amendments_per_period=3), **dict.fromkeys(FLAGS, True))
NONE = replace(Space(), **dict.fromkeys(FLAGS, False))


def test_a_seed_always_gives_the_same_lifecycle() -> None:
    assert [generate(s, SPACE) for s in range(50)] == [generate(s, SPACE) for s in range(50)]
    assert len({generate(s, SPACE).shown().split(":", 1)[1] for s in range(50)}) > 40


def test_the_full_space_is_reached() -> None:
    drawn = [generate(s, ALL) for s in range(600)]
    codes = {line.code for lc in drawn for line in lc.lines}
    assert codes == {"PLAT-SEAT", "SUPPORT-PREM", "PLATFORM-PRO", "API-CALLS", "ONBOARD", UNMAPPED}
    assert {a.do for lc in drawn for a in lc.actions} == set(Do)
    assert {lc.entity for lc in drawn} == {"US", "DE"}
    assert any(line.discount for lc in drawn for line in lc.lines)
    assert any(a.then is not None for lc in drawn for a in lc.actions)
    methods = {a.method for lc in drawn for a in lc.actions if a.do is Do.PAY}
    assert methods == {"card", "bank_transfer", "declined_then_card"}
    split = [generate(s, replace(ALL, retry_in_the_same_second=False)) for s in range(300)]
    assert {a.method for lc in split for a in lc.actions if a.do is Do.PAY} == {
        "card",
        "bank_transfer",
        "declined",
    }
    downgrades = 0
    for lc in drawn:
        seats = lc.seats
        for action in lc.actions:
            if action.do is Do.AMEND and seats is not None and action.quantity is not None:
                downgrades += action.quantity < seats
                seats = action.quantity
    assert downgrades > 0


def test_dimensions_switched_off_are_never_drawn() -> None:
    off = replace(
        ALL,
        one_time_lines=False,
        metered=False,
        refunds=False,
        cancel_immediately=False,
        out_of_order_amendments=False,
    )
    drawn = [generate(s, off) for s in range(600)]
    codes = {line.code for lc in drawn for line in lc.lines}
    assert "ONBOARD" not in codes and "API-CALLS" not in codes
    actions = {a.do for lc in drawn for a in lc.actions}
    assert Do.REFUND not in actions and Do.CANCEL_NOW not in actions and Do.USAGE not in actions
    assert all(a.then is None for lc in drawn for a in lc.actions)


def test_no_downgrade_is_drawn_when_its_dimensions_are_off() -> None:
    for seed in range(600):
        lc = generate(seed, SPACE)
        seats, paid = lc.seats, False
        for action in lc.actions:
            if action.do is Do.PAY:
                paid = True
            if action.do is Do.AMEND and action.quantity is not None and seats is not None:
                if not SPACE.downgrades:
                    assert action.quantity > seats, lc.shown()
                elif not SPACE.downgrade_before_payment:
                    assert paid or action.quantity > seats, lc.shown()
                seats = action.quantity
            if action.do is Do.RENEW:
                paid = False


def test_an_empty_space_still_sells_something_and_does_nothing_else() -> None:
    lc = generate(7, NONE)
    assert lc.lines and lc.entity == "US" and lc.actions == ()


def test_dropping_an_action_keeps_the_rest_under_a_new_name() -> None:
    lc = next(generate(s, SPACE) for s in range(100) if len(generate(s, SPACE).actions) > 2)
    smaller = lc.without(1, "s1")
    assert smaller.actions == lc.actions[:1] + lc.actions[2:]
    assert smaller.name != lc.name and smaller.contract_number == f"{lc.contract_number}s1"


def test_a_failing_lifecycle_names_the_one_command_that_replays_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lifecycle.runner import Outcome

    monkeypatch.setenv("Q2C_LIFECYCLE_SPACE", "downgrades")
    monkeypatch.delenv("Q2C_LONG", raising=False)
    monkeypatch.delenv("Q2C_LIFECYCLE_ERP", raising=False)
    report = Outcome(generate(38, SPACE), ["ERP receivable differs"]).report()
    assert "ERP receivable differs" in report
    assert report.endswith(
        "replay: Q2C_LIFECYCLE_SPACE=downgrades Q2C_LIFECYCLE_SEED=38 "
        ".venv/bin/python -m pytest tests/lifecycle -k replay"
    )
    on_legacy = Outcome(generate(38, SPACE), ["ERP receivable differs"], "legacy").report()
    assert "Q2C_LIFECYCLE_ERP=legacy Q2C_LIFECYCLE_SEED=38" in on_legacy
