"""Observability overhead: engine throughput with tracing and metrics on vs all off, same run.

Each run is a fresh process on a fresh store (SQLite, or PostgreSQL with ``--backend``): N
closed-won events across S subjects are taken in (each in its own intake span, as a poll takes
them) and drained by one worker whose handler records 4 gated steps per event (steps and their
audit entries committed, as the real flows do). "on" = tracing exported over OTLP/HTTP to a real
receiver in this process (the shipped BatchSpanProcessor and the shipped sampler: parent-based,
at most ``Q2C_TRACES_PER_SECOND`` (10) new traces a second) plus ``Q2C_METRICS_ENABLED=true``;
"every" = the same with every trace recorded (``OTEL_TRACES_SAMPLER=parentbased_always_on``);
"dropped" = the same with no trace recorded (``Q2C_TRACES_PER_SECOND=0``): the fixed cost that
tracing and metrics add to every event, whatever is sampled (it must export no span); "off" =
no exporter and ``Q2C_METRICS_ENABLED=false``. Runs alternate off/on/every/dropped; the best of
each mode is compared, and so is the worker process's CPU time per event (drain and span export;
steadier than wall time on a shared machine). SQLite runs WAL with ``synchronous=NORMAL``, so
commits do not wait for the disk and the figure is the CPU cost observability adds (fsync per
commit would hide it). The last line is one JSON object of the figures.

    python benchmarks/observability_overhead.py            # 10,000 events, 3 runs per mode
    python benchmarks/observability_overhead.py --quick    # under a minute
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import SRC, child_env, run_child, store_url

APPEND_BATCH = 500
SPANS_PER_EVENT = 6  # intake, event, 4 steps
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "Q2C_TRACES_PER_SECOND",
)
MODES = ("off", "on", "every", "dropped")


def child(events: int, subjects: int, url: str) -> dict[str, Any]:
    """One measured run in this process, configured by its environment."""
    from quote2cash.engine.context import HandlerContext
    from quote2cash.engine.events import Event, new_event
    from quote2cash.engine.registry import Registry
    from quote2cash.engine.runtime import Runtime
    from quote2cash.engine.worker import Worker
    from quote2cash.observability import tracing

    traced = tracing.configure()
    registry = Registry()

    @registry.on("crm.opportunity.closed_won")
    async def closed_won(ctx: HandlerContext, event: Event) -> None:
        n = event.data["n"]
        await ctx.step("crm.get_deal", lambda _k: dict(event.data))
        await ctx.step("billing.upsert_customer", lambda _k: f"cus_bench{n}")
        await ctx.step("billing.create_subscription", lambda _k: f"sub_bench{n}")
        await ctx.step("erp.book_order", lambda _k: n)

    runtime = Runtime.open(url, sqlite_synchronous="NORMAL")
    evs = [
        new_event(
            "crm.opportunity.closed_won",
            f"contract:C-{i % subjects:06d}",
            {"n": i, "amount": "147.00"},
            source="crm",
        )
        for i in range(events)
    ]
    worker = Worker(runtime, registry, batch_size=1000, max_subjects=250)
    start = time.perf_counter()
    for i in range(0, events, APPEND_BATCH):
        batch, spans = tracing.start_intake(evs[i : i + APPEND_BATCH], "poll")
        receipts = runtime.log.append_many(batch)
        tracing.end_intake(spans, [r.duplicate for r in receipts])
    appended = time.perf_counter()
    cpu = time.process_time()
    os.getsid(0)  # a mark for callgrind's --dump-before=getsid (observability_profile.py)
    report = asyncio.run(worker.drain())
    os.getsid(0)
    done = time.perf_counter()
    flushed = tracing.flush()
    cpu = time.process_time() - cpu
    assert report.processed == events, f"processed {report.processed} of {events}"
    flush_s = time.perf_counter() - done
    tracing.shutdown()
    runtime.close()
    return {
        "traced": traced,
        "metrics": os.environ.get("Q2C_METRICS_ENABLED"),
        "append_per_s": events / (appended - start),
        "process_per_s": events / (done - appended),
        "end_to_end_per_s": events / (done - start),
        "cpu_ms_per_event": 1000 * cpu / events,
        "flush_s": flush_s,
        "flushed": flushed,
    }


def whole_traces(spans: list[Any]) -> tuple[int, int]:
    """How many traces were received, and how many of them hold every span an event makes."""
    per_trace: dict[str, int] = {}
    for span in spans:
        per_trace[span.trace_id] = per_trace.get(span.trace_id, 0) + 1
    return len(per_trace), sum(1 for n in per_trace.values() if n == SPANS_PER_EVENT)


def mode_env(mode: str, endpoint: str) -> dict[str, str]:
    """The child's environment for ``mode`` (off, on, every, dropped)."""
    env = {k: v for k, v in child_env().items() if k not in OTEL_VARIABLES}
    env["Q2C_AUDIT_KEY"] = env.get("Q2C_AUDIT_KEY", "observability-benchmark-audit-key")
    env["Q2C_AUDIT_CHECKPOINT_FILE"] = str(Path(tempfile.gettempdir()) / "q2c-obs-bench.jsonl")
    env["Q2C_METRICS_ENABLED"] = "false" if mode == "off" else "true"
    if mode != "off":
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = endpoint
    if mode == "every":
        env["OTEL_TRACES_SAMPLER"] = "parentbased_always_on"
    if mode == "dropped":
        env["Q2C_TRACES_PER_SECOND"] = "0"
    return env


def run_mode(mode: str, endpoint: str, url: str, events: int, subjects: int) -> dict[str, Any]:
    env = mode_env(mode, endpoint)
    args = ["--child", "--events", str(events), "--subjects", str(subjects), "--url", url]
    result = run_child(__file__, args, env, timeout=1800)
    if result["traced"] != (mode != "off"):
        raise RuntimeError(f"{mode} run: tracing was {'on' if result['traced'] else 'off'}")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    parser.add_argument("--events", type=int)
    parser.add_argument("--subjects", type=int, default=500)
    parser.add_argument(
        "--runs", type=int, help="runs per mode (alternating off, on, every, dropped)"
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    events = args.events or (400 if args.quick else 10_000)
    if args.child:
        out = child(events, args.subjects, args.url)
        print(json.dumps(out))
        return out

    sys.path.insert(0, str(SRC))
    from quote2cash.sandbox.otlp import OtlpReceiver

    runs = args.runs or (2 if args.quick else 3)
    receiver = OtlpReceiver()
    receiver.start()
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    print(
        f"{events:,} events across {args.subjects:,} subjects on {args.backend}, 4 recorded "
        f"steps each; {runs} runs per mode, alternating",
        flush=True,
    )
    try:
        with tempfile.TemporaryDirectory() as folder:
            for i in range(runs):
                for mode in MODES:
                    url, drop = store_url(args.backend, folder, f"{mode}-{i}", prefix="q2c_obs")
                    try:
                        before = len(receiver.received())
                        r = run_mode(mode, receiver.traces_endpoint, url, events, args.subjects)
                    finally:
                        drop()
                    spans = receiver.received()[before:]
                    r["spans_received"] = len(spans)
                    r["traces_received"], r["traces_whole"] = whole_traces(spans)
                    results[mode].append(r)
                    print(
                        f"  {mode:>7}: process {r['process_per_s']:>8,.0f} ev/s  end-to-end "
                        f"{r['end_to_end_per_s']:>8,.0f} ev/s  append {r['append_per_s']:>8,.0f}"
                        f" ev/s  traces {r['traces_received']:,} ({r['spans_received']:,} spans)"
                        f" (flush {r['flush_s']:.2f} s)  CPU {r['cpu_ms_per_event']:.2f} ms/ev",
                        flush=True,
                    )
    finally:
        receiver.stop()

    def best(mode: str, key: str) -> float:
        return max(r[key] for r in results[mode])

    def least(mode: str, key: str) -> float:
        return min(r[key] for r in results[mode])

    off, on = best("off", "process_per_s"), best("on", "process_per_s")
    every = best("every", "process_per_s")
    off_e2e, on_e2e = best("off", "end_to_end_per_s"), best("on", "end_to_end_per_s")
    expected = events * SPANS_PER_EVENT
    received = min(r["spans_received"] for r in results["every"])
    broken = [r for r in results["on"] if r["traces_whole"] != r["traces_received"]]
    if broken:
        raise RuntimeError(f"traces exported without all {SPANS_PER_EVENT} spans: {broken}")
    leaked = [r for r in results["dropped"] if r["spans_received"]]
    if leaked:
        raise RuntimeError(f"spans exported with every trace dropped: {leaked}")
    dropped = best("dropped", "process_per_s")
    out = {
        "events": events,
        "subjects": args.subjects,
        "backend": args.backend,
        "runs_per_mode": runs,
        "steps_per_event": 4,
        "off_events_per_s": round(off),
        "on_events_per_s": round(on),
        "ratio_on_vs_off": round(on / off, 3),
        "overhead_pct": round(100 * (1 - on / off), 1),
        "off_end_to_end_per_s": round(off_e2e),
        "on_end_to_end_per_s": round(on_e2e),
        "ratio_end_to_end_on_vs_off": round(on_e2e / off_e2e, 3),
        "off_cpu_ms_per_event": round(least("off", "cpu_ms_per_event"), 3),
        "on_cpu_ms_per_event": round(least("on", "cpu_ms_per_event"), 3),
        "cpu_ratio_on_vs_off": round(
            least("on", "cpu_ms_per_event") / least("off", "cpu_ms_per_event"), 3
        ),
        "on_traces_recorded_min": min(r["traces_received"] for r in results["on"]),
        "every_events_per_s": round(every),
        "ratio_every_vs_off": round(every / off, 3),
        "every_overhead_pct": round(100 * (1 - every / off), 1),
        "every_cpu_ms_per_event": round(least("every", "cpu_ms_per_event"), 3),
        "every_spans_expected_per_run": expected,
        "every_spans_received_min": received,
        "dropped_events_per_s": round(dropped),
        "ratio_dropped_vs_off": round(dropped / off, 3),
        "dropped_overhead_pct": round(100 * (1 - dropped / off), 1),
        "dropped_cpu_ms_per_event": round(least("dropped", "cpu_ms_per_event"), 3),
        "cpu_ratio_dropped_vs_off": round(
            least("dropped", "cpu_ms_per_event") / least("off", "cpu_ms_per_event"), 3
        ),
        "metrics_setting_on": results["on"][0]["metrics"],
    }
    print(
        f"shipped tracing+metrics on / all off: dispatch {out['ratio_on_vs_off']} "
        f"({out['overhead_pct']} % lower), end-to-end {out['ratio_end_to_end_on_vs_off']}, "
        f"CPU per event {out['cpu_ratio_on_vs_off']}x, at least "
        f"{out['on_traces_recorded_min']:,} traces of {events:,} recorded whole; every trace "
        f"recorded: {out['ratio_every_vs_off']} ({out['every_overhead_pct']} % lower), "
        f"spans exported {received:,} of {expected:,} per run; none recorded (the fixed cost): "
        f"{out['ratio_dropped_vs_off']} ({out['dropped_overhead_pct']} % lower), CPU per event "
        f"{out['cpu_ratio_dropped_vs_off']}x"
    )
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
