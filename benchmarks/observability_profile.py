"""Observability's fixed cost counted in instructions: one mode of the overhead benchmark's run
under callgrind (or cProfile), the worker's drain alone, per event.

Wall-clock ratios on a shared machine swing by tens of percent; callgrind counts the
instructions the drain executes, which load does not change, so modes can be compared to a
fraction of a percent: ``off`` (no exporter, metrics off), ``dropped`` (tracing and metrics on,
no trace recorded: the fixed cost), ``on`` (as shipped; under callgrind the run is about 50
times slower, so the shipped sampler's 10 traces a second record far more of its events than a
real run does: read "dropped" for the fixed cost), ``every``. The child marks the drain's start
and end with a ``getsid`` call; callgrind dumps its counts at each, so start-up and intake are
left out. The last line is one JSON object.

    python benchmarks/observability_profile.py --mode dropped               # 1,000 events
    python benchmarks/observability_profile.py --mode off --events 2000
    python benchmarks/observability_profile.py --mode dropped --tool cprofile   # hot spots
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import SRC
from observability_overhead import MODES, mode_env

HERE = Path(__file__).parent
STEPS = ("crm.get_deal", "billing.upsert_customer", "billing.create_subscription", "erp.book_order")


def event_path_child(events: int) -> dict[str, Any]:
    """The observability hooks the engine runs for one event of four gated steps, ``events``
    times, without the engine: the worker's (``metrics.now``, ``tracing.event_span``,
    ``span.is_recording``, ``metrics.event_handled``), the handler context's
    (``tracing.traced_here``, a step span when it says so) and the gate's per step
    (``metrics.now``, ``metrics.call_succeeded`` with the labels the gate keeps per step name).
    Deterministic, so its instruction count is
    the fixed cost alone, to the instruction."""
    import os

    from quote2cash.engine.events import new_event
    from quote2cash.observability import metrics, tracing

    traced = tracing.configure()
    evs = [
        new_event("crm.opportunity.closed_won", f"contract:C-{i:06d}", {"n": i}, source="crm")
        for i in range(events)
    ]
    labels = {step: metrics.call_labels(step.split(".", 1)[0], step, "ok") for step in STEPS}
    evs, spans = tracing.start_intake(evs, "poll")
    tracing.end_intake(spans, [False] * len(spans))
    os.getsid(0)
    for event in evs:
        started = metrics.now()
        with tracing.event_span(event, 1) as span:
            step_spans = tracing.traced_here()
            for step in STEPS:
                system = step.split(".", 1)[0]
                with tracing.step_span(event, step, system) if step_spans else NO_SPAN:
                    called = metrics.now()
                    metrics.call_succeeded(labels[step], called)
            if span.is_recording():
                tracing.set_outcome(span, "done")
        metrics.event_handled(
            event.type,
            completed=True,
            parked=False,
            held=False,
            failure_status=None,
            started=started,
        )
    os.getsid(0)
    tracing.flush()
    tracing.shutdown()
    return {"traced": traced}


NO_SPAN = contextlib.nullcontext()
_TOTALS = re.compile(r"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


def instructions(dump: Path) -> int:
    found = _TOTALS.search(dump.read_text())
    if found is None:
        raise RuntimeError(f"{dump}: no instruction total")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument(
        "--path",
        choices=("drain", "event"),
        default="drain",
        help="drain: the benchmark's worker drain; event: the observability hooks alone",
    )
    parser.add_argument("--event-path-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--subjects", type=int, default=500)
    parser.add_argument("--tool", choices=("callgrind", "cprofile"), default="callgrind")
    parser.add_argument("--top", type=int, default=40, help="cProfile: functions shown")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="an environment override"
    )
    parser.add_argument("--keep", help="callgrind: copy the drain's dump to this file")
    args = parser.parse_args(argv)
    if args.event_path_child:
        out = event_path_child(args.events)
        print(json.dumps(out))
        return out

    sys.path.insert(0, str(SRC))
    from quote2cash.sandbox.otlp import OtlpReceiver

    receiver = OtlpReceiver()
    receiver.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            env = mode_env(args.mode, receiver.traces_endpoint)
            env.update(item.split("=", 1) for item in args.set)
            child = [
                str(HERE / "observability_overhead.py"),
                "--child",
                "--events",
                str(args.events),
                "--subjects",
                str(args.subjects),
                "--url",
                f"sqlite:///{folder}/profile.sqlite",
            ]
            if args.path == "event":
                child = [__file__, "--event-path-child", "--events", str(args.events)]
                child += ["--mode", args.mode]
            out_file = Path(folder) / "callgrind.out"
            if args.tool == "callgrind":
                command = [
                    "valgrind",
                    "--tool=callgrind",
                    "--dump-before=getsid",
                    f"--callgrind-out-file={out_file}",
                    sys.executable,
                    *child,
                ]
            else:
                command = [sys.executable, "-m", "cProfile", "-s", "tottime", *child]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise RuntimeError(f"{args.mode} run failed:\n{done.stderr[-3000:]}")
            spans = len(receiver.received())
            result: dict[str, Any] = {
                "mode": args.mode,
                "path": args.path,
                "events": args.events,
                "tool": args.tool,
            }
            if args.tool == "cprofile":
                lines = done.stdout.splitlines()
                start = next(i for i, line in enumerate(lines) if "ncalls" in line)
                print("\n".join(lines[start : start + args.top + 1]))
            else:
                dumps = sorted(Path(folder).glob("callgrind.out.*"))
                drain = next(d for d in dumps if d.name.endswith(".2"))
                if args.keep:
                    shutil.copy(drain, args.keep)
                total = instructions(drain)
                result["drain_instructions"] = total
                result["instructions_per_event"] = round(total / args.events)
            result["spans_received"] = spans
    finally:
        receiver.stop()
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
