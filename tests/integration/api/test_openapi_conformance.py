"""The OpenAPI document is true: schemathesis runs against a live ``q2c serve`` (its own process,
a real store, a real token) and finds zero 5xx and zero answers that break the document; the
document lists exactly the routes the app serves. ``Q2C_LONG=1`` runs ten times more examples."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import quote2cash
from quote2cash.api.app import build_app
from quote2cash.api.openapi import document
from quote2cash.api.routes import ROUTES
from quote2cash.defaults import packaged_config_dir
from quote2cash.engine.events import new_event
from quote2cash.engine.quarantine import quarantine_delivery
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import ROLES
from support.identity import first_admin, new_operator, token_of

API_PREFIXES = ("/v1", "/webhooks", "/health", "/metrics")
"""What the document describes (the console's pages under /console are not an API)."""
CONFIG = packaged_config_dir()
SERVE = "import typer; from quote2cash.api.cli import serve_command; typer.run(serve_command)"
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    )
)


def test_the_document_lists_exactly_the_routes_served(tmp_path: Path) -> None:
    runtime = Runtime.open(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    try:
        app = build_app(runtime)
    finally:
        runtime.close()
    served = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD"
        and r.resource is not None
        and r.resource.canonical.startswith(API_PREFIXES)
    }
    doc = document(ROUTES)
    described = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    assert served == described
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "400" in op["responses"], (method, path)
            if path.startswith("/v1") and path != "/v1/openapi.json":
                assert op["security"] == [{"bearer": []}], (method, path)


@pytest.fixture
def live_serve(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``q2c serve`` in its own process on a store holding an exception and a quarantined
    delivery; yields its base URL and a token carrying every role."""
    db = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    runtime = Runtime.open(db)
    try:
        admin = first_admin(runtime)
        tester = new_operator(runtime, admin, "tester", *ROLES)
        token = token_of(runtime, tester)
        runtime.log.append(new_event("test.unhandled.happened", "subject-1", {"n": 1}))
        quarantine_delivery(runtime, "billing", b"[]", {}, "the body is an array")
    finally:
        runtime.close()
    (tmp_path / "systems.yaml").write_text(
        "billing:\n  kind: stripe\n  settings:\n    api_key: sk_test_conformance\n"
        "    base_url: http://127.0.0.1:9\n    webhook_secret: ${STRIPE_WHSEC}\n",
        encoding="utf-8",
    )
    # The hub's own settings are not inherited, except the audit key the store was signed with.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("Q2C_") or k.startswith("Q2C_AUDIT_")
    }
    env.update(STRIPE_WHSEC="whsec_conformance", Q2C_SF_CALLOUT_SECRET="callout-conformance")
    sources = str(Path(quote2cash.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (sources, env.get("PYTHONPATH"))))
    args = ["--port", "0", "--config", "systems.yaml", "--db", db, "--poll-seconds", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, *args, "--config-dir", str(CONFIG)],
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "serve.log", "w"),  # noqa: SIM115
        env=env,
        cwd=tmp_path,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("q2c serving on http://127.0.0.1:"), line
        yield line.split()[-1], token
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(
    live_serve: tuple[str, str], tmp_path: Path
) -> None:
    base, token = live_serve
    examples = 100 if os.environ.get("Q2C_LONG") == "1" else 10
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{base}/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(examples),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "0 failures" in run.stdout or "passed" in run.stdout
