"""The ERP role on Tryton: customers, item master, bookings, invoices, payments and credit notes.

Guarantees (see ``connectors.roles.Erp``):
- effectively once: every create looks up the step's marker first (party identifiers
  ``q2c-gid:``/``q2c-key:``, the ``reference`` of sales and invoices, the description of payment
  moves), so calling again with the same key (or the same customer global id) never duplicates;
- to the cent: an invoice, credit note or sale is posted/confirmed only when Tryton's computed
  total equals the canonical total; otherwise the draft is deleted and a ``DataError`` gives both;
- taxes: billing's tax is posted as the document's tax lines (manual ``account.invoice.tax``),
  one per rate, on the ERP tax the legal entity maps the rate's code to (``taxes``; a rate-less
  tax goes to its ``sales_tax``), so the ERP's tax and total equal billing's to the cent whatever
  the ERP's own rounding; an untaxed invoice gets no tax lines;
- refunds: ``reverse_payment`` books a billing payment's cumulative refunded amount as reversal
  moves (cash out, receivable back on the invoice), marked ``q2c-refund:<billing payment id>``
  so redelivered or partial refunds converge; ``apply_payment`` refuses a refund (``DataError``).
"""

from __future__ import annotations

import time

from quote2cash.connectors.closing import ClosesOnExit
from quote2cash.connectors.roles import SystemCheck
from quote2cash.connectors.tryton.credit_notes import CreditNotes
from quote2cash.connectors.tryton.invoices import POSTING_WARNINGS
from quote2cash.connectors.tryton.ledger import Ledger
from quote2cash.connectors.tryton.parties import Parties
from quote2cash.connectors.tryton.payments import Collections
from quote2cash.connectors.tryton.sales import Sales
from quote2cash.connectors.tryton.session import SYSTEM
from quote2cash.engine.errors import AuthError, PermanentError, TransientError

__all__ = ["POSTING_WARNINGS", "TrytonErp"]


class TrytonErp(Parties, Sales, Collections, CreditNotes, Ledger, ClosesOnExit):
    """``connectors.roles.Erp`` over Tryton's JSON-RPC; one logged-in session, opened lazily.

    Build it with a ``TrytonConfig`` (the sandbox: ``sandbox.systems.tryton_config``) and use it as
    ``async with``; calls are serialised to ``config.max_concurrency`` (1 on SQLite). Each business
    area is a mixin over one ``TrytonSession``, since they share its login, caches and locks.
    """

    system = SYSTEM

    def __repr__(self) -> str:
        return f"TrytonErp({self.config.base_url!r}, database={self.config.database!r})"

    async def check(self) -> SystemCheck:
        """Log in and count companies; reports failures instead of raising them."""
        started = time.monotonic()
        try:
            erp = await self._erp()
            await erp.model("company.company").search_count([])
        except AuthError as exc:
            return SystemCheck(SYSTEM, reachable=True, authenticated=False, detail=exc.message)
        except TransientError as exc:
            return SystemCheck(SYSTEM, reachable=False, authenticated=False, detail=exc.message)
        except PermanentError as exc:
            # The server answered but refused the work (e.g. no such database): not usable.
            return SystemCheck(SYSTEM, reachable=True, authenticated=False, detail=exc.message)
        latency = (time.monotonic() - started) * 1000
        return SystemCheck(
            SYSTEM,
            reachable=True,
            authenticated=True,
            detail=f"Tryton database {self.config.database!r} as {self.config.username!r}",
            latency_ms=round(latency, 1),
        )
