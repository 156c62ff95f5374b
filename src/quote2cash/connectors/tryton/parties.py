"""Customers as Tryton parties: found by id, global-id marker or step key; updated or created."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quote2cash.canonical import (
    Address,
    Customer,
)
from quote2cash.connectors.tryton import mapping
from quote2cash.connectors.tryton.session import SYSTEM, TrytonSession, about
from quote2cash.engine.errors import (
    ConflictError,
    DataError,
)

__all__ = ["Parties"]


class Parties(TrytonSession):
    """The ERP role's customer master: ``upsert_customer`` and ``get_customer``."""

    async def upsert_customer(
        self, customer: Customer, *, legal_entity: str, idempotency_key: str
    ) -> str:
        """The party id; found by ``external_ids['erp']``, the ``q2c-gid:`` marker, then the
        ``q2c-key:`` marker (in that order) and updated, else created with both markers."""
        identity = (
            mapping.global_id_marker(customer.global_id)
            if customer.global_id
            else mapping.idempotency_marker(idempotency_key)
        )
        async with self._exclusive(f"party:{identity}"):
            return await self._upsert_customer(
                customer, legal_entity=legal_entity, idempotency_key=idempotency_key
            )

    async def _upsert_customer(
        self, customer: Customer, *, legal_entity: str, idempotency_key: str
    ) -> str:
        named = customer.global_id or customer.external_ids
        label = customer.label if named else f"Customer {customer.name!r}"
        entity = self._entity(legal_entity, label)
        erp = await self._erp()
        ctx = await self._context(entity)
        addresses = await self._address_values(customer, label)
        tax_ids = [
            (await self._tax_identifier_type(t.type, label, i), t.value)
            for i, t in enumerate(customer.tax_ids)
        ]
        party = await self._find_party(customer, idempotency_key, label, ctx)
        with about(label):
            if party is None:
                markers = [mapping.idempotency_marker(idempotency_key)]
                if customer.global_id:
                    markers.insert(0, mapping.global_id_marker(customer.global_id))
                values: dict[str, Any] = {
                    "name": customer.name,
                    "addresses": [("create", addresses)] if addresses else [],
                    "identifiers": [
                        (
                            "create",
                            [{"type": kind, "code": code} for kind, code in tax_ids]
                            + [{"type": None, "code": m} for m in markers],
                        )
                    ],
                    "contact_mechanisms": [("create", _contacts(customer))],
                }
                party = await erp.model("party.party").create_one(values, context=ctx)
            else:
                await self._update_party(party, customer, addresses, tax_ids, ctx)
        return str(party)

    async def _address_values(self, customer: Customer, label: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = []
        seen: list[Address] = []
        for field, address in (
            ("billing_address", customer.billing_address),
            ("address", customer.address),
        ):
            if address is None or address in seen:
                continue
            seen.append(address)
            country = await self._country(address.country, label, f"{field}.country")
            result.append(mapping.address_values(address, country))
        return result

    async def _find_party(
        self, customer: Customer, key: str, label: str, ctx: Mapping[str, Any]
    ) -> int | None:
        erp = await self._erp()
        known = customer.id_in(SYSTEM)
        if known is not None:
            party = mapping.record_id(known)
            if party is None or not await erp.model("party.party").search(
                [("id", "=", party)], context=ctx
            ):
                raise DataError(
                    f"{label}: external_ids['erp'] {known!r} is not a party in the ERP",
                    system=SYSTEM,
                )
            return party
        markers = [mapping.idempotency_marker(key)]
        if customer.global_id:
            markers.insert(0, mapping.global_id_marker(customer.global_id))
        rows = await erp.model("party.identifier").search_read(
            [("type", "=", None), ("code", "in", markers)], ["code", "party"], context=ctx
        )
        for marker in markers:
            parties = {int(r["party"]) for r in rows if r["code"] == marker}
            if len(parties) > 1:
                raise ConflictError(
                    f"{label}: several ERP parties carry {marker!r}: {sorted(parties)}",
                    system=SYSTEM,
                )
            if parties:
                return parties.pop()
        return None

    async def _update_party(
        self,
        party: int,
        customer: Customer,
        addresses: list[dict[str, Any]],
        tax_ids: list[tuple[str, str]],
        ctx: Mapping[str, Any],
    ) -> None:
        erp = await self._erp()
        values: dict[str, Any] = {"name": customer.name}
        existing_addresses = await erp.model("party.address").search_read(
            [("party", "=", party)],
            ["street_unstructured", "city", "postal_code", "country"],
            order=[("sequence", "ASC"), ("id", "ASC")],
            context=ctx,
        )
        to_create: list[dict[str, Any]] = []
        writes: list[Any] = []
        for index, wanted in enumerate(addresses):
            if index < len(existing_addresses):
                row = existing_addresses[index]
                if any(row.get(k) != v for k, v in wanted.items()):
                    writes += [[row["id"]], wanted]
            else:
                to_create.append(wanted)
        if writes:
            values["addresses"] = [("write", *writes)]
        if to_create:
            values.setdefault("addresses", []).append(("create", to_create))
        identifiers = await erp.model("party.identifier").search_read(
            [("party", "=", party)], ["type", "code", "code_compact"], context=ctx
        )
        have = {(r["type"], r["code"]) for r in identifiers} | {
            (r["type"], r["code_compact"]) for r in identifiers
        }
        new_ids: list[dict[str, str | None]] = [
            {"type": k, "code": c} for k, c in tax_ids if (k, c) not in have
        ]
        if customer.global_id:
            marker = mapping.global_id_marker(customer.global_id)
            if (None, marker) not in have:
                new_ids.append({"type": None, "code": marker})
        if new_ids:
            values["identifiers"] = [("create", new_ids)]
        mechanisms = await erp.model("party.contact_mechanism").search_read(
            [("party", "=", party), ("type", "in", ["email", "phone"])],
            ["type", "value"],
            context=ctx,
        )
        contact_writes: list[Any] = []
        contact_creates: list[dict[str, Any]] = []
        for wanted in _contacts(customer):
            same_type = [m for m in mechanisms if m["type"] == wanted["type"]]
            if not same_type:
                contact_creates.append(wanted)
            elif all(m["value"] != wanted["value"] for m in same_type):
                contact_writes += [[same_type[0]["id"]], {"value": wanted["value"]}]
        contact_ops: list[Any] = []
        if contact_writes:
            contact_ops.append(("write", *contact_writes))
        if contact_creates:
            contact_ops.append(("create", contact_creates))
        if contact_ops:
            values["contact_mechanisms"] = contact_ops
        await erp.model("party.party").write([party], values, context=ctx)

    async def get_customer(self, erp_customer_id: str) -> Customer:
        """The party as a Customer (``erp_number`` = party code); a missing id is a DataError."""
        party = self._known_id(erp_customer_id, "customer")
        erp = await self._erp()
        rows = await erp.model("party.party").search_read(
            [("id", "=", party)],
            ["name", "code"],
            limit=1,
            context=erp.context_for(active_test=False),
        )
        if not rows:
            raise DataError(
                f"the ERP has no customer (party) with id {erp_customer_id!r}", system=SYSTEM
            )
        address_rows = await erp.model("party.address").search_read(
            [("party", "=", party)],
            ["street_unstructured", "city", "postal_code", "country.code"],
            order=[("sequence", "ASC"), ("id", "ASC")],
        )
        addresses = [
            a
            for row in address_rows
            if (a := mapping.address_from_tryton(row, (row.get("country.") or {}).get("code")))
            is not None
        ]
        identifiers = await erp.model("party.identifier").search_read(
            [("party", "=", party)], ["type", "code"], order=[("id", "ASC")]
        )
        emails = await erp.model("party.contact_mechanism").search_read(
            [("party", "=", party), ("type", "=", "email")], ["value"], limit=1
        )
        return mapping.customer_from_party(
            rows[0],
            addresses=addresses,
            identifiers=[(r["type"] or None, str(r["code"])) for r in identifiers],
            email=str(emails[0]["value"]) if emails else None,
        )


def _contacts(customer: Customer) -> list[dict[str, Any]]:
    contacts = []
    if customer.email:
        contacts.append({"type": "email", "value": customer.email})
    if customer.phone:
        contacts.append({"type": "phone", "value": customer.phone})
    return contacts
