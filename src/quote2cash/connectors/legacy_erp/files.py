"""The hub's side of the legacy ERP's drop folder: write a file, then follow its answer.

A file is written as ``.tmp`` and renamed into ``in/`` (the batch never sees half a file), named
``<time>-<record type>-<digest of the reference>.csv`` so a later attempt finds a file of the
same reference still waiting. The batch answers with ``ack/<name>.ack.csv`` (always, last) and
``err/<name>.err.csv`` (refusals); see ``sandbox.legacy_erp.batch`` for the layout.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from quote2cash.private_files import open_private

COLUMNS: Final = (
    "record_type",
    "reference",
    "entity",
    "customer",
    "invoice",
    "currency",
    "amount",
    "taxed",
    "item",
    "description",
    "quantity",
    "unit_amount",
    "line_amount",
    "line_tax",
    "payment_ref",
)


@dataclass(frozen=True)
class Answer:
    """The batch's answer for one reference: the document, or the refusal's code and message."""

    document: str | None = None
    code: str | None = None
    message: str | None = None


def _digest(record_type: str, reference: str) -> str:
    return hashlib.sha256(f"{record_type}\0{reference}".encode()).hexdigest()[:20]


class DropFolder:
    """``in/``, ``ack/``, ``err/`` and ``archive/`` under ``root``, as the ERP's batch uses them."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def waiting(self, record_type: str, reference: str) -> str | None:
        """The name of a file for this reference the batch has not taken yet, if any."""
        found = sorted(
            (self.root / "in").glob(f"*-{record_type}-{_digest(record_type, reference)}.csv")
        )
        return found[0].name if found else None

    def drop(self, record_type: str, reference: str, rows: Sequence[Mapping[str, str]]) -> str:
        """Write ``rows`` (each completed with type and reference) as one file; its name."""
        name = f"{time.time_ns():020d}-{record_type}-{_digest(record_type, reference)}.csv"
        inbox = self.root / "in"
        temporary = inbox / f".{name}.tmp"
        with open_private(temporary, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "record_type": record_type, "reference": reference})
        os.replace(temporary, inbox / name)
        return name

    def drop_many(
        self, record_type: str, documents: Sequence[tuple[str, Sequence[Mapping[str, str]]]]
    ) -> str:
        """Write several documents ((reference, rows), distinct references) as ONE file, which
        the batch answers per reference; its name (``-batch-`` marks it)."""
        digest = _digest(record_type, "\0".join(reference for reference, _ in documents))
        name = f"{time.time_ns():020d}-{record_type}-batch-{digest}.csv"
        inbox = self.root / "in"
        temporary = inbox / f".{name}.tmp"
        with open_private(temporary, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            for reference, rows in documents:
                for row in rows:
                    writer.writerow({**row, "record_type": record_type, "reference": reference})
        os.replace(temporary, inbox / name)
        return name

    def answer(self, name: str, reference: str) -> Answer | None:
        """The batch's answer to file ``name`` for ``reference``; None while it is unanswered."""
        stem = name.removesuffix(".csv")
        ack = self.root / "ack" / f"{stem}.ack.csv"
        if not ack.exists():
            return None
        error = self.root / "err" / f"{stem}.err.csv"
        if error.exists():
            with error.open(encoding="utf-8", newline="") as handle:
                for row in csv.DictReader(handle):
                    if row.get("reference") in (reference, ""):
                        return Answer(code=row.get("code"), message=row.get("message"))
        with ack.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("reference") == reference:
                    return Answer(document=row.get("document"))
        return Answer(
            code="Server.NoAnswer", message=f"file {name} was answered without {reference}"
        )

    async def wait(
        self, name: str, reference: str, *, seconds: float, poll: float
    ) -> Answer | None:
        """Poll for the answer up to ``seconds``; None if the batch has not answered by then."""
        deadline = time.monotonic() + seconds
        while True:
            found = self.answer(name, reference)
            if found is not None or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(poll)
