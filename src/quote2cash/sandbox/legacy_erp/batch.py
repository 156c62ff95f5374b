"""The file interface: the hub drops CSV files in ``in/``; the nightly-style batch answers them.

One CSV layout for every record type (columns ``record_type, reference, entity, customer,
invoice, currency, amount, taxed, item, description, quantity, unit_amount, line_amount,
line_tax, payment_ref``; record types ``RECORD_KINDS``): one row per document, or per line for
an invoice (its rows share the reference; ``amount`` is its total, ``taxed`` Y/N); a credit's
``line_tax`` is the tax its amount reverses. Files are
taken in name order; each document is applied in its own transaction. The batch writes
``err/<name>.err.csv`` (reference, code, message) when a document is refused, then
``ack/<name>.ack.csv`` (reference, document) - always, and last, so an ack file means the input
is answered - and moves the input to ``archive/``.
"""

from __future__ import annotations

import csv
import logging
import os
import threading
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final

from quote2cash.private_files import open_private
from quote2cash.sandbox.legacy_erp.books import (
    CREDIT_NOTE,
    CUSTOMER_CREDIT,
    INVOICE,
    PAYMENT,
    RECORD_KINDS,
    REVERSAL,
    Books,
    Line,
    Refusal,
    cents,
)

log = logging.getLogger(__name__)

FOLDERS: Final = ("in", "ack", "err", "archive")

Row = dict[str, str]


def prepare(drop: Path) -> None:
    """The drop folder and its four sub-folders, owner-only."""
    for name in FOLDERS:
        (drop / name).mkdir(parents=True, exist_ok=True, mode=0o700)


def _money(row: Row, column: str, what: str) -> Decimal:
    """An amount in cents (both entities' currencies have two decimals)."""
    value = _decimal(row, column, what)
    if value != cents(value):
        raise Refusal("Client.Validation", f"{what}: {column} {value} has more than 2 decimals")
    return value


def _decimal(row: Row, column: str, what: str) -> Decimal:
    try:
        value = Decimal(row.get(column) or "")
    except InvalidOperation:
        raise Refusal(
            "Client.Validation", f"{what}: {column} {row.get(column)!r} is not a decimal"
        ) from None
    if not value.is_finite():
        raise Refusal("Client.Validation", f"{what}: {column} must be a finite decimal")
    return value


def _apply(books: Books, kind: str, rows: Sequence[Row]) -> str:
    first = rows[0]
    reference = first["reference"]
    what = f"{kind} {reference}"
    if kind == INVOICE:
        lines = [
            Line(
                item=row.get("item", ""),
                quantity=_decimal(row, "quantity", what),
                unit_price=_decimal(row, "unit_amount", what),
                amount=_money(row, "line_amount", what),
                tax=_money(row, "line_tax", what) if row.get("line_tax") else None,
                description=row.get("description", ""),
            )
            for row in rows
        ]
        return books.post_invoice(
            reference,
            first["entity"],
            first["customer"],
            first["currency"],
            lines,
            taxed=first.get("taxed") == "Y",
            total=_money(first, "amount", what),
        )
    amount = _money(first, "amount", what)
    tax = _money(first, "line_tax", what) if first.get("line_tax") else Decimal(0)
    if kind == CUSTOMER_CREDIT:
        return books.post_customer_credit(
            reference, first["entity"], first["customer"], first["currency"], amount, tax
        )
    invoice, currency = first["invoice"], first["currency"]
    if kind == PAYMENT:
        return books.apply_payment(reference, invoice, currency, amount, first["payment_ref"])
    if kind == REVERSAL:
        return books.reverse_payment(reference, invoice, currency, amount, first["payment_ref"])
    if kind == CREDIT_NOTE:
        return books.issue_credit_note(reference, invoice, currency, amount, tax)
    return books.apply_credit(reference, invoice, currency, amount)


def _documents(rows: Sequence[Row]) -> list[tuple[str, list[Row]]]:
    """Rows grouped by (record type, reference), in first-seen order."""
    grouped: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        grouped.setdefault((row.get("record_type", ""), row.get("reference", "")), []).append(row)
    return [(kind, group) for (kind, _), group in grouped.items()]


def _write(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open_private(temporary, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(temporary, path)


def process_file(books: Books, drop: Path, source: Path) -> None:
    """Answer one input file (ack always, err when something was refused) and archive it."""
    acks: list[tuple[str, str]] = []
    errors: list[tuple[str, str, str]] = []
    try:
        with source.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        rows = []
        errors.append(("", "Client.Validation", f"file {source.name} is not readable CSV: {exc}"))
    for kind, group in _documents(rows):
        reference = group[0].get("reference", "")
        try:
            if kind not in RECORD_KINDS:
                raise Refusal(
                    "Client.Validation",
                    f"{reference}: record_type {kind!r} is not one of {', '.join(RECORD_KINDS)}",
                )
            if not reference:
                raise Refusal("Client.Validation", f"{kind}: reference must not be empty")
            acks.append((reference, _apply(books, kind, group)))
        except Refusal as refusal:
            errors.append((reference, refusal.code, refusal.message))
        except (KeyError, TypeError) as exc:
            errors.append((reference, "Client.Validation", f"{kind} {reference}: missing {exc}"))
    stem = source.stem
    if errors:
        _write(drop / "err" / f"{stem}.err.csv", ("reference", "code", "message"), errors)
    _write(drop / "ack" / f"{stem}.ack.csv", ("reference", "document"), acks)
    os.replace(source, drop / "archive" / source.name)


def run_batch(books: Books, drop: Path) -> int:
    """Process every waiting file in name order; how many were processed."""
    done = 0
    for source in sorted((drop / "in").glob("*.csv")):
        try:
            process_file(books, drop, source)
        except Exception:  # one bad file must not stop the batch (nor the server)
            log.exception("batch: file %s could not be processed", source.name)
            continue
        done += 1
    return done


class BatchScheduler:
    """Runs the batch every ``seconds`` in a daemon thread until stopped."""

    def __init__(self, job: Callable[[], int], seconds: float) -> None:
        self._job = job
        self._seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="legacy-erp-batch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self._seconds):
            try:
                self._job()
            except Exception:
                log.exception("batch run failed")
