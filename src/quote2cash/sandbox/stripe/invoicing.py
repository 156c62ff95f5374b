"""Invoices (draft -> open -> paid | void), invoice items, invoice payments and credit notes."""

from __future__ import annotations

from fractions import Fraction

from .billing_engine import (
    emit_invoice,
    finalize_invoice,
    line_from_invoiceitem,
    mark_paid,
    new_invoice,
    new_invoiceitem,
    pay_invoice,
    pending_invoiceitems,
    refresh_amounts,
    round_minor,
    unit_amount,
    void_invoice,
)
from .errors import invalid_param, invalid_state, missing_param
from .params import Params
from .payments import create_refund_for_charge, resolve_payment_method
from .render import render
from .routing import route
from .search import search
from .store import JSON, Store, list_object, paginate, public, public_list
from .tax_rates import tax_rate_snapshots
from .taxation import line_taxes, split_tax, total_taxes

# --- invoice items ---------------------------------------------------------------------------


@route("POST", "/v1/invoiceitems", atomic=True)
def create_invoiceitem(store: Store, p: Params) -> JSON:
    p.allow(
        "customer",
        "amount",
        "currency",
        "description",
        "invoice",
        "subscription",
        "period",
        "metadata",
        "price",
        "pricing",
        "quantity",
        "unit_amount_decimal",
        "discountable",
        "tax_rates",
    )
    customer = store.get("customer", p.req_str("customer"), "customer")
    invoice = None
    invoice_id = p.str_("invoice")
    if invoice_id is not None:
        invoice = store.get("invoice", invoice_id, "invoice")
        if invoice["status"] != "draft":
            raise invalid_state(
                f"You can only add invoice items to draft invoices; {invoice_id} is "
                f"{invoice['status']}.",
                code="invoice_not_editable",
                param="invoice",
            )
        if invoice["customer"] != customer["id"]:
            raise invalid_param("invoice", "The invoice belongs to another customer.")
    quantity = p.int_("quantity", minimum=0)
    price = None
    price_id = p.str_("price")
    pricing = p.sub("pricing")
    if pricing is not None:
        price_id = pricing.str_("price") or price_id
    unit_decimal = p.decimal("unit_amount_decimal")
    amount = p.int_("amount")
    if price_id is not None:
        price = store.get("price", price_id, "price")
        currency = price["currency"]
        qty = 1 if quantity is None else quantity
        amount = round_minor(unit_amount(price) * qty)
        unit_text = price["unit_amount_decimal"]
    elif unit_decimal is not None:
        currency = p.currency()
        qty = 1 if quantity is None else quantity
        amount = round_minor(Fraction(unit_decimal) * qty)
        unit_text = str(unit_decimal)
    else:
        if amount is None:
            raise missing_param("amount")
        currency = p.currency()
        qty = 1
        unit_text = str(amount)
    if customer["currency"] not in (None, currency):
        raise invalid_param(
            "currency", f"The customer's currency is {customer['currency']}; cannot add {currency}."
        )
    now = store.now_for_clock(customer["test_clock"])
    period = p.sub("period")
    start = period.req_int("start") if period else now
    end = period.req_int("end") if period else now
    subscription = p.str_("subscription")
    if subscription is not None:
        store.get("subscription", subscription, "subscription")
    item = new_invoiceitem(
        store,
        customer=customer,
        amount=amount,
        currency=currency,
        description=p.str_("description"),
        period=(start, end),
        quantity=qty,
        price=price,
        unit_amount_decimal=unit_text,
        subscription=subscription,
        metadata=p.metadata(),
        discountable=p.bool_("discountable") is not False,
        tax_rates=tax_rate_snapshots(store, p, "tax_rates"),
    )
    if invoice is not None:
        line_from_invoiceitem(store, invoice, item)
    return public(item)


@route("GET", "/v1/invoiceitems/{id}")
def retrieve_invoiceitem(store: Store, p: Params, id: str) -> JSON:
    return public(store.get("invoiceitem", id))


def _editable_item(store: Store, item: JSON) -> None:
    if item["invoice"] is not None and store.get("invoice", item["invoice"])["status"] != "draft":
        raise invalid_state(
            "You can only modify invoice items that are on a draft invoice or pending.",
            code="invoice_not_editable",
        )


@route("POST", "/v1/invoiceitems/{id}")
def update_invoiceitem(store: Store, p: Params, id: str) -> JSON:
    p.allow("amount", "description", "metadata", "period", "quantity", "discountable")
    item = store.get("invoiceitem", id)
    _editable_item(store, item)
    amount = p.int_("amount")
    if amount is not None:
        item["amount"] = item["net_amount"] = amount
        item["pricing"]["unit_amount_decimal"] = str(amount)
    if p.has("description"):
        item["description"] = p.str_("description")
    item["metadata"] = p.metadata(item["metadata"])
    if item["invoice"] is not None:
        for line_id in store.get("invoice", item["invoice"])["_lines"]:
            line = store.get("line_item", line_id)
            if line["_invoiceitem"] == id:
                line["amount"] = line["subtotal"] = item["amount"]
                line["description"] = item["description"]
        refresh_amounts(store.get("invoice", item["invoice"]), store)
    return public(item)


@route("DELETE", "/v1/invoiceitems/{id}")
def delete_invoiceitem(store: Store, p: Params, id: str) -> JSON:
    item = store.get("invoiceitem", id)
    _editable_item(store, item)
    if item["invoice"] is not None:
        invoice = store.get("invoice", item["invoice"])
        for line_id in list(invoice["_lines"]):
            if store.get("line_item", line_id)["_invoiceitem"] == id:
                invoice["_lines"].remove(line_id)
                store.remove("line_item", line_id)
        refresh_amounts(invoice, store)
    store.remove("invoiceitem", id)
    return {"id": id, "object": "invoiceitem", "deleted": True}


@route("GET", "/v1/invoiceitems")
def list_invoiceitems(store: Store, p: Params) -> JSON:
    customer = p.str_("customer")
    invoice = p.str_("invoice")
    pending = p.bool_("pending")
    items = [
        public(i)
        for i in store.all("invoiceitem")
        if customer in (None, i["customer"])
        and invoice in (None, i["invoice"])
        and (pending is None or (i["invoice"] is None) == pending)
    ]
    return paginate(items, p, "/v1/invoiceitems")


# --- invoices --------------------------------------------------------------------------------


@route("POST", "/v1/invoices")
def create_invoice(store: Store, p: Params) -> JSON:
    p.allow(
        "customer",
        "subscription",
        "collection_method",
        "days_until_due",
        "due_date",
        "auto_advance",
        "description",
        "metadata",
        "default_payment_method",
        "pending_invoice_items_behavior",
        "currency",
        "footer",
        "default_tax_rates",
    )
    customer = store.get("customer", p.req_str("customer"), "customer")
    subscription = None
    if p.has("subscription"):
        subscription = store.get("subscription", p.str_("subscription"), "subscription")
    collection = (
        p.str_("collection_method", choices=["charge_automatically", "send_invoice"])
        or "charge_automatically"
    )
    behavior = p.str_("pending_invoice_items_behavior", choices=["exclude", "include"]) or "exclude"
    currency = (p.str_("currency") or customer["currency"] or "usd").lower()
    invoice = new_invoice(
        store,
        customer,
        currency=currency,
        billing_reason="manual",
        collection_method=collection,
        days_until_due=p.int_("days_until_due", minimum=0),
        subscription=subscription,
        description=p.str_("description"),
        metadata=p.metadata(),
        auto_advance=p.bool_("auto_advance"),
        default_payment_method=p.str_("default_payment_method"),
    )
    invoice["footer"] = p.str_("footer")
    default_rates = tax_rate_snapshots(store, p, "default_tax_rates")
    if default_rates is not None:
        invoice["default_tax_rates"] = default_rates
    due = p.int_("due_date")
    if due is not None:
        invoice["due_date"] = due
    if behavior == "include":
        for item in pending_invoiceitems(
            store, customer["id"], subscription["id"] if subscription else None
        ):
            if item["currency"] == currency:
                line_from_invoiceitem(store, invoice, item)
    emit_invoice(store, "invoice.created", invoice)
    return render(store, invoice)


@route("GET", "/v1/invoices/search")
def search_invoices(store: Store, p: Params) -> JSON:
    return search(store, p, "invoice", lambda obj: render(store, obj))


@route("GET", "/v1/invoices/{id}")
def retrieve_invoice(store: Store, p: Params, id: str) -> JSON:
    return render(store, store.get("invoice", id))


@route("POST", "/v1/invoices/{id}")
def update_invoice(store: Store, p: Params, id: str) -> JSON:
    p.allow(
        "description",
        "metadata",
        "auto_advance",
        "collection_method",
        "days_until_due",
        "default_payment_method",
        "due_date",
        "footer",
    )
    invoice = store.get("invoice", id)
    before = render(store, invoice)
    draft_only = (
        "collection_method",
        "days_until_due",
        "default_payment_method",
        "due_date",
        "footer",
    )
    if invoice["status"] != "draft" and any(p.has(k) for k in draft_only):
        raise invalid_state(
            "Only draft invoices can be edited this way.", code="invoice_not_editable"
        )
    for key in ("description", "footer", "default_payment_method"):
        if p.has(key):
            invoice[key] = p.str_(key)
    if p.has("auto_advance"):
        invoice["auto_advance"] = bool(p.bool_("auto_advance"))
    if p.has("collection_method"):
        invoice["collection_method"] = p.str_(
            "collection_method", choices=["charge_automatically", "send_invoice"]
        )
    if p.has("days_until_due"):
        invoice["days_until_due"] = p.int_("days_until_due", minimum=0)
    invoice["metadata"] = p.metadata(invoice["metadata"])
    emit_invoice(store, "invoice.updated", invoice, before=before)
    return render(store, invoice)


@route("DELETE", "/v1/invoices/{id}")
def delete_invoice(store: Store, p: Params, id: str) -> JSON:
    invoice = store.get("invoice", id)
    if invoice["status"] != "draft":
        raise invalid_state("You can only delete draft invoices.", code="invoice_not_editable")
    for line_id in invoice["_lines"]:
        line = store.get("line_item", line_id)
        if line["_invoiceitem"]:
            ii = store.lookup("invoiceitem", line["_invoiceitem"])
            if ii is not None:
                ii["invoice"] = None
        store.remove("line_item", line_id)
    store.remove("invoice", id)
    emit_invoice(store, "invoice.deleted", invoice)
    return {"id": id, "object": "invoice", "deleted": True}


@route("POST", "/v1/invoices/{id}/finalize")
def finalize(store: Store, p: Params, id: str) -> JSON:
    p.allow("auto_advance")
    invoice = store.get("invoice", id)
    if p.has("auto_advance"):
        invoice["auto_advance"] = bool(p.bool_("auto_advance"))
    finalize_invoice(store, invoice)
    return render(store, invoice)


@route("POST", "/v1/invoices/{id}/pay")
def pay(store: Store, p: Params, id: str) -> JSON:
    p.allow("payment_method", "paid_out_of_band", "off_session", "forgive", "source", "mandate")
    invoice = store.get("invoice", id)
    pm = p.str_("payment_method")
    if pm is not None:
        pm = resolve_payment_method(store, pm)["id"]
    error = pay_invoice(
        store, invoice, payment_method=pm, out_of_band=bool(p.bool_("paid_out_of_band"))
    )
    if error is not None:
        raise error
    return render(store, invoice)


@route("POST", "/v1/invoices/{id}/void")
def void(store: Store, p: Params, id: str) -> JSON:
    invoice = store.get("invoice", id)
    void_invoice(store, invoice)
    return render(store, invoice)


@route("POST", "/v1/invoices/{id}/mark_uncollectible")
def mark_uncollectible(store: Store, p: Params, id: str) -> JSON:
    invoice = store.get("invoice", id)
    if invoice["status"] != "open":
        raise invalid_state(
            "You can only mark open invoices as uncollectible.", code="invoice_not_editable"
        )
    invoice["status"] = "uncollectible"
    invoice["status_transitions"]["marked_uncollectible_at"] = store.now_for_customer(
        invoice["customer"]
    )
    emit_invoice(store, "invoice.marked_uncollectible", invoice)
    return render(store, invoice)


@route("POST", "/v1/invoices/{id}/send")
def send(store: Store, p: Params, id: str) -> JSON:
    invoice = store.get("invoice", id)
    if invoice["status"] != "open":
        raise invalid_state("You can only send open invoices.", code="invoice_not_editable")
    emit_invoice(store, "invoice.sent", invoice)
    return render(store, invoice)


@route("GET", "/v1/invoices/{id}/lines")
def list_lines(store: Store, p: Params, id: str) -> JSON:
    invoice = store.get("invoice", id)
    lines = [public(store.get("line_item", i)) for i in invoice["_lines"]]
    lines.reverse()
    return paginate(lines, p, f"/v1/invoices/{id}/lines")


@route("GET", "/v1/invoices")
def list_invoices(store: Store, p: Params) -> JSON:
    customer = p.str_("customer")
    subscription = p.str_("subscription")
    status = p.str_("status", choices=["draft", "open", "paid", "uncollectible", "void"])
    collection = p.str_("collection_method")
    items = [
        render(store, i)
        for i in store.all("invoice")
        if customer in (None, i["customer"])
        and subscription in (None, i["subscription"])
        and status in (None, i["status"])
        and collection in (None, i["collection_method"])
    ]
    return paginate(items, p, "/v1/invoices")


@route("GET", "/v1/invoice_payments")
def list_invoice_payments(store: Store, p: Params) -> JSON:
    """Filter by ``invoice``, ``status`` and ``payment[type]`` + ``payment[payment_intent]``."""
    invoice = p.str_("invoice")
    status = p.str_("status", choices=["canceled", "open", "paid"])
    payment = p.sub("payment")
    kind = intent = None
    if payment is not None:
        kind = payment.req_str("type", choices=["payment_intent", "payment_record"])
        intent = payment.str_("payment_intent")
    items = [
        public(x)
        for x in store.all("invoice_payment")
        if invoice in (None, x["invoice"])
        and status in (None, x["status"])
        and kind in (None, x["payment"]["type"])
        and intent in (None, x["payment"].get("payment_intent"))
    ]
    return paginate(items, p, "/v1/invoice_payments")


@route("GET", "/v1/invoice_payments/{id}")
def retrieve_invoice_payment(store: Store, p: Params, id: str) -> JSON:
    return public(store.get("invoice_payment", id))


# --- credit notes ----------------------------------------------------------------------------


def _credited_so_far(store: Store, invoice_id: str) -> int:
    return sum(
        c["amount"]
        for c in store.all("credit_note")
        if c["invoice"] == invoice_id and c["status"] == "issued"
    )


def _credit_note_lines(store: Store, invoice: JSON, p: Params) -> list[JSON]:
    lines: list[JSON] = []
    for entry in p.items("lines"):
        entry.allow(
            "type",
            "invoice_line_item",
            "quantity",
            "amount",
            "unit_amount",
            "unit_amount_decimal",
            "description",
            "metadata",
            "tax_rates",
        )
        kind = entry.req_str("type", choices=["invoice_line_item", "custom_line_item"])
        line: JSON = {
            "id": store.new_id("cnli"),
            "object": "credit_note_line_item",
            "discount_amount": 0,
            "discount_amounts": [],
            "livemode": False,
            "metadata": entry.metadata() or None,
            "pretax_credit_amounts": [],
            "tax_rates": [],
            "taxes": [],
            "type": kind,
        }
        if kind == "invoice_line_item":
            line_id = entry.req_str("invoice_line_item")
            if line_id not in invoice["_lines"]:
                raise invalid_param(
                    f"{entry.prefix}[invoice_line_item]",
                    f"No such invoice line item: '{line_id}' on {invoice['id']}",
                    code="resource_missing",
                )
            source = store.get("line_item", line_id)
            amount = entry.int_("amount", minimum=0)
            quantity = entry.int_("quantity", minimum=0)
            if amount is None:
                source_qty = source["quantity"] or 1
                quantity = source_qty if quantity is None else quantity
                if quantity > source_qty:
                    raise invalid_param(
                        f"{entry.prefix}[quantity]",
                        "The quantity cannot exceed the invoice line's quantity.",
                    )
                share = Fraction(quantity, source_qty)
                amount = round_minor(Fraction(source["amount"]) * share)
                # The same share of each discount the line had is credited back with it.
                shares = [
                    {
                        "amount": round_minor(Fraction(d["amount"]) * share),
                        "discount": d["discount"],
                    }
                    for d in source["discount_amounts"]
                ]
                line["discount_amounts"] = shares
                line["discount_amount"] = sum(int(d["amount"]) for d in shares)
                line["_item_discount"] = sum(
                    int(d["amount"]) for d in shares if d["discount"] in source["discounts"]
                )
            line.update(
                amount=amount,
                description=source["description"],
                invoice_line_item=line_id,
                quantity=quantity if quantity is not None else 1,
                unit_amount=None,
                unit_amount_decimal=None,
            )
            rates = source.get("_tax_rates") or invoice["default_tax_rates"]
            if entry.has("tax_rates"):
                raise invalid_param(
                    f"{entry.prefix}[tax_rates]",
                    "tax_rates can only be set on custom_line_item lines.",
                )
        else:
            unit = entry.req_int("unit_amount", minimum=0)
            quantity = entry.int_("quantity", minimum=1) or 1
            line.update(
                amount=unit * quantity,
                description=entry.req_str("description"),
                quantity=quantity,
                unit_amount=unit,
                unit_amount_decimal=str(unit),
            )
            rates = tax_rate_snapshots(store, entry, "tax_rates") or []
        line["tax_rates"] = [dict(r) for r in rates]
        line["taxes"] = line_taxes(
            rates,
            int(line["amount"]) - int(line["discount_amount"]),
            invoice["customer_tax_exempt"],
        )
        lines.append(line)
    return lines


@route("POST", "/v1/credit_notes", atomic=True)
def create_credit_note(store: Store, p: Params) -> JSON:
    p.allow(
        "invoice",
        "lines",
        "amount",
        "reason",
        "memo",
        "metadata",
        "refund_amount",
        "credit_amount",
        "out_of_band_amount",
        "effective_at",
        "email_type",
        "refunds",
    )
    invoice = store.get("invoice", p.req_str("invoice"), "invoice")
    before = render(store, invoice)
    if invoice["status"] not in ("open", "paid"):
        raise invalid_state(
            f"You can only create credit notes for open or paid invoices; {invoice['id']} "
            f"is {invoice['status']}.",
            code="invoice_not_editable",
            param="invoice",
        )
    lines = _credit_note_lines(store, invoice, p)
    amount = p.int_("amount", minimum=1)
    if lines:
        # Line amounts are gross; the note's total is what the lines credit after discounts,
        # plus exclusive tax.
        exclusive, _inclusive = split_tax([t for line in lines for t in line["taxes"]])
        net = sum(int(line["amount"]) - int(line["discount_amount"]) for line in lines)
        total = net + exclusive
        if amount is not None and amount != total:
            raise invalid_param("amount", "The amount must equal the sum of the credit note lines.")
    elif amount is not None:
        total = amount
        lines = [
            {
                "id": store.new_id("cnli"),
                "object": "credit_note_line_item",
                "amount": amount,
                "description": "Credit",
                "discount_amount": 0,
                "discount_amounts": [],
                "livemode": False,
                "metadata": None,
                "pretax_credit_amounts": [],
                "quantity": 1,
                "tax_rates": [],
                "taxes": [],
                "type": "custom_line_item",
                "unit_amount": amount,
                "unit_amount_decimal": str(amount),
            }
        ]
    else:
        raise invalid_param(
            "lines", "You must pass either `lines` or `amount`.", code="parameter_missing"
        )
    creditable = invoice["total"] - _credited_so_far(store, invoice["id"])
    if total <= 0 or total > creditable:
        raise invalid_param(
            "amount",
            f"The credit note's total ({total}) must be positive and at most the invoice's "
            f"remaining creditable amount ({creditable}).",
        )
    customer = store.get("customer", invoice["customer"])
    now = store.now_for_clock(customer["test_clock"])
    pre_payment = invoice["status"] == "open"
    refund_amount = p.int_("refund_amount", minimum=0) or 0
    out_of_band = p.int_("out_of_band_amount", minimum=0)
    credit_amount = p.int_("credit_amount", minimum=0)
    refunds: list[JSON] = []
    if pre_payment:
        if refund_amount or credit_amount or out_of_band:
            raise invalid_param(
                "refund_amount",
                "Refund, credit and out-of-band amounts apply only to paid invoices.",
            )
        if total > invoice["amount_remaining"]:
            raise invalid_param(
                "amount",
                f"The credit note's total ({total}) exceeds the invoice's amount remaining "
                f"({invoice['amount_remaining']}).",
            )
    else:
        if credit_amount is None:
            credit_amount = total - refund_amount - (out_of_band or 0)
        if refund_amount + credit_amount + (out_of_band or 0) != total:
            raise invalid_param(
                "refund_amount",
                "refund_amount + credit_amount + out_of_band_amount must equal the credit "
                "note total.",
            )
        if refund_amount:
            intent_id = invoice.get("_payment_intent")
            intent = store.lookup("payment_intent", intent_id or "")
            if intent is None or intent["latest_charge"] is None:
                raise invalid_param("refund_amount", "This invoice has no card payment to refund.")
            refund = create_refund_for_charge(
                store, store.get("charge", intent["latest_charge"]), refund_amount, None, {}
            )
            refunds.append(
                {
                    "amount_refunded": refund_amount,
                    "payment_record_refund": None,
                    "refund": refund["id"],
                    "type": "refund",
                }
            )
    sequence = 1 + sum(1 for c in store.all("credit_note") if c["invoice"] == invoice["id"])
    credited_discounts: dict[str, int] = {}
    for line in lines:
        for entry in line["discount_amounts"]:
            credited_discounts[entry["discount"]] = credited_discounts.get(
                entry["discount"], 0
            ) + int(entry["amount"])
    # Subtotal: after item discounts, before invoice-level ones (as the invoice's).
    subtotal = sum(int(line["amount"]) - int(line.get("_item_discount", 0)) for line in lines)
    taxes = [t for line in lines for t in line["taxes"]]
    exclusive, inclusive = split_tax(taxes)
    note: JSON = {
        "id": store.new_id("cn"),
        "object": "credit_note",
        "amount": total,
        "amount_shipping": 0,
        "created": now,
        "currency": invoice["currency"],
        "customer": customer["id"],
        "customer_account": None,
        "customer_balance_transaction": None,
        "discount_amount": sum(credited_discounts.values()),
        "discount_amounts": [
            {"amount": amount, "discount": discount_id}
            for discount_id, amount in credited_discounts.items()
        ],
        "effective_at": now,
        "invoice": invoice["id"],
        "livemode": False,
        "memo": p.str_("memo"),
        "metadata": p.metadata(),
        "number": f"{invoice['number']}-CN-{sequence:02d}",
        "out_of_band_amount": out_of_band,
        "pdf": f"https://pay.stripe.com/credit_notes/sandbox/{invoice['id']}/pdf",
        "post_payment_amount": 0 if pre_payment else total,
        "pre_payment_amount": total if pre_payment else 0,
        "pretax_credit_amounts": [],
        "reason": p.str_(
            "reason", choices=["duplicate", "fraudulent", "order_change", "product_unsatisfactory"]
        ),
        "refunds": refunds,
        "shipping_cost": None,
        "status": "issued",
        "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal - inclusive,
        "total": total,
        "total_excluding_tax": total - exclusive - inclusive,
        "total_taxes": total_taxes(taxes),
        "type": "pre_payment" if pre_payment else "post_payment",
        "voided_at": None,
        "_lines": lines,
        "_credit_amount": credit_amount or 0,
    }
    for line in lines:
        line["_credit_note"] = note["id"]
    store.add("credit_note", note)
    if pre_payment:
        invoice["pre_payment_credit_notes_amount"] += total
        refresh_amounts(invoice, store)
        if invoice["amount_remaining"] == 0:
            mark_paid(store, invoice, now)
    else:
        invoice["post_payment_credit_notes_amount"] += total
        if credit_amount:
            customer["balance"] -= credit_amount
            note["customer_balance_transaction"] = store.new_id("cbtxn")
    store.emit("credit_note.created", render_credit_note(note), created=now)
    emit_invoice(store, "invoice.updated", invoice, before=before)
    return render_credit_note(note)


def render_credit_note(note: JSON) -> JSON:
    out: JSON = public(note)
    out["lines"] = list_object(public_list(note["_lines"]), f"/v1/credit_notes/{note['id']}/lines")
    return out


@route("GET", "/v1/credit_notes/{id}")
def retrieve_credit_note(store: Store, p: Params, id: str) -> JSON:
    return render_credit_note(store.get("credit_note", id))


@route("POST", "/v1/credit_notes/{id}")
def update_credit_note(store: Store, p: Params, id: str) -> JSON:
    p.allow("memo", "metadata")
    note = store.get("credit_note", id)
    if p.has("memo"):
        note["memo"] = p.str_("memo")
    note["metadata"] = p.metadata(note["metadata"])
    return render_credit_note(note)


@route("POST", "/v1/credit_notes/{id}/void", atomic=True)
def void_credit_note(store: Store, p: Params, id: str) -> JSON:
    note = store.get("credit_note", id)
    if note["status"] == "void":
        raise invalid_state("This credit note is already voided.")
    if note["refunds"]:
        raise invalid_state("A credit note with refunds cannot be voided.")
    invoice = store.get("invoice", note["invoice"])
    now = store.now_for_customer(note["customer"])
    if note["type"] == "pre_payment":
        if invoice["status"] != "open":
            raise invalid_state(
                "The invoice of this credit note is no longer open; "
                "the credit note cannot be voided."
            )
        invoice["pre_payment_credit_notes_amount"] -= note["amount"]
        refresh_amounts(invoice, store)
    else:
        invoice["post_payment_credit_notes_amount"] -= note["amount"]
        store.get("customer", note["customer"])["balance"] += note["_credit_amount"]
    note["status"] = "void"
    note["voided_at"] = now
    store.emit("credit_note.voided", render_credit_note(note), created=now)
    return render_credit_note(note)


@route("GET", "/v1/credit_notes/{id}/lines")
def list_credit_note_lines(store: Store, p: Params, id: str) -> JSON:
    note = store.get("credit_note", id)
    lines = public_list(note["_lines"])
    lines.reverse()
    return paginate(lines, p, f"/v1/credit_notes/{id}/lines")


@route("GET", "/v1/credit_notes")
def list_credit_notes(store: Store, p: Params) -> JSON:
    invoice = p.str_("invoice")
    customer = p.str_("customer")
    items = [
        render_credit_note(c)
        for c in store.all("credit_note")
        if invoice in (None, c["invoice"]) and customer in (None, c["customer"])
    ]
    return paginate(items, p, "/v1/credit_notes")
