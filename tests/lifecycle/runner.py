"""Run a set of lifecycles together in one world: everyone's first step, the hub settles,
everyone's next step, and so on; then read each system and check the invariants."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lifecycle.driver import Actors, Running
from lifecycle.generator import UNMAPPED, Lifecycle
from lifecycle.invariants import ErpView, all_divergences, read_billing, read_crm, read_erp
from lifecycle.world import LifecycleWorld, NotSettled
from quote2cash.engine.queries import EventRow

REPLAY = "{env}Q2C_LIFECYCLE_SEED={seed} .venv/bin/python -m pytest tests/lifecycle -k replay"


def replay_command(lifecycle: Lifecycle, erp: str = "tryton") -> str:
    """The one command that replays ``lifecycle``: its seed, in the same space, profile and ERP."""
    env = "".join(
        f"{name}={os.environ[name]} "
        for name in ("Q2C_LONG", "Q2C_LIFECYCLE_SPACE")
        if os.environ.get(name)
    )
    if erp != "tryton" or os.environ.get("Q2C_LIFECYCLE_ERP"):
        env += f"Q2C_LIFECYCLE_ERP={erp} "
    return REPLAY.format(env=env, seed=lifecycle.seed)


@dataclass
class Outcome:
    lifecycle: Lifecycle
    divergences: list[str] = field(default_factory=list)
    erp: str = "tryton"

    @property
    def ok(self) -> bool:
        return not self.divergences

    def report(self) -> str:
        said = "\n    ".join(self.divergences)
        replay = replay_command(self.lifecycle, self.erp)
        return f"{self.lifecycle.shown()}\n    {said}\n  replay: {replay}"


@dataclass
class SetResult:
    outcomes: list[Outcome]
    stray_exceptions: list[str]
    seconds: float

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def _mine(run: Running, exceptions: list[EventRow]) -> list[EventRow]:
    subjects = {f"contract:{run.lifecycle.contract_number}", f"billing:{run.customer}"}
    return [e for e in exceptions if e.subject in subjects]


def exception_divergences(run: Running, mine: list[EventRow]) -> list[str]:
    """The unmapped product's deal must have exactly one mapping exception naming it; any other
    exception is one a person would not expect."""
    found: list[str] = []
    if run.lifecycle.unmapped:
        expected = [e for e in mine if e.category == "mapping" and UNMAPPED in (e.last_error or "")]
        if len(expected) != 1:
            found.append(
                f"expected one mapping exception naming {UNMAPPED}, got "
                f"{[(e.type, e.category, e.last_error) for e in mine]}"
            )
        mine = [e for e in mine if e not in expected]
    for e in mine:
        found.append(f"unexpected exception {e.type} [{e.category}] {e.subject}: {e.last_error}")
    return found


def _step(world: LifecycleWorld, actors: Actors, runs: list[Running], index: int) -> bool:
    """Everyone's ``index``-th action; False when nobody had one."""
    acted = False
    for run in runs:
        actions = run.lifecycle.actions
        if index >= len(actions) or run.lifecycle.unmapped:
            continue
        acted = True
        try:
            actors.act(run, actions[index])
        except Exception as exc:
            run.failures.append(f"{actions[index].shown()}: {type(exc).__name__}: {exc}")
    return acted


def _settle(world: LifecycleWorld, unsettled: list[str], after: str) -> None:
    """Wait for the hub; one that never settles is a finding, and the run goes on."""
    try:
        world.quiesce()
    except NotSettled as exc:
        stuck = ", ".join(f"{e.type} {e.subject}" for e in world.stuck()[:10])
        unsettled.append(f"after {after}: {exc} ({stuck})")


def run_set(
    world: LifecycleWorld,
    lifecycles: list[Lifecycle],
    say: Callable[[str], None] = lambda _m: None,
    *,
    scoped: bool = False,
) -> SetResult:
    """``scoped``: settle on these lifecycles' own events only (shrinking, in a world where
    an earlier run left a contract stuck)."""
    started = time.monotonic()
    earlier = {e.pos for e in world.exceptions()}  # an earlier set's (batch's) in the same hub
    actors = Actors(world)
    if any(lc.unmapped for lc in lifecycles):
        actors.ensure_unmapped_product()
    runs = [actors.sign_up(lc) for lc in lifecycles]
    if scoped:
        world.scope = {f"contract:{r.lifecycle.contract_number}" for r in runs}
        world.scope |= {f"billing:{r.customer}" for r in runs}
    for run in runs:
        actors.close_deal(run)
    unsettled: list[str] = []
    _settle(world, unsettled, "the deals closed")
    say(f"{len(runs)} deals closed and settled ({time.monotonic() - started:.0f} s)")
    index = 0
    while _step(world, actors, runs, index):
        index += 1
        _settle(world, unsettled, f"step {index}")
        say(f"step {index} settled ({time.monotonic() - started:.0f} s)")
    world.scope = None
    exceptions = world.exceptions()
    claimed: set[int] = set()
    outcomes = []
    client = world.stripe()

    async def read_erp_all() -> list[ErpView]:
        async with world.sandbox.erp_reader() as erp:
            return [await read_erp(erp, run.lifecycle.name) for run in runs]

    erp_views = asyncio.run(read_erp_all())
    for run, erp in zip(runs, erp_views, strict=True):
        clock = actors._clock_time(run)
        billing = read_billing(client, run.lifecycle.name, now=clock)
        crm = read_crm(world.sf, run.account, run.opportunity)
        mine = _mine(run, exceptions)
        claimed.update(e.pos for e in mine)
        found = [*run.failures, *exception_divergences(run, mine)]
        found += all_divergences(billing, erp, crm, entity=run.lifecycle.entity, booked=run.booked)
        outcomes.append(Outcome(run.lifecycle, found, world.erp))
    known = claimed | earlier
    stray = unsettled + [
        f"{e.type} [{e.category}] {e.subject}: {e.last_error}"
        for e in exceptions
        if e.pos not in known and e.subject.startswith(("contract:C-LC-", "billing:"))
    ]
    return SetResult(outcomes, stray, time.monotonic() - started)


def shrink(
    world: LifecycleWorld, lifecycle: Lifecycle, say: Callable[[str], None] = print
) -> Lifecycle:
    """Drop actions one at a time while the lifecycle still fails; the smallest failing one."""
    current, trial = lifecycle, 0
    index = len(current.actions) - 1
    while index >= 0:
        trial += 1
        candidate = current.without(index, f"s{trial}{os.getpid() % 1000}")
        result = run_set(world, [candidate], scoped=True)
        if result.failed:
            say(f"still fails without action {index}: {candidate.shown()}")
            current = candidate
        index -= 1
    return current
