"""One ERP customer per legal entity: a customer buying through two companies of the group is
two ERP customers (each in its company, with its own tax registration), tied to one customer.

Each (customer, entity) pair has the global id its ERP customer is keyed by, recorded as a
cross-reference of system ``erp_entity`` and local id ``<entity>/<customer global id>``. The
customer's first entity (its *home*) is keyed by the customer's own global id, as before there
were several, so its ERP customer and every document already posted stay where they are; every
further entity gets a global id of its own (kind ``customer``) whose ``erp`` link is that
entity's ERP customer. Merges keep working: a merged customer's pairs are found through it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import Connection, select

from quote2cash.canonical import Customer, TaxIdValue
from quote2cash.engine.clock import Clock
from quote2cash.masterdata import xref
from quote2cash.masterdata.entities import EntityResolver
from quote2cash.masterdata.xref import Kind, XrefStore
from quote2cash.store.schema import md_xrefs

SYSTEM = "erp_entity"
_PAIR = re.compile(r"^(?P<entity>[^/]+)/(?P<customer>.+)$")


def pair_key(entity: str, customer_gid: str) -> str:
    return f"{entity}/{customer_gid}"


class EntityCustomers:
    """Which global id keys a customer's ERP customer in each legal entity; every change is an
    xref link in the caller's audited store."""

    def __init__(
        self, store: XrefStore, entities: Iterable[str], clock: Clock | None = None
    ) -> None:
        self.store = store
        self.entities = tuple(entities)
        """The group's legal entities (``entities.yaml``): pairs are looked up by exact key."""
        self.clock = clock or store.clock

    def account_for(
        self, customer_gid: str, entity: str, *, home: str | None = None, actor: str = "hub"
    ) -> str:
        """The global id ``customer_gid``'s ERP customer in ``entity`` is keyed by, made once.

        ``home`` is the entity of an ERP customer the customer got before entities were
        recorded (the entity decided for it): it stays keyed by the customer's own global id."""
        with self.store.engine.begin() as conn:
            return self._account_for(conn, customer_gid, entity, home, actor)

    def _account_for(
        self, conn: Connection, customer_gid: str, entity: str, home: str | None, actor: str
    ) -> str:
        now = self.clock.now()
        survivor = xref.resolve(conn, customer_gid)
        for gid in (survivor, *xref._merged_ids(conn, survivor)):
            found = xref.lookup(conn, Kind.CUSTOMER, SYSTEM, pair_key(entity, gid))
            if found is not None:
                return found
        refs = xref.current_refs(conn, survivor)
        if not any(ref.system == SYSTEM for ref in refs):
            has_erp = any(ref.system == "erp" for ref in refs)
            first = (home or entity) if has_erp else entity
            xref.link(conn, now, survivor, SYSTEM, pair_key(first, survivor), actor)
            if first == entity:
                return survivor
        return xref.ensure(conn, now, Kind.CUSTOMER, SYSTEM, pair_key(entity, survivor), actor)[0]

    def customer_of(self, gid: str) -> str:
        """The customer an entity's global id serves (``gid`` itself for a customer's own)."""
        with self.store.engine.connect() as conn:
            survivor = xref.resolve(conn, gid)
            for ref in xref.current_refs(conn, survivor):
                match = _PAIR.match(ref.local_id) if ref.system == SYSTEM else None
                if match and match["customer"] != survivor:
                    return xref.resolve(conn, match["customer"])
        return survivor

    def entities_of(self, customer_gid: str) -> dict[str, str]:
        """Entity -> the global id keying the customer's ERP customer there (merges included)."""
        with self.store.engine.connect() as conn:
            survivor = xref.resolve(conn, customer_gid)
            ids = (survivor, *xref._merged_ids(conn, survivor))
            keys = [pair_key(entity, gid) for gid in ids for entity in self.entities]
            rows = conn.execute(
                select(md_xrefs.c.local_id, md_xrefs.c.global_id)
                .where(
                    md_xrefs.c.kind == Kind.CUSTOMER.value,
                    md_xrefs.c.system == SYSTEM,
                    md_xrefs.c.local_id.in_(keys),
                    md_xrefs.c.valid_to.is_(None),
                )
                .order_by(md_xrefs.c.valid_from, md_xrefs.c.id)
            ).all()
            found: dict[str, str] = {}
            for row in rows:
                match = _PAIR.match(str(row.local_id))
                if match and match["customer"] in ids:
                    found.setdefault(match["entity"], xref.resolve(conn, str(row.global_id)))
        return found


def tax_ids_for(
    customer: Customer, entity: str, resolver: EntityResolver
) -> tuple[TaxIdValue, ...]:
    """The customer's tax registrations an ERP customer in ``entity`` carries: all but those of
    another group company's jurisdiction (an EU VAT id stays off the US company's customer, a
    US EIN off the German one; a GB VAT id, no company's, stays on both)."""
    scopes = {key: _scopes(resolver, key) for key in resolver.config.entities}
    own = scopes[entity]
    others = set().union(*(s for key, s in scopes.items() if key != entity)) - own
    return tuple(t for t in customer.tax_ids if t.type.split("_", 1)[0] not in others)


def _scopes(resolver: EntityResolver, key: str) -> set[str]:
    country = resolver.config.entities[key].country
    return {country.lower(), *(r.lower() for r in resolver.regions_of(country))}
