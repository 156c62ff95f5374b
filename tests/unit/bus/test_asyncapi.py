"""docs/asyncapi.yaml is a well-formed AsyncAPI 3.0 document that documents exactly the business
events the code can publish, on the subjects the publisher uses, with payloads the envelope
builder's output satisfies (and a wrong one does not)."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

from quote2cash.bus.catalog import BusinessEvent, cloudevents_type, subject_of
from quote2cash.bus.envelope import OutboxRow
from quote2cash.canonical.subscription import SubscriptionStatus
from support.asyncapi import document, message_of_type, payload_validator, refs, resolve

FLOWS = Path(__file__).parents[3] / "src" / "quote2cash" / "flows"


def test_structure_is_asyncapi_3() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["servers"]["nats"]["protocol"] == "nats"
    for ref in refs(doc):  # no dangling reference anywhere
        resolve(ref)
    for name, channel in doc["channels"].items():
        assert channel["address"], name
        assert channel["messages"], f"channel {name} has no messages"
    for name, op in doc["operations"].items():
        assert op["action"] in ("send", "receive"), name
        channel_ref = op["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/"), name
        for message in op["messages"]:  # 3.0: an operation's messages are its channel's
            assert message["$ref"].startswith(channel_ref + "/messages/"), (name, message)
    sent = {op["channel"]["$ref"] for op in doc["operations"].values() if op["action"] == "send"}
    assert sent == {f"#/channels/{name}" for name in doc["channels"]}


def test_every_publishable_type_is_documented_and_nothing_else() -> None:
    doc = document()
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {subject_of("q2c", t) for t in BusinessEvent}
    names = {m["name"] for m in doc["components"]["messages"].values()}
    assert names == {str(t) for t in BusinessEvent}
    for t in BusinessEvent:
        message_of_type(cloudevents_type(t))  # the payload pins the CloudEvents type


def _published_types() -> tuple[set[str], list[str]]:
    """Types the flows pass to ``ctx.publish``; calls whose type is not a catalog member."""
    found: set[str] = set()
    loose: list[str] = []
    for path in sorted(FLOWS.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "publish"
            ):
                continue
            arg = node.args[0] if node.args else None
            if (
                isinstance(arg, ast.Attribute)
                and isinstance(arg.value, ast.Name)
                and arg.value.id == "BusinessEvent"
            ):
                found.add(BusinessEvent[arg.attr].value)
            else:
                loose.append(f"{path.name}:{node.lineno}")
    return found, loose


def test_the_flows_publish_every_catalog_type_and_only_those() -> None:
    found, loose = _published_types()
    assert loose == [], f"ctx.publish with a type not from bus.catalog.BusinessEvent: {loose}"
    assert found == {t.value for t in BusinessEvent}


def test_subscription_status_enum_follows_the_canonical_model() -> None:
    statuses = resolve("#/components/schemas/Contract")["properties"]["status"]["enum"]
    assert set(statuses) == {s.value for s in SubscriptionStatus}


def _row(event_type: str, data: str) -> OutboxRow:
    return OutboxRow(
        7, "9b2e-msg", event_type, "contract:C-1", "deal-1", "evt-1", datetime.now(UTC), data
    )


PAYMENT = (
    '{"invoice_id":"in_1","invoice_number":"INV-1","customer_id":"G-1",'
    '"subscription_id":"sub_1","currency":"EUR","erp_invoice_id":"42",'
    '"amount":"267.75","received_at":"2026-12-06T10:00:00+00:00"}'
)


def test_the_envelope_builder_output_satisfies_its_payload_schema() -> None:
    envelope = _row("payment.received", PAYMENT).envelope()
    validator = payload_validator(message_of_type(envelope["type"]))
    errors = [e.message for e in validator.iter_errors(envelope)]
    assert errors == []


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda e: e["data"].update(amount=267.75), "money as a float"),
        (lambda e: e.pop("correlation_id"), "no correlation id"),
        (lambda e: e["data"].pop("erp_invoice_id"), "a required field missing"),
        (lambda e: e.update(type="q2c.invoice.posted"), "another type's const"),
        (lambda e: e.update(time="yesterday"), "time not ISO 8601"),
    ],
)
def test_the_schemas_refuse_a_wrong_payload(change, why) -> None:  # type: ignore[no-untyped-def]
    envelope = _row("payment.received", PAYMENT).envelope()
    change(envelope)
    assert not payload_validator("paymentReceived").is_valid(envelope), why
