"""The Tryton session every business area shares: login, legal entities, look-ups, per-identity
locks, and the helpers that name a record in Tryton's refusals."""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from quote2cash.canonical import (
    Record,
    Ref,
)
from quote2cash.connectors.tryton import mapping
from quote2cash.connectors.tryton.client import (
    TrytonClient,
    TrytonStateConflict,
    TrytonUserError,
    TrytonWarning,
)
from quote2cash.connectors.tryton.config import TrytonConfig, TrytonLegalEntity
from quote2cash.engine.errors import (
    ConflictError,
    DataError,
    MappingError,
)

__all__ = ["SYSTEM", "TrytonSession", "about", "record_reference", "utc_today"]

SYSTEM: Final = "erp"


@dataclass(frozen=True)
class _Item:
    id: int
    code: str
    unit: int
    service: bool


@contextmanager
def about(label: str) -> Iterator[None]:
    """Name the record in Tryton's refusals, so a person knows which one to fix."""
    try:
        yield
    except TrytonStateConflict as exc:
        raise ConflictError(f"{label}: {exc.message}", system=SYSTEM) from None
    except TrytonUserError as exc:
        raise DataError(f"{label}: Tryton refused it: {exc.message}", system=SYSTEM) from None
    except TrytonWarning as exc:
        raise DataError(
            f"{label}: Tryton stopped on a warning ({exc.kind}): {exc.tryton_message}",
            system=SYSTEM,
        ) from None


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def record_reference(record: Record, key: str) -> str:
    """What the ERP record's ``reference`` holds: the business number, else an id, else the key."""
    number = getattr(record, "number", None)
    return str(number or record.id_in("billing") or record.global_id or key)


ADDRESS_ORDER: Final = (("sequence", "ASC"), ("id", "ASC"))
"""Which of a party's addresses is its invoice address: the first by sequence, then id (one rule
for the single and the batched look-up)."""


class TrytonSession:
    """One logged-in JSON-RPC session and the state the business areas share (caches, locks)."""

    def __init__(self, config: TrytonConfig, *, http: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self._client = TrytonClient(
            config.base_url,
            config.database,
            config.username,
            config.password.get_secret_value(),
            max_concurrency=config.max_concurrency,
            timeout=config.timeout,
            connect_timeout=config.connect_timeout,
            system=SYSTEM,
            http=http,
        )
        self._ready_lock = asyncio.Lock()
        self._logged_in = False
        self._countries: dict[str, int] = {}
        self._currencies: dict[str, int] = {}
        self._identifier_types: set[str] | None = None
        self._items: dict[str, _Item] = {}
        self._taxes: dict[int, dict[str, Any]] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def close(self) -> None:
        self._logged_in = False
        await self._client.close()

    async def _erp(self) -> TrytonClient:
        if not self._logged_in:
            async with self._ready_lock:
                if not self._logged_in:
                    await self._client.login()
                    self._logged_in = True
        return self._client

    def _entity(self, code: str, label: str) -> TrytonLegalEntity:
        entity = self.config.entity(code)
        if entity is None:
            known = ", ".join(sorted(self.config.legal_entities))
            raise MappingError(
                f"{label}: legal entity {code!r} has no Tryton company (configured: {known})",
                system=SYSTEM,
            )
        return entity

    def _entity_of_company(self, company: int, label: str) -> TrytonLegalEntity:
        for entity in self.config.legal_entities.values():
            if entity.company == company:
                return entity
        raise MappingError(
            f"{label}: Tryton company {company} is not a configured legal entity", system=SYSTEM
        )

    async def _context(self, entity: TrytonLegalEntity) -> dict[str, Any]:
        erp = await self._erp()
        return erp.context_for(company=entity.company)

    @asynccontextmanager
    async def _exclusive(self, name: str) -> AsyncIterator[None]:
        """One look-up-then-create at a time per business identity in this process."""
        lock = self._locks.get(name)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[name] = lock
        async with lock:
            yield

    async def _country(self, code: str, label: str, field: str) -> int:
        if code not in self._countries:
            erp = await self._erp()
            rows = await erp.model("country.country").search_read(
                [("code", "=", code)], ["code"], limit=1
            )
            if not rows:
                raise DataError(
                    f"{label}: {field} {code!r} is not a country known to the ERP "
                    "(expected an ISO 3166-1 alpha-2 code set up in Tryton)",
                    system=SYSTEM,
                )
            self._countries[code] = int(rows[0]["id"])
        return self._countries[code]

    async def _currency(self, code: str, label: str) -> int:
        if code not in self._currencies:
            erp = await self._erp()
            rows = await erp.model("currency.currency").search_read(
                [("code", "=", code)], ["code"], limit=1
            )
            if not rows:
                raise MappingError(
                    f"{label}: currency {code} is not set up in the ERP", system=SYSTEM
                )
            self._currencies[code] = int(rows[0]["id"])
        return self._currencies[code]

    async def _tax_identifier_type(self, kind: str, label: str, index: int) -> str:
        if self._identifier_types is None:
            erp = await self._erp()
            types = await erp.call("model.party.identifier.get_types")
            self._identifier_types = {str(t[0]) for t in types if t and t[0]}
        if kind not in self._identifier_types:
            raise MappingError(
                f"{label}: tax_ids[{index}].type {kind!r} is not a Tryton identifier type "
                "(e.g. 'eu_vat', 'us_ein', 'gb_vat')",
                system=SYSTEM,
            )
        return kind

    async def _resolve_items(self, refs: Sequence[tuple[str, Ref]], label: str) -> list[_Item]:
        """Items for line product refs (by code, else by Tryton id); unknown -> MappingError."""
        wanted = {code for _, ref in refs for code in mapping.item_codes(ref)}
        missing = [c for c in wanted if c not in self._items]
        if missing:
            erp = await self._erp()
            ids = [i for c in missing if (i := mapping.record_id(c)) is not None]
            domain: list[Any] = [("code", "in", missing)]
            if ids:
                domain = ["OR", ("code", "in", missing), ("id", "in", ids)]
            rows = await erp.model("product.product").search_read(
                domain, ["code", "default_uom", "template.type"]
            )
            by_id = {str(r["id"]): r for r in rows}
            by_code = {str(r["code"]): r for r in rows if r.get("code")}
            for code in missing:
                row = by_code.get(code) or by_id.get(code)
                if row is not None:
                    self._items[code] = _Item(
                        id=int(row["id"]),
                        code=str(row.get("code") or code),
                        unit=int(row["default_uom"]),
                        service=(row.get("template.") or {}).get("type") == "service",
                    )
        items: list[_Item] = []
        for where, ref in refs:
            codes = mapping.item_codes(ref)
            found = next((self._items[c] for c in codes if c in self._items), None)
            if found is None:
                raise MappingError(
                    f"{label}: {where} product {' / '.join(codes)!r} is not in the ERP item "
                    "master (no Tryton product with that code)",
                    system=SYSTEM,
                )
            items.append(found)
        return items

    def _party_of(self, customer: Ref, label: str) -> int:
        erp_id = customer.id_in(SYSTEM)
        party = mapping.record_id(erp_id) if erp_id else None
        if party is None:
            raise MappingError(
                f"{label}: customer {customer} has no ERP id (external_ids['erp']); "
                "upsert the customer in the ERP first",
                system=SYSTEM,
            )
        return party

    async def _invoice_addresses(
        self, parties: Sequence[int], ctx: Mapping[str, Any]
    ) -> dict[int, int]:
        """Each party's invoice address (its first, as ``_invoice_address`` picks it) in one
        call; a party without one is left out (its own look-up then names the problem)."""
        erp = await self._erp()
        rows = await erp.model("party.address").search_read(
            [("party", "in", sorted(set(parties)))],
            ["party"],
            order=ADDRESS_ORDER,
            context=ctx,
        )
        found: dict[int, int] = {}
        for row in rows:
            found.setdefault(int(row["party"]), int(row["id"]))
        return found

    async def _invoice_address(self, party: int, label: str, ctx: Mapping[str, Any]) -> int:
        erp = await self._erp()
        ids = await erp.model("party.address").search(
            [("party", "=", party)],
            limit=1,
            order=ADDRESS_ORDER,
            context=ctx,
        )
        if not ids:
            exists = await erp.model("party.party").search([("id", "=", party)], context=ctx)
            if not exists:
                raise DataError(
                    f"{label}: the ERP has no party {party} (customer external_ids['erp'])",
                    system=SYSTEM,
                )
            raise DataError(f"{label}: ERP party {party} has no address to invoice", system=SYSTEM)
        return ids[0]

    @staticmethod
    def _known_id(value: str, what: str) -> int:
        record = mapping.record_id(value)
        if record is None:
            raise DataError(
                f"{value!r} is not an ERP {what} id (expected a positive integer)", system=SYSTEM
            )
        return record

    async def _reconcile(self, line_ids: Sequence[int], label: str, ctx: Mapping[str, Any]) -> None:
        """Reconcile balanced lines (the wizard stops on a write-off form when they do not)."""
        erp = await self._erp()
        with about(label):
            async with erp.wizard(
                "account.move.reconcile_lines",
                active_model="account.move.line",
                active_ids=list(line_ids),
                context=ctx,
            ) as wizard:
                form = await wizard.start()
        if form is not None:
            raise DataError(
                f"{label}: ERP move lines {list(line_ids)} do not balance (Tryton asks for a "
                "write-off); not reconciled",
                system=SYSTEM,
            )
