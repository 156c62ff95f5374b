"""The gate's cost per call: one synchronous check (``SystemGates.enter``/``leave``, what a step
does) against the async context manager (``async with gates.call(...)``, the shape every step
used before) and against no gate at all, in the same run, in one process.

Metrics are on (the default) unless a figure says ``no_metrics``: the per-call instruments
(``observability.metrics.call_finished``) cost about as much as the gate itself.

Each mode runs N calls of a trivial coroutine (the "system call" does nothing) for one system:
with only the process's own limits, with a shared rate budget kept in memory (the SQLite shape)
and one kept in PostgreSQL (``--pg``; its leases cost one ``UPDATE ... RETURNING`` per lease of
5 % of a second of the rate). Figures are this process's CPU microseconds per call (the
PostgreSQL server's share of a lease is not counted), best of 3 rounds per mode; the last line
is one JSON object.

    python benchmarks/gate_check.py            # 200,000 calls per mode
    python benchmarks/gate_check.py --quick    # 20,000 calls per mode, under a minute
    python benchmarks/gate_check.py --quick --pg
    python benchmarks/gate_check.py --quick --before 45a4701   # + the gate as it was at a commit

``--before REV`` loads ``engine/systems.py`` as it was at git revision REV and times its
``async with gates.call(...)`` in the same run (``before_*`` figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import SRC

sys.path.insert(0, str(SRC))
from quote2cash.engine.budgets import Budget
from quote2cash.engine.budgets_memory import MemoryBudgets
from quote2cash.engine.clock import SystemClock
from quote2cash.engine.systems import SystemGates
from quote2cash.observability import metrics

STEP = "billing.create_customer"


async def nothing() -> int:
    return 1


async def ungated(gates: SystemGates, n: int) -> None:
    for _ in range(n):
        await nothing()


async def context_manager(gates: SystemGates, n: int) -> None:
    for _ in range(n):
        async with gates.call("billing", STEP):
            await nothing()


async def one_check(gates: SystemGates, n: int) -> None:
    for _ in range(n):
        gate = gates.enter("billing", STEP) or await gates.enter_waiting("billing", STEP)
        started = metrics.now()
        try:
            await nothing()
        except BaseException as exc:
            gates.leave(gate, exc, started)
            raise
        gates.leave(gate, None, started)


def best_us(run: Any, gates: SystemGates, n: int) -> float:
    times = []
    for _ in range(3):
        started = time.process_time()  # CPU time: steadier than wall time on a shared machine
        asyncio.run(run(gates, n))
        times.append(time.process_time() - started)
    return min(times) / n * 1e6


def gates_at(revision: str) -> Any:
    """``SystemGates`` as ``engine/systems.py`` defined it at ``revision`` (same imports)."""
    import importlib.util
    import subprocess
    import tempfile

    source = subprocess.run(
        ["git", "show", f"{revision}:src/quote2cash/engine/systems.py"],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    ).stdout
    path = Path(tempfile.mkdtemp()) / "systems_before.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("systems_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["systems_before"] = module
    spec.loader.exec_module(module)
    return module.SystemGates(SystemClock())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    parser.add_argument("--calls", type=int, default=0)
    parser.add_argument("--pg", action="store_true", help="also a budget shared in PostgreSQL")
    parser.add_argument("--before", help="git revision whose engine/systems.py to time as well")
    args = parser.parse_args()
    n = args.calls or (20_000 if args.quick else 200_000)
    metrics.configure(True)
    rate = 10 * n  # high enough that no call waits: this measures the check, not the budget
    budget = Budget("billing", "writes", rate=rate, burst=rate)
    out: dict[str, Any] = {"calls": n, "quick": bool(args.quick)}

    plain = SystemGates(SystemClock())
    out["ungated_us"] = round(best_us(ungated, plain, n), 3)
    out["context_manager_us"] = round(best_us(context_manager, plain, n), 3)
    out["one_check_us"] = round(best_us(one_check, plain, n), 3)
    before = gates_at(args.before) if args.before else None
    if before is not None:
        out["before_context_manager_us"] = round(best_us(context_manager, before, n), 3)
    metrics.configure(False)  # the gate's own cost, without the per-call instruments
    out["context_manager_no_metrics_us"] = round(best_us(context_manager, plain, n), 3)
    out["one_check_no_metrics_us"] = round(best_us(one_check, plain, n), 3)
    if before is not None:
        out["before_context_manager_no_metrics_us"] = round(best_us(context_manager, before, n), 3)
    metrics.configure(True)

    memory = SystemGates(SystemClock())
    memory.configure_budgets([budget], MemoryBudgets())
    out["context_manager_memory_budget_us"] = round(best_us(context_manager, memory, n), 3)
    out["one_check_memory_budget_us"] = round(best_us(one_check, memory, n), 3)

    if args.pg:
        from _common import pg_database
        from quote2cash.store.db import migrate, open_engine

        url, drop = pg_database("q2c_bench_gate")
        try:
            engine = open_engine(url)
            migrate(engine)
            shared = SystemGates(SystemClock(), engine=None)
            from quote2cash.engine.budgets_postgres import PostgresBudgets

            shared.configure_budgets([budget], PostgresBudgets(engine))
            out["one_check_pg_budget_us"] = round(best_us(one_check, shared, n), 3)
            out["pg_lease_size"] = budget.lease_size
            engine.dispose()
        finally:
            drop()

    gate_cost = out["context_manager_us"] - out["ungated_us"]
    check_cost = out["one_check_us"] - out["ungated_us"]
    out["check_vs_context_manager"] = round(check_cost / gate_cost, 3) if gate_cost > 0 else None
    if before is not None:
        was = out["before_context_manager_no_metrics_us"] - out["ungated_us"]
        now = out["one_check_no_metrics_us"] - out["ungated_us"]
        out["check_vs_before_no_metrics"] = round(now / was, 3) if was > 0 else None
    for key, value in out.items():
        print(f"{key:36} {value}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
