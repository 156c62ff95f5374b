"""Card payment methods, payment intents, charges and refunds, with Stripe's test cards.

Test cards decide outcomes: ``pm_card_visa`` (4242...) succeeds; ``pm_card_chargeDeclined``
(4000000000000002) is declined even when attached; ``pm_card_chargeCustomerFail``
(4000000000000341) attaches but every charge is declined; ``...InsufficientFunds`` (9995) declines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import StripeApiError, invalid_param, invalid_state, missing_param
from .params import Params
from .routing import route
from .search import search
from .store import JSON, Store, list_object, paginate, public


@dataclass(frozen=True)
class TestCard:
    brand: str
    last4: str
    decline_code: str | None = None
    declines_on_attach: bool = False
    funding: str = "credit"


_VISA = TestCard("visa", "4242")
_MASTERCARD = TestCard("mastercard", "4444")
_DECLINED = TestCard("visa", "0002", "generic_decline", declines_on_attach=True)
_CUSTOMER_FAIL = TestCard("visa", "0341", "generic_decline")
_INSUFFICIENT = TestCard("visa", "9995", "insufficient_funds", declines_on_attach=True)

MAGIC_PAYMENT_METHODS = {
    "pm_card_visa": _VISA,
    "pm_card_mastercard": _MASTERCARD,
    "pm_card_chargeDeclined": _DECLINED,
    "pm_card_chargeCustomerFail": _CUSTOMER_FAIL,
    "pm_card_chargeDeclinedInsufficientFunds": _INSUFFICIENT,
}
MAGIC_TOKENS = {
    "tok_visa": _VISA,
    "tok_mastercard": _MASTERCARD,
    "tok_chargeDeclined": _DECLINED,
    "tok_chargeCustomerFail": _CUSTOMER_FAIL,
    "tok_chargeDeclinedInsufficientFunds": _INSUFFICIENT,
}
CARD_NUMBERS = {
    "4242424242424242": _VISA,
    "5555555555554444": _MASTERCARD,
    "4000000000000002": _DECLINED,
    "4000000000000341": _CUSTOMER_FAIL,
    "4000000000009995": _INSUFFICIENT,
}
MINIMUM_CHARGE = {"usd": 50, "eur": 50, "gbp": 30, "chf": 50, "cad": 50, "aud": 50}


def card_declined(store: Store, card: TestCard, **extra: Any) -> StripeApiError:
    """Stripe's 402 ``card_error`` for a declined card."""
    message = (
        "Your card has insufficient funds."
        if card.decline_code == "insufficient_funds"
        else "Your card was declined."
    )
    return StripeApiError(
        402,
        "card_error",
        message,
        code="card_declined",
        decline_code=card.decline_code,
        request_log_url=None,
        **extra,
    )


def _card_of(pm: JSON) -> TestCard:
    card = pm["_card"]
    assert isinstance(card, TestCard)
    return card


def new_payment_method(store: Store, card: TestCard, *, billing: Params | None = None) -> JSON:
    details: JSON = {"address": None, "email": None, "name": None, "phone": None, "tax_id": None}
    if billing is not None:
        for key in ("email", "name", "phone"):
            details[key] = billing.str_(key)
    pm: JSON = {
        "id": store.new_id("pm"),
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": details,
        "card": {
            "brand": card.brand,
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "pass",
            },
            "country": "US",
            "display_brand": card.brand,
            "exp_month": 12,
            "exp_year": 2034,
            "fingerprint": "fp" + card.last4 + card.brand,
            "funding": card.funding,
            "generated_from": None,
            "last4": card.last4,
            "networks": {"available": [card.brand], "preferred": None},
            "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "created": store.real_now(),
        "customer": None,
        "customer_account": None,
        "livemode": False,
        "metadata": {},
        "type": "card",
        "_card": card,
    }
    return store.add("payment_method", pm)


def resolve_payment_method(store: Store, pm_id: str, param: str = "payment_method") -> JSON:
    """A stored payment method, or a fresh one for a magic test id like ``pm_card_visa``."""
    card = MAGIC_PAYMENT_METHODS.get(pm_id) or MAGIC_TOKENS.get(pm_id)
    if card is not None:
        return new_payment_method(store, card)
    return store.get("payment_method", pm_id, param)


def attach_payment_method(
    store: Store, pm: JSON, customer_id: str, *, announce: bool = True
) -> JSON:
    """Attach a card to a customer; cards that decline on attach raise 402 ``card_declined``."""
    customer = store.get("customer", customer_id, "customer")
    if pm["customer"] not in (None, customer_id):
        raise invalid_state(
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
        )
    card = _card_of(pm)
    if card.declines_on_attach:
        raise card_declined(store, card, param="")
    newly_attached = pm["customer"] is None
    pm["customer"] = customer_id
    if newly_attached and announce:
        store.emit(
            "payment_method.attached", public(pm), created=store.now_for_customer(customer["id"])
        )
    return pm


def new_charge(store: Store, intent: JSON, pm: JSON, succeeded: bool, failure: str | None) -> JSON:
    card = _card_of(pm)
    now = store.now_for_customer(intent["customer"])
    charge: JSON = {
        "id": store.new_id("ch"),
        "object": "charge",
        "amount": intent["amount"],
        "amount_captured": intent["amount"] if succeeded else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": store.new_id("txn") if succeeded else None,
        "billing_details": dict(pm["billing_details"]),
        "calculated_statement_descriptor": "QUOTE2CASH SANDBOX",
        "captured": succeeded,
        "created": now,
        "currency": intent["currency"],
        "customer": intent["customer"],
        "description": intent["description"],
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": "card_declined" if not succeeded else None,
        "failure_message": failure,
        "fraud_details": {},
        "livemode": False,
        "metadata": dict(intent["metadata"]),
        "on_behalf_of": None,
        "outcome": {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network" if succeeded else "declined_by_network",
            "reason": None if succeeded else card.decline_code,
            "risk_level": "normal",
            "seller_message": "Payment complete."
            if succeeded
            else "The bank did not return any further details with this decline.",
            "type": "authorized" if succeeded else "issuer_declined",
        },
        "paid": succeeded,
        "payment_intent": intent["id"],
        "payment_method": pm["id"],
        "payment_method_details": {
            "card": {
                "amount_authorized": intent["amount"] if succeeded else None,
                "authorization_code": "123456" if succeeded else None,
                "brand": card.brand,
                "checks": dict(pm["card"]["checks"]),
                "country": "US",
                "exp_month": pm["card"]["exp_month"],
                "exp_year": pm["card"]["exp_year"],
                "extended_authorization": {"status": "disabled"},
                "fingerprint": pm["card"]["fingerprint"],
                "funding": card.funding,
                "incremental_authorization": {"status": "unavailable"},
                "installments": None,
                "last4": card.last4,
                "mandate": None,
                "multicapture": {"status": "unavailable"},
                "network": card.brand,
                "network_token": {"used": False},
                "network_transaction_id": None,
                "overcapture": {
                    "maximum_amount_capturable": intent["amount"],
                    "status": "unavailable",
                },
                "regulated_status": "unregulated",
                "three_d_secure": None,
                "transaction_link_id": None,
                "wallet": None,
            },
            "type": "card",
        },
        "receipt_email": intent["receipt_email"],
        "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/sandbox/{intent['id']}",
        "refunded": False,
        "refunds": None,
        "source": None,
        "review": None,
        "shipping": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded" if succeeded else "failed",
        "transfer_data": None,
        "transfer_group": None,
    }
    return store.add("charge", charge)


def new_payment_intent(
    store: Store,
    *,
    amount: int,
    currency: str,
    customer: str | None,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
    payment_method: str | None = None,
) -> JSON:
    now = store.now_for_customer(customer)
    pi_id = store.new_id("pi")
    intent: JSON = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"{pi_id}_secret_{store.new_id('s')[2:]}",
        "confirmation_method": "automatic",
        "created": now,
        "currency": currency,
        "customer": customer,
        "customer_account": None,
        "description": description,
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "managed_payments": {"enabled": False},
        "metadata": dict(metadata or {}),
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": payment_method,
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {
                "installments": None,
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            }
        },
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method" if payment_method is None else "requires_confirmation",
        "transfer_data": None,
        "transfer_group": None,
    }
    store.add("payment_intent", intent)
    store.emit("payment_intent.created", public(intent), created=now)
    return intent


def confirm_payment_intent(store: Store, intent: JSON) -> StripeApiError | None:
    """Charge the intent's card; returns the decline error (already recorded) or None on success."""
    if intent["status"] in ("succeeded", "canceled"):
        raise invalid_state(
            f"This PaymentIntent's status is {intent['status']} and cannot be confirmed.",
            code="payment_intent_unexpected_state",
        )
    if intent["payment_method"] is None:
        raise missing_param("payment_method")
    pm = store.get("payment_method", intent["payment_method"], "payment_method")
    card = _card_of(pm)
    now = store.now_for_customer(intent["customer"])
    if card.decline_code is not None:
        error = card_declined(store, card)
        charge = new_charge(store, intent, pm, False, error.message)
        intent["latest_charge"] = charge["id"]
        intent["status"] = "requires_payment_method"
        intent["last_payment_error"] = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": card.decline_code,
            "message": error.message,
            "charge": charge["id"],
            "doc_url": "https://stripe.com/docs/error-codes/card-declined",
            "payment_method": public(pm),
        }
        store.emit("charge.failed", render_charge(store, charge), created=now)
        store.emit("payment_intent.payment_failed", public(intent), created=now)
        error.extra.update(
            charge=charge["id"], payment_intent=public(intent), payment_method=public(pm)
        )
        return error
    charge = new_charge(store, intent, pm, True, None)
    intent["latest_charge"] = charge["id"]
    intent["status"] = "succeeded"
    intent["amount_received"] = intent["amount"]
    intent["last_payment_error"] = None
    store.emit("charge.succeeded", render_charge(store, charge), created=now)
    store.emit("payment_intent.succeeded", public(intent), created=now)
    return None


# --- payment methods -------------------------------------------------------------------------


@route("POST", "/v1/payment_methods")
def create_payment_method(store: Store, p: Params) -> JSON:
    p.allow("type", "card", "billing_details", "metadata", "customer", "payment_method")
    p.req_str("type", choices=["card"])
    card_params = p.sub("card", required=True)
    assert card_params is not None
    token = card_params.str_("token")
    card: TestCard | None
    if token is not None:
        card = MAGIC_TOKENS.get(token)
        if card is None:
            raise invalid_param("card[token]", f"No such token: '{token}'", code="resource_missing")
    else:
        number = card_params.req_str("number").replace(" ", "")
        card = CARD_NUMBERS.get(number)
        if card is None:
            raise StripeApiError(
                402,
                "card_error",
                "Your card number is incorrect.",
                code="incorrect_number",
                param="number",
            )
        card_params.req_int("exp_month")
        card_params.req_int("exp_year")
    pm = new_payment_method(store, card, billing=p.sub("billing_details"))
    pm["metadata"] = p.metadata()
    return public(pm)


@route("GET", "/v1/payment_methods/{id}")
def retrieve_payment_method(store: Store, p: Params, id: str) -> JSON:
    return public(resolve_payment_method(store, id, "payment_method"))


@route("POST", "/v1/payment_methods/{id}")
def update_payment_method(store: Store, p: Params, id: str) -> JSON:
    p.allow("metadata", "billing_details", "allow_redisplay")
    pm = store.get("payment_method", id)
    pm["metadata"] = p.metadata(pm["metadata"])
    billing = p.sub("billing_details")
    if billing is not None:
        for key in ("email", "name", "phone"):
            if billing.has(key):
                pm["billing_details"][key] = billing.str_(key)
    return public(pm)


@route("GET", "/v1/payment_methods")
def list_payment_methods(store: Store, p: Params) -> JSON:
    customer = p.str_("customer")
    items = [
        pm for pm in store.all("payment_method") if customer is None or pm["customer"] == customer
    ]
    return paginate([public(i) for i in items], p, "/v1/payment_methods")


@route("GET", "/v1/customers/{customer}/payment_methods")
def list_customer_payment_methods(store: Store, p: Params, customer: str) -> JSON:
    store.get("customer", customer)
    items = [public(pm) for pm in store.all("payment_method") if pm["customer"] == customer]
    return paginate(items, p, f"/v1/customers/{customer}/payment_methods")


@route("POST", "/v1/payment_methods/{id}/attach")
def attach(store: Store, p: Params, id: str) -> JSON:
    p.allow("customer")
    pm = resolve_payment_method(store, id)
    return public(attach_payment_method(store, pm, p.req_str("customer")))


@route("POST", "/v1/payment_methods/{id}/detach")
def detach(store: Store, p: Params, id: str) -> JSON:
    pm = store.get("payment_method", id)
    if pm["customer"] is None:
        raise invalid_state(
            "The payment method you provided is not attached to a customer so detachment "
            "is impossible.",
            code="payment_method_unexpected_state",
        )
    customer = store.lookup("customer", pm["customer"])
    if customer is not None and customer["invoice_settings"]["default_payment_method"] == pm["id"]:
        customer["invoice_settings"]["default_payment_method"] = None
    pm["customer"] = None
    store.emit("payment_method.detached", public(pm))
    return public(pm)


# --- payment intents ---------------------------------------------------------------------------

_PI_PARAMS = (
    "amount",
    "currency",
    "customer",
    "description",
    "metadata",
    "payment_method",
    "payment_method_types",
    "automatic_payment_methods",
    "confirm",
    "off_session",
    "receipt_email",
    "setup_future_usage",
    "capture_method",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "return_url",
    "error_on_requires_action",
)


def _check_amount(amount: int, currency: str) -> None:
    minimum = MINIMUM_CHARGE.get(currency)
    if minimum is not None and amount < minimum:
        raise StripeApiError(
            400,
            "invalid_request_error",
            f"Amount must be at least {minimum} {currency} minor units.",
            code="amount_too_small",
            param="amount",
            saved=False,
        )


@route("POST", "/v1/payment_intents")
def create_payment_intent(store: Store, p: Params) -> JSON:
    p.allow(*_PI_PARAMS)
    amount = p.req_int("amount", minimum=1)
    currency = p.currency()
    _check_amount(amount, currency)
    customer = p.str_("customer")
    if customer is not None:
        store.get("customer", customer, "customer")
    capture = p.str_("capture_method")
    if capture not in (None, "automatic", "automatic_async"):
        raise invalid_param(
            "capture_method", "Only automatic capture is supported by the emulator."
        )
    pm_id = p.str_("payment_method")
    pm = resolve_payment_method(store, pm_id) if pm_id else None
    if pm is not None and customer is not None and pm["customer"] not in (None, customer):
        raise invalid_param("payment_method", "The payment method belongs to another customer.")
    intent = new_payment_intent(
        store,
        amount=amount,
        currency=currency,
        customer=customer,
        description=p.str_("description"),
        metadata=p.metadata(),
        payment_method=pm["id"] if pm else None,
    )
    intent["receipt_email"] = p.str_("receipt_email")
    intent["setup_future_usage"] = p.str_("setup_future_usage")
    if p.bool_("confirm"):
        error = confirm_payment_intent(store, intent)
        if error is not None:
            raise error
    return public(intent)


@route("GET", "/v1/payment_intents/search")
def search_payment_intents(store: Store, p: Params) -> JSON:
    return search(store, p, "payment_intent", public)


@route("GET", "/v1/payment_intents/{id}")
def retrieve_payment_intent(store: Store, p: Params, id: str) -> JSON:
    return public(store.get("payment_intent", id))


@route("POST", "/v1/payment_intents/{id}")
def update_payment_intent(store: Store, p: Params, id: str) -> JSON:
    p.allow("amount", "description", "metadata", "payment_method", "receipt_email", "customer")
    intent = store.get("payment_intent", id)
    if intent["status"] in ("succeeded", "canceled"):
        raise invalid_state(
            f"This PaymentIntent's status is {intent['status']} and cannot be updated.",
            code="payment_intent_unexpected_state",
        )
    amount = p.int_("amount", minimum=1)
    if amount is not None:
        _check_amount(amount, intent["currency"])
        intent["amount"] = amount
    if p.has("description"):
        intent["description"] = p.str_("description")
    pm_id = p.str_("payment_method")
    if pm_id:
        intent["payment_method"] = resolve_payment_method(store, pm_id)["id"]
        intent["status"] = "requires_confirmation"
    intent["metadata"] = p.metadata(intent["metadata"])
    return public(intent)


@route("POST", "/v1/payment_intents/{id}/confirm")
def confirm(store: Store, p: Params, id: str) -> JSON:
    p.allow("payment_method", "off_session", "return_url", "error_on_requires_action")
    intent = store.get("payment_intent", id)
    pm_id = p.str_("payment_method")
    if pm_id:
        intent["payment_method"] = resolve_payment_method(store, pm_id)["id"]
    error = confirm_payment_intent(store, intent)
    if error is not None:
        raise error
    return public(intent)


@route("POST", "/v1/payment_intents/{id}/cancel")
def cancel_payment_intent(store: Store, p: Params, id: str) -> JSON:
    p.allow("cancellation_reason")
    intent = store.get("payment_intent", id)
    if intent["status"] in ("succeeded", "canceled"):
        raise invalid_state(
            f"You cannot cancel this PaymentIntent because it has a status of {intent['status']}.",
            code="payment_intent_unexpected_state",
        )
    intent["status"] = "canceled"
    intent["canceled_at"] = store.now_for_customer(intent["customer"])
    intent["cancellation_reason"] = p.str_("cancellation_reason") or "requested_by_customer"
    store.emit("payment_intent.canceled", public(intent))
    return public(intent)


@route("GET", "/v1/payment_intents")
def list_payment_intents(store: Store, p: Params) -> JSON:
    customer = p.str_("customer")
    items = [public(i) for i in store.all("payment_intent") if customer in (None, i["customer"])]
    return paginate(items, p, "/v1/payment_intents")


# --- charges and refunds ----------------------------------------------------------------------


def render_charge(store: Store, charge: JSON) -> JSON:
    """The charge with its ``refunds`` list filled in, newest first."""
    out = public(charge)
    refunds = [public(r) for r in store.all("refund") if r["charge"] == charge["id"]]
    refunds.reverse()
    out["refunds"] = list_object(refunds, f"/v1/charges/{charge['id']}/refunds")
    return out


@route("GET", "/v1/charges/{id}")
def retrieve_charge(store: Store, p: Params, id: str) -> JSON:
    return render_charge(store, store.get("charge", id))


@route("GET", "/v1/charges")
def list_charges(store: Store, p: Params) -> JSON:
    customer = p.str_("customer")
    intent = p.str_("payment_intent")
    items = [
        render_charge(store, c)
        for c in store.all("charge")
        if customer in (None, c["customer"]) and intent in (None, c["payment_intent"])
    ]
    return paginate(items, p, "/v1/charges")


def create_refund_for_charge(
    store: Store, charge: JSON, amount: int | None, reason: str | None, metadata: dict[str, str]
) -> JSON:
    """Refund part or all of a succeeded charge; the unrefunded amount bounds ``amount``."""
    if charge["status"] != "succeeded":
        raise invalid_state("This charge did not succeed and cannot be refunded.", param="charge")
    unrefunded = charge["amount"] - charge["amount_refunded"]
    if unrefunded <= 0:
        raise invalid_state(
            f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
        )
    value = unrefunded if amount is None else amount
    if value > unrefunded:
        raise invalid_state(
            f"Refund amount ({value}) is greater than unrefunded amount on charge ({unrefunded})",
            code="amount_too_large",
            param="amount",
        )
    now = store.now_for_customer(charge["customer"])
    refund: JSON = {
        "id": store.new_id("re"),
        "object": "refund",
        "amount": value,
        "balance_transaction": store.new_id("txn"),
        "charge": charge["id"],
        "created": now,
        "currency": charge["currency"],
        "customer": charge["customer"],
        "customer_account": None,
        "destination_details": {
            "card": {
                "reference": None,
                "reference_status": "pending",
                "reference_type": "acquirer_reference_number",
                "type": "refund",
            },
            "type": "card",
        },
        "metadata": metadata,
        "payment_intent": charge["payment_intent"],
        "payment_method": charge["payment_method"],
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
        "livemode": False,
    }
    store.add("refund", refund)
    charge["amount_refunded"] += value
    charge["refunded"] = charge["amount_refunded"] == charge["amount"]
    store.emit("charge.refunded", render_charge(store, charge), created=now)
    store.emit("refund.created", public(refund), created=now)
    return refund


@route("POST", "/v1/refunds")
def create_refund(store: Store, p: Params) -> JSON:
    p.allow("charge", "payment_intent", "amount", "reason", "metadata", "instructions_email")
    charge_id = p.str_("charge")
    intent_id = p.str_("payment_intent")
    if charge_id is None and intent_id is None:
        raise missing_param("charge")
    if charge_id is not None:
        charge = store.get("charge", charge_id, "charge")
    else:
        intent = store.get("payment_intent", intent_id, "payment_intent")
        if intent["status"] != "succeeded" or intent["latest_charge"] is None:
            raise invalid_state(
                f"This PaymentIntent ({intent['id']}) does not have a successful charge to refund.",
                code="charge_not_refundable",
                param="payment_intent",
            )
        charge = store.get("charge", intent["latest_charge"])
    reason = p.str_("reason", choices=["duplicate", "fraudulent", "requested_by_customer"])
    refund = create_refund_for_charge(
        store, charge, p.int_("amount", minimum=1), reason, p.metadata()
    )
    return public(refund)


@route("GET", "/v1/refunds/{id}")
def retrieve_refund(store: Store, p: Params, id: str) -> JSON:
    return public(store.get("refund", id))


@route("POST", "/v1/refunds/{id}")
def update_refund(store: Store, p: Params, id: str) -> JSON:
    p.allow("metadata")
    refund = store.get("refund", id)
    refund["metadata"] = p.metadata(refund["metadata"])
    return public(refund)


@route("GET", "/v1/refunds")
def list_refunds(store: Store, p: Params) -> JSON:
    charge = p.str_("charge")
    intent = p.str_("payment_intent")
    items = [
        public(r)
        for r in store.all("refund")
        if charge in (None, r["charge"]) and intent in (None, r["payment_intent"])
    ]
    return paginate(items, p, "/v1/refunds")
