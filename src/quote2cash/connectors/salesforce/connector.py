"""The CRM role (``connectors.roles.Crm``) on Salesforce: deals in, status fields out.

Reads closed-won Opportunities (with their lines) as Orders, Accounts as Customers, Product2 as
Products and approved seat-change requests as Amendments; writes status back only by upsert on
an external id (idempotent by nature, so a repeated step never creates a second record).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from quote2cash.canonical import Amendment, Customer, Order, Product
from quote2cash.connectors.closing import ClosesOnExit
from quote2cash.connectors.roles import (
    AccountMerge,
    ChangedAccount,
    CrmStatus,
    DuplicateAccount,
    LedgerEntry,
    LedgerKind,
    Page,
    RejectedRecord,
    StatusResult,
    SystemCheck,
)
from quote2cash.connectors.salesforce import mapping
from quote2cash.connectors.salesforce.client import (
    COLLECTION_BATCH,
    DailyLimitExceeded,
    SalesforceClient,
    SaveResult,
    is_salesforce_id,
)
from quote2cash.connectors.salesforce.config import SalesforceConfig
from quote2cash.connectors.salesforce.mapping import SObjectUpdate
from quote2cash.engine.errors import (
    AuthError,
    DataError,
    MappingError,
    PermanentError,
    TransientError,
)

__all__ = ["APPROVED_AMENDMENT_STATUS", "SalesforceCrm"]

_log = logging.getLogger(__name__)

APPROVED_AMENDMENT_STATUS: Final = "Approved"
"""Amendment requests the hub picks up: a sales manager approved the seat change."""


class SalesforceCrm(ClosesOnExit):
    """``Crm`` for one Salesforce org (``system = "crm"``); ``async with SalesforceCrm(cfg)``.

    Paging: a page is one Salesforce query batch and ``next_cursor`` its ``nextRecordsUrl``;
    ``limit`` is sent as the batch size, which Salesforce keeps within 200-2000 and may lower.
    ``since`` filters on SystemModstamp at whole-second precision with ``>=``: a deal changed in
    that second may come again, never be missed (downstream steps are idempotent).
    """

    system: str = "crm"

    def __init__(self, config: SalesforceConfig, *, client: SalesforceClient | None = None) -> None:
        self.config = config
        self.client = client or SalesforceClient(config, system=self.system)

    def __repr__(self) -> str:
        return f"SalesforceCrm({self.config.instance_url!r})"

    async def close(self) -> None:
        await self.client.close()

    # --- deals ---

    async def closed_won_deals(
        self, since: datetime | None = None, cursor: str | None = None, limit: int = 200
    ) -> Page[Order]:
        """Won Opportunities changed at or after ``since``, oldest change first, as Orders."""
        if cursor is not None:
            page = await self.client.query_page(next_records_url=cursor, batch_size=limit)
        else:
            where = "IsWon = true"
            if since is not None:
                where += f" AND SystemModstamp >= {mapping.soql_datetime(since)}"
            page = await self.client.query_page(
                mapping.opportunity_soql(where, self.config.opportunity_bill_to_field),
                batch_size=limit,
            )
        orders: list[Order] = []
        rejected: list[RejectedRecord] = []
        for record in page.records:
            try:
                orders.append(await self._order(record))
            except (DataError, MappingError) as refused:
                rejected.append(self._rejected("Opportunity", record, refused))
        return Page(orders, page.next_records_url, rejected)

    async def get_deal(self, deal_id: str) -> Order:
        """One Opportunity as an Order (any stage: won is booked, lost cancelled, open draft)."""
        self._check_id("Opportunity", deal_id)
        page = await self.client.query_page(
            mapping.opportunity_soql(
                f"Id = {mapping.soql_string(deal_id)}", self.config.opportunity_bill_to_field
            )
        )
        if not page.records:
            raise DataError(f"Salesforce Opportunity {deal_id} not found", system=self.system)
        return await self._order(page.records[0])

    async def _order(self, record: dict[str, Any]) -> Order:
        lines = await self.client.children(record.get("OpportunityLineItems"))
        return mapping.order(record, lines, self.config.opportunity_bill_to_field)

    # --- accounts and products ---

    async def get_account(self, account_id: str) -> Customer:
        """The Account with every field the org has (optional custom fields are used if set)."""
        self._check_id("Account", account_id)
        record = await self.client.get("Account", account_id)
        return mapping.customer(
            record,
            email_field=self.config.account_email_field,
            tax_id_field=self.config.account_tax_id_field,
            tax_id_type=self.config.account_tax_id_type,
            other_tax_id_fields=self.config.account_other_tax_id_fields,
        )

    async def changed_accounts(
        self, since: datetime | None = None, cursor: str | None = None, limit: int = 200
    ) -> Page[ChangedAccount]:
        """Accounts carrying the hub's global id whose SystemModstamp is at or after ``since``,
        oldest change first, one query batch a page."""
        if cursor is not None:
            page = await self.client.query_page(next_records_url=cursor, batch_size=limit)
        else:
            page = await self.client.query_page(
                mapping.changed_accounts_soql(since), batch_size=limit
            )
        items: list[ChangedAccount] = []
        rejected: list[RejectedRecord] = []
        for record in page.records:
            try:
                items.append(mapping.changed_account(record))
            except DataError as refused:
                rejected.append(self._rejected("Account", record, refused))
        return Page(items, page.next_records_url, rejected)

    async def list_products(self) -> list[Product]:
        soql = f"SELECT {', '.join(mapping.PRODUCT_FIELDS)} FROM Product2 ORDER BY Name, Id"
        return [mapping.product(record) async for record in self.client.query(soql)]

    # --- duplicates and merges ---

    async def flag_duplicate_account(
        self, flag: DuplicateAccount, *, idempotency_key: str
    ) -> StatusResult:
        """``Q2C_Duplicate_Of__c`` (the survivor) and ``Q2C_Merge_Status__c`` on the duplicate."""
        self._check_id("Account", flag.account_id)
        self._check_id("Account", flag.survivor_account_id)
        [result] = await self.write_records(
            [mapping.duplicate_flag(flag)], idempotency_key=idempotency_key
        )
        return result

    async def account_merges(
        self, since: datetime | None = None, cursor: str | None = None
    ) -> Page[AccountMerge]:
        """Accounts deleted by a merge (``queryAll`` with ``MasterRecordId``), one batch a page."""
        if cursor is not None:
            page = await self.client.query_page(next_records_url=cursor)
        else:
            page = await self.client.query_page(mapping.merges_soql(since), include_deleted=True)
        merges: list[AccountMerge] = []
        rejected: list[RejectedRecord] = []
        for record in page.records:
            try:
                merges.append(mapping.account_merge(record))
            except (DataError, MappingError) as refused:
                rejected.append(self._rejected("Account", record, refused))
        return Page(merges, page.next_records_url, rejected)

    # --- amendments ---

    async def amendment_requests(
        self, since: datetime | None = None, cursor: str | None = None
    ) -> Page[Amendment]:
        """Approved seat-change requests (``config.amendment_object``) changed since ``since``.

        ``amendment_number`` is Amendment_Number__c when set, else the request's position among
        all requests of its subscription by creation (1, 2, ...).
        """
        obj = self.config.amendment_object
        if cursor is not None:
            page = await self.client.query_page(next_records_url=cursor)
        else:
            where = f"Status__c = {mapping.soql_string(APPROVED_AMENDMENT_STATUS)}"
            if since is not None:
                where += f" AND SystemModstamp >= {mapping.soql_datetime(since)}"
            soql = (
                f"SELECT {', '.join(mapping.AMENDMENT_FIELDS)} FROM {obj} WHERE {where} "
                "ORDER BY SystemModstamp, Id"
            )
            page = await self.client.query_page(soql)
        numbers = await self._amendment_numbers(page.records)
        items: list[Amendment] = []
        rejected: list[RejectedRecord] = []
        for record in page.records:
            try:
                items.append(mapping.amendment(record, numbers[str(record.get("Id"))]))
            except (DataError, MappingError) as refused:
                rejected.append(self._rejected(obj, record, refused))
        return Page(items, page.next_records_url, rejected)

    def _rejected(
        self, sobject: str, record: dict[str, Any], refused: PermanentError
    ) -> RejectedRecord:
        return RejectedRecord(
            self.system,
            f"{sobject} {record.get('Id')}",
            refused.message,
            refused.category.value,
            {k: v for k, v in record.items() if k != "attributes"},
        )

    async def _amendment_numbers(self, requests: list[dict[str, Any]]) -> dict[str, int]:
        numbers: dict[str, int] = {}
        unnumbered: set[str] = set()
        for request in requests:
            given = request.get("Amendment_Number__c")
            if given is not None:
                numbers[str(request.get("Id"))] = int(given)
            elif isinstance(request.get("Subscription__c"), str):
                unnumbered.add(request["Subscription__c"])
        if unnumbered:
            ids = ", ".join(mapping.soql_string(i) for i in sorted(unnumbered))
            soql = (
                f"SELECT Id, Subscription__c FROM {self.config.amendment_object} "
                f"WHERE Subscription__c IN ({ids}) ORDER BY CreatedDate, Id"
            )
            position: dict[str, int] = {}
            async for row in self.client.query(soql):
                subscription = str(row.get("Subscription__c"))
                position[subscription] = position.get(subscription, 0) + 1
                numbers.setdefault(str(row.get("Id")), position[subscription])
        for request in requests:
            numbers.setdefault(str(request.get("Id")), 0)
        return numbers

    # --- status write-back ---

    async def publish_status(
        self, updates: Sequence[CrmStatus], *, idempotency_key: str
    ) -> list[StatusResult]:
        """Each business status as its Salesforce record (``mapping.status_record``), written
        by ``write_records``."""
        records = [
            mapping.status_record(
                u,
                amendment_object=self.config.amendment_object,
                tax_id_fields=self._tax_id_fields(),
            )
            for u in updates
        ]
        return await self.write_records(records, idempotency_key=idempotency_key)

    def _tax_id_fields(self) -> list[tuple[str, str]]:
        config = self.config
        main = (
            [(config.account_tax_id_type, config.account_tax_id_field)]
            if config.account_tax_id_field
            else []
        )
        return main + [(t, f) for f, t in config.account_other_tax_id_fields.items()]

    async def write_records(
        self, updates: Sequence[SObjectUpdate], *, idempotency_key: str
    ) -> list[StatusResult]:
        """Upsert each record by its external id, 200 per sObject Collections call.

        ``external_id_field="Id"`` updates existing records by Salesforce Id instead (never
        creates: Collections upsert takes external id fields only).

        Results are in input order; a record Salesforce refuses (unknown field, bad value) gets
        ``error`` = ``"CODE: message (fields: ...)"``, and so does every record of a call refused
        as a whole for data or mapping reasons. Auth and transient failures are raised; trying
        again is safe because an upsert by external id converges on one record.
        """
        results: list[StatusResult | None] = [None] * len(updates)
        for (object_type, id_field), positions in _group(updates).items():
            for chunk in _chunks(updates, positions):
                records = [{**updates[i].fields, id_field: updates[i].external_id} for i in chunk]
                try:
                    if id_field.lower() == "id":
                        saved = await self.client.update_collection(object_type, records)
                    else:
                        saved = await self.client.upsert_collection(object_type, id_field, records)
                except (AuthError, TransientError):
                    raise
                except PermanentError as exc:
                    for i in chunk:
                        results[i] = StatusResult(updates[i].external_id, None, False, exc.message)
                    continue
                for i, outcome in zip(chunk, saved, strict=True):
                    results[i] = _status_result(updates[i], outcome)
        _log.info(
            "salesforce status published",
            extra={
                "idempotency_key": idempotency_key,
                "updates": len(updates),
                "failed": sum(1 for r in results if r is not None and r.error),
            },
        )
        return [r for r in results if r is not None]

    # --- health ---

    async def ledger(
        self,
        kind: LedgerKind,
        *,
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int = 200,
    ) -> Page[LedgerEntry]:
        """Onboarded Accounts, won Opportunities or Invoice__c records, one query batch a page
        (payments show on Invoice__c as its status and balance)."""
        if kind is LedgerKind.PAYMENT:
            return Page([])
        if cursor is not None:
            page = await self.client.query_page(next_records_url=cursor, batch_size=limit)
        else:
            page = await self.client.query_page(mapping.ledger_soql(kind, since), batch_size=limit)
        entries = [mapping.ledger_entry(kind, record) for record in page.records]
        return Page(entries, page.next_records_url)

    async def check(self) -> SystemCheck:
        """Logs in and reads ``/limits``; ``detail`` reports the daily API usage, never secrets."""
        started = time.perf_counter()
        try:
            limits = await self.client.limits()
        except DailyLimitExceeded as exc:
            return SystemCheck(self.system, True, True, exc.message, _ms(started))
        except AuthError as exc:
            return SystemCheck(self.system, True, False, exc.message, _ms(started))
        except TransientError as exc:
            return SystemCheck(self.system, False, False, exc.message, _ms(started))
        except PermanentError as exc:
            return SystemCheck(self.system, True, True, exc.message, _ms(started))
        daily = limits.get("DailyApiRequests") or {}
        maximum, remaining = daily.get("Max"), daily.get("Remaining")
        usage = (
            f"daily API requests used {int(maximum) - int(remaining)}/{int(maximum)}"
            if isinstance(maximum, int) and isinstance(remaining, int)
            else "daily API usage not reported"
        )
        detail = f"Salesforce API v{self.config.api_version} at {self.config.instance_url}: {usage}"
        return SystemCheck(self.system, True, True, detail, _ms(started))

    def _check_id(self, sobject: str, record_id: str) -> None:
        if not isinstance(record_id, str) or not is_salesforce_id(record_id):
            raise DataError(
                f"Salesforce {sobject} id {record_id!r} is malformed: expected 15 or 18 letters "
                "and digits",
                system=self.system,
            )


def _group(updates: Sequence[SObjectUpdate]) -> dict[tuple[str, str], list[int]]:
    groups: dict[tuple[str, str], list[int]] = {}
    for index, update in enumerate(updates):
        if not update.object_type or not update.external_id_field:
            raise MappingError(
                f"status update for external id {update.external_id!r} names no object type or "
                "external id field",
                system="crm",
            )
        groups.setdefault((update.object_type, update.external_id_field), []).append(index)
    return groups


def _chunks(updates: Sequence[SObjectUpdate], positions: list[int]) -> list[list[int]]:
    """Batches of at most 200 where no external id repeats (Salesforce refuses duplicates)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    seen: set[str] = set()
    for index in positions:
        key = updates[index].external_id.casefold()
        if len(current) == COLLECTION_BATCH or key in seen:
            chunks.append(current)
            current, seen = [], set()
        current.append(index)
        seen.add(key)
    if current:
        chunks.append(current)
    return chunks


def _status_result(update: SObjectUpdate, outcome: SaveResult) -> StatusResult:
    if outcome.success:
        return StatusResult(update.external_id, outcome.id, outcome.created)
    return StatusResult(
        update.external_id,
        outcome.id,
        False,
        f"{update.object_type} {update.external_id_field}={update.external_id}: "
        + outcome.describe_errors(),
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
