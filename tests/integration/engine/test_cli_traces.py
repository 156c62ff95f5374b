"""``q2c worker`` as an operator runs it, exporting over OTLP/HTTP to a real receiver: the spans
buffered by the batch processor are flushed when the command ends, the follow-up joins the
deal's trace, and its JSON log lines name the trace and span they were written in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from quote2cash.engine.events import new_event
from quote2cash.engine.runtime import Runtime
from quote2cash.sandbox.otlp import OtlpReceiver

REPO = Path(__file__).parents[3]


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    otlp = OtlpReceiver()
    otlp.start()
    yield otlp
    otlp.stop()


def q2c(*args: str, db: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The repository's own ``q2c`` (its src/ first on the path), with the test handlers."""
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "Q2C_DATABASE_URL": db,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "quote2cash.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


def test_the_worker_command_flushes_its_spans_and_logs_their_ids(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    db = f"sqlite:///{tmp_path / 'q2c.sqlite'}"
    assert q2c("init", db=db, env={}).returncode == 0
    runtime = Runtime.open(db, initialise=False)
    deal = new_event("crm.opportunity.closed_won", "deal-7", {"seats": 3}, correlation_id="c-7")
    runtime.log.append(deal)
    runtime.close()
    done = q2c(
        "worker",
        "--once",
        "--handlers",
        "support.cli_handlers:registry",
        db=db,
        env={
            "Q2C_LOG_FORMAT": "json",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.traces_endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "600000",  # nothing leaves before the command's flush
        },
    )
    assert done.returncode == 0, done.stderr
    spans = {s.name: s for s in receiver.received()}
    won, requested = (
        spans["event crm.opportunity.closed_won"],
        spans["event billing.subscription.requested"],
    )
    assert won.attributes["q2c.event_id"] == deal.id
    assert won.attributes["q2c.correlation_id"] == "c-7"
    assert (requested.trace_id, requested.parent_span_id) == (won.trace_id, won.span_id)
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    handled = {
        ln["event_type"]: (ln["trace_id"], ln["span_id"])
        for ln in lines
        if ln["logger"] == "quote2cash.test.handlers"
    }
    assert handled == {
        "crm.opportunity.closed_won": (won.trace_id, won.span_id),
        "billing.subscription.requested": (requested.trace_id, requested.span_id),
    }
