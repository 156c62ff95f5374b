"""What the business flows need, handed in once: the runtime, the three roles, master data.

Flows ask for a role (``crm``, ``erp``, ``billing``), never for a concrete connector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from quote2cash.canonical import Customer, PricePlan
from quote2cash.connectors.registry import batching_erp
from quote2cash.connectors.roles import Billing, Crm, Erp
from quote2cash.defaults import packaged_config_dir
from quote2cash.engine.errors import MappingError
from quote2cash.engine.runtime import Runtime
from quote2cash.flows.policy import OnboardingPolicy, load_onboarding
from quote2cash.masterdata import (
    Catalog,
    EntityResolution,
    EntityResolver,
    GoldenCustomers,
    TaxDetermination,
    TaxResolver,
    load_catalog,
    load_entities,
    load_matching,
    load_ownership,
    load_survivorship,
    load_tax,
)
from quote2cash.masterdata.entities import EntityDecisions
from quote2cash.masterdata.entity_customers import EntityCustomers
from quote2cash.masterdata.ownership import OwnershipConfig
from quote2cash.masterdata.sync import SyncState
from quote2cash.masterdata.xref import XrefStore
from quote2cash.usage.postings import LatePosting, UsagePostings
from quote2cash.usage.records import UsageLedger
from quote2cash.usage.wiring import open_ledger

R = TypeVar("R")


@dataclass
class FlowDeps:
    runtime: Runtime
    crm_role: Crm | None
    erp_role: Erp | None
    billing_role: Billing | None
    catalog: Catalog
    entities: EntityResolver
    xref: XrefStore
    sync: SyncState
    onboarding: OnboardingPolicy = field(default_factory=OnboardingPolicy)
    _price_keys: dict[str, str] = field(default_factory=dict)
    _price_plans: dict[str, PricePlan] = field(default_factory=dict)
    tax_rules: TaxResolver | None = None
    usage_ledger: UsageLedger | None = None
    """Where accepted usage is kept (usage intake's ledger); None: usage posting is not wired."""
    late_usage: LatePosting = LatePosting.ADJUST

    @property
    def usage_postings(self) -> UsagePostings:
        """The record of usage posted to billing (written by the posting steps)."""
        return UsagePostings(self.runtime.engine)

    ownership: OwnershipConfig | None = None
    golden: GoldenCustomers | None = None
    """The golden customer record onboarding files accounts through (None: one customer per
    CRM account, as before matching was configured)."""

    @classmethod
    def build(cls, runtime: Runtime, systems: Any, config_dir: Path | None = None) -> FlowDeps:
        """The flows' dependencies; ``config_dir`` None reads the packaged default rules."""
        config_dir = config_dir or packaged_config_dir()
        entities = load_entities(config_dir / "entities.yaml")
        tax_file = config_dir / "tax.yaml"
        from quote2cash.settings import get_settings

        ownership_file = config_dir / "ownership.yaml"
        return cls(
            runtime=runtime,
            crm_role=systems.crm,
            erp_role=batching_erp(
                systems.erp,
                max_batch=(settings := get_settings()).erp_batch_size,
                window_ms=settings.erp_batch_window_ms,
            ),
            billing_role=systems.billing,
            catalog=load_catalog(config_dir / "catalog.yaml"),
            entities=entities,
            xref=(xref := XrefStore(runtime.engine, runtime.clock)),
            sync=SyncState(runtime.engine, runtime.clock, xref),
            onboarding=load_onboarding(config_dir / "onboarding.yaml"),
            tax_rules=load_tax(tax_file, entities) if tax_file.exists() else None,
            late_usage=LatePosting(get_settings().usage_late_policy),
            usage_ledger=open_ledger(runtime),
            ownership=load_ownership(ownership_file) if ownership_file.exists() else None,
            golden=golden_customers(runtime, config_dir),
        )

    @property
    def ownership_rules(self) -> OwnershipConfig:
        """Field ownership (``ownership.yaml``); the packaged rules when none was configured."""
        if self.ownership is None:
            self.ownership = load_ownership(packaged_config_dir() / "ownership.yaml")
        return self.ownership

    def tax_for(self, customer: Customer, entity: EntityResolution) -> TaxDetermination:
        """The tax a legal entity charges the customer; untaxed when no tax rules are configured."""
        if self.tax_rules is None:
            return TaxDetermination(None, customer.tax_exemption, "no-tax-rules")
        return self.tax_rules.determine(customer, entity)

    @property
    def decisions(self) -> EntityDecisions:
        """Each contract's legal entity, as decided at Closed Won."""
        return EntityDecisions(self.runtime.engine, self.runtime.clock)

    @property
    def entity_customers(self) -> EntityCustomers:
        """The global id keying a customer's ERP customer in each legal entity."""
        return EntityCustomers(self.xref, self.entities.config.entities, self.runtime.clock)

    @property
    def crm(self) -> Crm:
        return _configured(self.crm_role, "crm")

    @property
    def erp(self) -> Erp:
        return _configured(self.erp_role, "erp")

    @property
    def billing(self) -> Billing:
        return _configured(self.billing_role, "billing")

    async def lookup_key_of(self, price_id: str) -> str | None:
        """A billing price id's lookup key (the catalog's name for it), cached per process."""
        if price_id not in self._price_keys:
            await self._load_prices()
        return self._price_keys.get(price_id)

    async def price_plan(self, price: str) -> PricePlan | None:
        """Billing's price by id or lookup key (as the catalog names it), cached per process."""
        if price not in self._price_plans:
            await self._load_prices()
        return self._price_plans.get(price)

    async def _load_prices(self) -> None:
        """Billing's price list, read through billing's gate (pause, breaker, rate) like a step:
        it is kept per process, so no event records it."""
        async with self.runtime.gates.call("billing", "billing.list_prices"):
            plans = await self.billing.list_prices()
        for plan in plans:
            pid, key = plan.external_ids.get("billing"), plan.external_ids.get("lookup_key")
            if pid and key:
                self._price_keys[pid] = key
            for name in (pid, key):
                if name:
                    self._price_plans[name] = plan

    def erp_item_for_price(self, lookup_key: str) -> str | None:
        """The ERP item a billing price stands for, from the catalog (components pair by place)."""
        for mapping in self.catalog.config.catalog:
            for version in mapping.versions:
                if len(version.billing) != len(version.erp):
                    continue
                for bill, item in zip(version.billing, version.erp, strict=True):
                    if lookup_key in bill.prices():
                        return item.item
        return None


def golden_customers(runtime: Runtime, config_dir: Path) -> GoldenCustomers | None:
    """Golden customers under the folder's matching (the one ``q2c customers match`` reads),
    survivorship and ownership rules; None when the folder has no matching.yaml."""
    if not (config_dir / "matching.yaml").exists():
        return None
    survivorship = load_survivorship(
        config_dir / "survivorship.yaml", load_ownership(config_dir / "ownership.yaml")
    )
    return GoldenCustomers(
        runtime.engine, load_matching(config_dir / "matching.yaml"), survivorship, runtime.clock
    )


def _configured(role: R | None, name: str) -> R:
    if role is None:
        raise MappingError(f"no {name} system is configured (systems.yaml or the sandbox)")
    return role
