"""The legacy ERP's SOAP 1.1 service (spyne): masters, sales orders, document look-ups, listings.

Every refusal is a SOAP fault whose code says what kind (``Client.CreditLimitExceeded``,
``Client.TaxRegistrationRequired``, ``Client.UnknownCustomer``, ``Client.Validation`` ...) and
whose message names the record and the field. Amounts are ``xs:decimal``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal as PyDecimal
from typing import Any, Final

from spyne import (
    Application,
    Array,
    ComplexModel,
    Decimal,
    Fault,
    Integer,
    ServiceBase,
    Unicode,
    rpc,
)
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

from quote2cash.sandbox.legacy_erp.books import (
    RECORD_KINDS,
    Balance,
    Books,
    CustomerData,
    Line,
    Refusal,
)

NAMESPACE: Final = "urn:q2c:legacy-erp"
MAX_PAGE: Final = 500


class Model(ComplexModel):
    __namespace__ = NAMESPACE


class CustomerIn(Model):
    reference = Unicode(min_occurs=1)
    entity = Unicode(min_occurs=1)
    name = Unicode(min_occurs=1)
    global_id = Unicode
    email = Unicode
    phone = Unicode
    line1 = Unicode
    line2 = Unicode
    city = Unicode
    postal_code = Unicode
    state = Unicode
    country = Unicode
    vat_type = Unicode
    vat = Unicode


class Customer(Model):
    number = Unicode
    reference = Unicode
    entity = Unicode
    name = Unicode
    global_id = Unicode
    email = Unicode
    phone = Unicode
    line1 = Unicode
    line2 = Unicode
    city = Unicode
    postal_code = Unicode
    state = Unicode
    country = Unicode
    vat_type = Unicode
    vat = Unicode
    credit_limit = Decimal
    created_at = Unicode


class Item(Model):
    code = Unicode
    name = Unicode
    unit = Unicode


class OrderLine(Model):
    item = Unicode(min_occurs=1)
    quantity = Decimal(min_occurs=1)
    unit_price = Decimal(min_occurs=1)
    amount = Decimal(min_occurs=1)


class OrderIn(Model):
    reference = Unicode(min_occurs=1)
    entity = Unicode(min_occurs=1)
    customer = Unicode(min_occurs=1)
    currency = Unicode(min_occurs=1)
    start_date = Unicode
    end_date = Unicode
    lines = Array(OrderLine)


class Order(Model):
    number = Unicode
    reference = Unicode
    entity = Unicode
    customer = Unicode
    currency = Unicode
    total = Decimal
    quantity = Integer
    start_date = Unicode
    end_date = Unicode
    created_at = Unicode
    lines = Array(OrderLine)


class Document(Model):
    """A receivable document (invoice, credit note, customer credit) as it stands now."""

    number = Unicode
    kind = Unicode
    reference = Unicode
    entity = Unicode
    customer = Unicode
    currency = Unicode
    total = Decimal
    tax = Decimal
    paid = Decimal
    due = Decimal
    refunded = Decimal
    status = Unicode
    invoice = Unicode
    created_at = Unicode


class Payment(Model):
    number = Unicode
    reference = Unicode
    invoice = Unicode
    customer = Unicode
    currency = Unicode
    amount = Decimal
    refunded = Decimal
    payment_ref = Unicode
    created_at = Unicode


class Reversal(Model):
    number = Unicode
    reference = Unicode
    payment_ref = Unicode
    amount = Decimal


def _books(ctx: Any) -> Books:
    books: Books = ctx.app.config["books"]
    return books


@contextmanager
def _faults() -> Iterator[None]:
    try:
        yield
    except Refusal as refusal:
        raise Fault(faultcode=refusal.code, faultstring=refusal.message) from None


def _page(offset: int | None, limit: int | None) -> tuple[int, int]:
    offset = max(int(offset or 0), 0)
    limit = min(max(int(limit or 100), 1), MAX_PAGE)
    return offset, limit


def _document(balance: Balance) -> Document:
    return Document(
        number=balance.number,
        kind=balance.kind,
        reference=balance.reference,
        entity=balance.entity,
        customer=balance.customer,
        currency=balance.currency,
        total=balance.total,
        tax=balance.tax,
        paid=balance.paid,
        due=balance.due,
        refunded=balance.refunded,
        status=balance.status,
        invoice=balance.invoice,
        created_at=balance.created_at,
    )


def _customer(row: dict[str, Any]) -> Customer:
    values = {k: row[k] for k in Customer._type_info if k in row}
    values["credit_limit"] = PyDecimal(row["credit_limit"])
    return Customer(**values)


class LegacyErpService(ServiceBase):
    """What the hub (and finance) may ask the ERP online; invoices and cash go through files."""

    @rpc(_returns=Unicode)
    def Ping(ctx: Any) -> str:
        return "legacy-erp"

    @rpc(CustomerIn, _returns=Unicode)
    def UpsertCustomer(ctx: Any, customer: CustomerIn) -> str:
        with _faults():
            if customer is None:
                raise Refusal("Client.Validation", "customer: the customer element is missing")
            fields = {k: getattr(customer, k) for k in CustomerIn._type_info}
            return _books(ctx).upsert_customer(CustomerData(**fields))

    @rpc(Unicode, _returns=Customer)
    def GetCustomer(ctx: Any, number: str) -> Customer:
        with _faults():
            return _customer(_books(ctx).customer(number or ""))

    @rpc(Unicode, Decimal, _returns=Unicode)
    def SetCreditLimit(ctx: Any, number: str, credit_limit: PyDecimal) -> str:
        with _faults():
            if credit_limit is None:
                raise Refusal("Client.Validation", f"customer {number}: credit_limit is missing")
            _books(ctx).set_credit_limit(number or "", credit_limit)
            return number

    @rpc(Integer, Integer, _returns=Array(Item))
    def ListItems(ctx: Any, offset: int | None, limit: int | None) -> list[Item]:
        return [Item(**row) for row in _books(ctx).items(*_page(offset, limit))]

    @rpc(OrderIn, _returns=Unicode)
    def CreateSalesOrder(ctx: Any, order: OrderIn) -> str:
        with _faults():
            if order is None:
                raise Refusal("Client.Validation", "order: the order element is missing")
            lines = [
                Line(item=ln.item, quantity=ln.quantity, unit_price=ln.unit_price, amount=ln.amount)
                for ln in order.lines or []
            ]
            return _books(ctx).create_order(
                order.reference,
                order.entity,
                order.customer,
                order.currency,
                lines,
                order.start_date,
                order.end_date,
            )

    @rpc(Unicode, Unicode, _returns=Unicode)
    def FindDocument(ctx: Any, record_type: str, reference: str) -> str | None:
        """The document number the hub's reference created, or nothing."""
        with _faults():
            if record_type not in RECORD_KINDS:
                raise Refusal(
                    "Client.Validation",
                    f"record_type {record_type!r} is not one of {', '.join(RECORD_KINDS)}",
                )
            return _books(ctx).find(record_type, reference or "")

    @rpc(Unicode, _returns=Document)
    def InvoiceStatus(ctx: Any, number: str) -> Document:
        with _faults():
            return _document(_books(ctx).balance(number or ""))

    @rpc(Unicode, _returns=Array(Reversal))
    def ListReversals(ctx: Any, invoice: str) -> list[Reversal]:
        with _faults():
            _books(ctx).balance(invoice or "")
            return [
                Reversal(
                    number=r["number"],
                    reference=r["reference"],
                    payment_ref=r["payment_ref"],
                    amount=PyDecimal(r["total"]),
                )
                for r in _books(ctx).reversals(invoice)
            ]

    @rpc(Integer, Integer, Unicode, _returns=Array(Customer))
    def ListCustomers(ctx: Any, offset: int | None, limit: int | None, since: str) -> list[Any]:
        return [_customer(r) for r in _books(ctx).listing("customer", *_page(offset, limit), since)]

    @rpc(Integer, Integer, Unicode, _returns=Array(Order))
    def ListOrders(ctx: Any, offset: int | None, limit: int | None, since: str) -> list[Any]:
        books = _books(ctx)
        rows = books.listing("order", *_page(offset, limit), since)
        return [
            Order(
                **{k: r[k] for k in Order._type_info if k in r and k != "total"},
                total=PyDecimal(r["total"]),
                lines=[OrderLine(**line) for line in books.order_lines(r["number"])],
            )
            for r in rows
        ]

    @rpc(Integer, Integer, Unicode, _returns=Array(Document))
    def ListInvoices(ctx: Any, offset: int | None, limit: int | None, since: str) -> list[Any]:
        books = _books(ctx)
        rows = books.listing("invoice", *_page(offset, limit), since)
        return [_document(books.balance(r["number"])) for r in rows]

    @rpc(Integer, Integer, Unicode, _returns=Array(Payment))
    def ListPayments(ctx: Any, offset: int | None, limit: int | None, since: str) -> list[Any]:
        books = _books(ctx)
        rows = books.listing("payment", *_page(offset, limit), since)

        def refunded(row: dict[str, Any]) -> PyDecimal:
            if not row["payment_ref"]:
                return PyDecimal(0)
            return sum(
                (
                    PyDecimal(r["total"])
                    for r in books.reversals(row["invoice"])
                    if r["payment_ref"] == row["payment_ref"]
                ),
                PyDecimal(0),
            )

        return [
            Payment(
                number=r["number"],
                reference=r["reference"],
                invoice=r["invoice"],
                customer=r["customer"],
                currency=r["currency"],
                amount=PyDecimal(r["total"]),
                refunded=refunded(r),
                payment_ref=r["payment_ref"],
                created_at=r["created_at"],
            )
            for r in rows
        ]


def soap_application(books: Books) -> Callable[..., Any]:
    """The WSGI application of the SOAP service over ``books`` (WSDL at ``?wsdl``)."""
    app = Application(
        [LegacyErpService],
        tns=NAMESPACE,
        name="LegacyErp",
        in_protocol=Soap11(validator="lxml"),
        out_protocol=Soap11(),
        config={"books": books},
    )
    wsgi: Callable[..., Any] = WsgiApplication(app)
    return wsgi
