"""Manual invoices, card payments and declines, refunds and credit notes through the SDK."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from .conftest import make_customer


def _draft(client: stripe.StripeClient, customer: Any, amounts: list[int]) -> Any:
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "charge_automatically"}
    )
    for i, amount in enumerate(amounts):
        client.v1.invoice_items.create(
            params={
                "customer": customer.id,
                "invoice": invoice.id,
                "amount": amount,
                "currency": "usd",
                "description": f"Service {i}",
            }
        )
    return client.v1.invoices.retrieve(invoice.id)


def test_draft_finalize_pay(client: stripe.StripeClient) -> None:
    customer = make_customer(client)
    draft = _draft(client, customer, [1200, 800])
    assert (draft.status, draft.number, draft.total, draft.amount_due) == (
        "draft",
        None,
        2000,
        2000,
    )
    assert [line.amount for line in draft.lines.data] == [1200, 800]
    lines = client.v1.invoices.line_items.list(draft.id, params={"limit": 1})
    assert [line.amount for line in lines.data] == [1200] and lines.has_more
    finalized = client.v1.invoices.finalize_invoice(draft.id)
    assert finalized.status == "open" and finalized.number and finalized.amount_remaining == 2000
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.finalize_invoice(draft.id)
    paid = client.v1.invoices.pay(draft.id)
    assert (paid.status, paid.amount_paid, paid.amount_remaining) == ("paid", 2000, 0)
    assert paid.status_transitions.paid_at is not None
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.void_invoice(draft.id)
    payments = client.v1.invoice_payments.list(params={"invoice": draft.id}).data
    assert len(payments) == 1 and payments[0].status == "paid" and payments[0].amount_paid == 2000
    types = [e.type for e in client.v1.events.list(params={"limit": 100}).data]
    for expected in (
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "payment_intent.succeeded",
    ):
        assert expected in types


def test_pending_items_are_included_only_when_asked(client: stripe.StripeClient) -> None:
    customer = make_customer(client)
    client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 500, "currency": "usd"}
    )
    empty = client.v1.invoices.create(params={"customer": customer.id})
    assert empty.total == 0 and empty.lines.data == []
    full = client.v1.invoices.create(
        params={"customer": customer.id, "pending_invoice_items_behavior": "include"}
    )
    assert full.total == 500


def test_void_open_invoice(client: stripe.StripeClient) -> None:
    customer = make_customer(client)
    draft = _draft(client, customer, [700])
    client.v1.invoices.finalize_invoice(draft.id)
    voided = client.v1.invoices.void_invoice(draft.id)
    assert voided.status == "void" and voided.status_transitions.voided_at is not None
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.pay(draft.id)


def test_declined_invoice_payment(client: stripe.StripeClient) -> None:
    customer = make_customer(client, pm=None)
    draft = _draft(client, customer, [4200])
    with pytest.raises(stripe.CardError) as info:
        client.v1.invoices.pay(draft.id, params={"payment_method": "pm_card_chargeCustomerFail"})
    assert info.value.http_status == 402
    assert info.value.code == "card_declined"
    assert info.value.json_body["error"]["decline_code"] == "generic_decline"
    invoice = client.v1.invoices.retrieve(draft.id)
    assert (invoice.status, invoice.attempt_count, invoice.amount_remaining) == ("open", 1, 4200)
    assert (
        client.v1.events.list(params={"type": "invoice.payment_failed"}).data[0].data.object.id
        == draft.id
    )


def test_payment_intents_success_and_decline(client: stripe.StripeClient) -> None:
    ok = client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    assert (ok.status, ok.amount_received) == ("succeeded", 2500) and ok.latest_charge.startswith(
        "ch_"
    )
    with pytest.raises(stripe.CardError) as info:
        client.v1.payment_intents.create(
            params={
                "amount": 2500,
                "currency": "usd",
                "payment_method": "pm_card_chargeDeclined",
                "confirm": True,
            }
        )
    error = info.value.json_body["error"]
    assert (error["type"], error["code"], error["decline_code"]) == (
        "card_error",
        "card_declined",
        "generic_decline",
    )
    assert error["payment_intent"]["status"] == "requires_payment_method"
    declined = client.v1.payment_intents.retrieve(error["payment_intent"]["id"])
    assert declined.last_payment_error.code == "card_declined"
    customer = make_customer(client, pm=None)
    with pytest.raises(stripe.CardError):
        client.v1.payment_methods.attach("pm_card_chargeDeclined", params={"customer": customer.id})
    pm = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4000000000000002", "exp_month": 12, "exp_year": 2030},
        }
    )
    with pytest.raises(stripe.CardError):
        client.v1.payment_intents.create(
            params={"amount": 900, "currency": "usd", "payment_method": pm.id, "confirm": True}
        )
    with pytest.raises(stripe.InvalidRequestError) as small:
        client.v1.payment_intents.create(params={"amount": 10, "currency": "usd"})
    assert small.value.code == "amount_too_small"


def test_refunds_partial_then_rest(client: stripe.StripeClient) -> None:
    intent = client.v1.payment_intents.create(
        params={
            "amount": 5000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    first = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 1500})
    assert (first.amount, first.status, first.charge) == (1500, "succeeded", intent.latest_charge)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 4000})
    assert info.value.param == "amount"
    rest = client.v1.refunds.create(params={"charge": intent.latest_charge})
    assert rest.amount == 3500
    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (5000, True)
    assert len(client.v1.refunds.list(params={"payment_intent": intent.id}).data) == 2
    assert len(client.v1.events.list(params={"type": "charge.refunded"}).data) == 2


def test_credit_note_before_payment_reduces_amount_due(client: stripe.StripeClient) -> None:
    customer = make_customer(client)
    draft = _draft(client, customer, [3000, 1000])
    client.v1.invoices.finalize_invoice(draft.id)
    line = draft.lines.data[0]
    note = client.v1.credit_notes.create(
        params={
            "invoice": draft.id,
            "lines": [{"type": "invoice_line_item", "invoice_line_item": line.id, "amount": 1200}],
            "reason": "order_change",
        }
    )
    assert (note.type, note.amount, note.total, note.status) == (
        "pre_payment",
        1200,
        1200,
        "issued",
    )
    assert note.lines.data[0].invoice_line_item == line.id
    invoice = client.v1.invoices.retrieve(draft.id)
    assert (
        invoice.amount_due,
        invoice.amount_remaining,
        invoice.pre_payment_credit_notes_amount,
    ) == (2800, 2800, 1200)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.credit_notes.create(params={"invoice": draft.id, "amount": 3000})
    paid = client.v1.invoices.pay(draft.id)
    assert paid.amount_paid == 2800
    voided_note = client.v1.credit_notes.create(params={"invoice": draft.id, "amount": 100})
    assert voided_note.type == "post_payment"
    assert client.v1.credit_notes.void_credit_note(voided_note.id).status == "void"
    assert client.v1.customers.retrieve(customer.id).balance == 0
    assert (
        client.v1.events.list(params={"type": "credit_note.created"}).data[0].data.object.id
        == voided_note.id
    )


def test_credit_note_after_payment_refunds_and_credits(client: stripe.StripeClient) -> None:
    customer = make_customer(client)
    draft = _draft(client, customer, [5000])
    client.v1.invoices.pay(draft.id)
    note = client.v1.credit_notes.create(
        params={"invoice": draft.id, "amount": 2000, "refund_amount": 1500, "credit_amount": 500}
    )
    assert (note.type, note.post_payment_amount) == ("post_payment", 2000)
    assert len(note.refunds) == 1 and note.refunds[0].amount_refunded == 1500
    refund = client.v1.refunds.retrieve(note.refunds[0].refund)
    assert refund.amount == 1500
    assert client.v1.customers.retrieve(customer.id).balance == -500
    invoice = client.v1.invoices.retrieve(draft.id)
    assert (invoice.post_payment_credit_notes_amount, invoice.amount_paid) == (2000, 5000)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.credit_notes.create(params={"invoice": draft.id, "amount": 3001})


def test_invoice_payments_expand_and_currency_validation(client: stripe.StripeClient) -> None:
    customer = make_customer(client)
    draft = _draft(client, customer, [1500])
    client.v1.invoices.pay(draft.id)
    expanded = client.v1.invoices.retrieve(
        draft.id, params={"expand": ["payments.data.payment.payment_intent"]}
    )
    (payment,) = expanded.payments.data
    assert payment.payment.payment_intent.status == "succeeded"
    assert payment.payment.payment_intent.amount == 1500
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.invoice_items.create(
            params={"customer": customer.id, "amount": 5, "currency": "dollars"}
        )
    assert info.value.param == "currency"
