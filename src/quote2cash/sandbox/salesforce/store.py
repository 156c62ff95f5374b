"""In-memory records with Salesforce's write semantics: validation, derived fields, undo.

Every write goes through ``create``/``update``/``delete``; each is atomic, and
``transaction()`` groups several so a failure rolls all of them back (allOrNone).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import SalesforceError, bad_request, not_found
from .ids import IdFactory, to_18
from .schema import (
    CASCADE_DELETE,
    CLOSED_LOST,
    CLOSED_WON,
    CURRENT_USER,
    NUMERIC_TYPES,
    RESTRICT_DELETE,
    TEXT_TYPES,
    FieldDef,
    ObjectDef,
    Schema,
)
from .values import Clock, format_decimal, parse_date, parse_datetime

Record = dict[str, Any]
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


MERGEABLE = frozenset({"Account", "Contact", "Lead"})
"""What the SOAP ``merge()`` call accepts."""


@dataclass
class ClosedWon:
    """An opportunity that became Closed Won in a committed write; feeds the outbound callout."""

    opportunity_id: str
    occurred_at: datetime


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "START_OBJECT"
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if isinstance(value, int | Decimal):
        return "VALUE_NUMBER_INT" if isinstance(value, int) else "VALUE_NUMBER_FLOAT"
    return "VALUE_STRING"


def multiple_records(obj: ObjectDef, matches: list[Record]) -> SalesforceError:
    """Salesforce's 300 answer: the URLs of every record the external id matched."""
    error = SalesforceError(300, "MULTIPLE_CHOICES", "More than one record matches")
    error.payload = [f"/services/data/v{{version}}/sobjects/{obj.name}/{m['Id']}" for m in matches]
    return error


def _parser_error(java_type: str, value: Any) -> SalesforceError:
    return bad_request(
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {java_type} from {_json_kind(value)} value {value} "
        "or request may be missing a required field",
    )


class Store:
    """All records of the org, by type then 18-character id."""

    def __init__(self, schema: Schema, clock: Clock) -> None:
        self.schema = schema
        self.clock = clock
        self.listeners: list[Callable[[ClosedWon], None]] = []
        self.acting_user: str | None = None
        """The signed-in user of the request being served (None: the emulator itself)."""
        self.integration_users: set[str] = set()
        """Users whose profile may edit ``read_only_for_users`` fields (the hub's)."""
        self.reset()

    def reset(self) -> None:
        self.ids = IdFactory()
        self.tables: dict[str, dict[str, Record]] = {name: {} for name in self.schema.objects}
        self.type_of: dict[str, str] = {}
        self._index: dict[tuple[str, str], dict[Any, set[str]]] = {}
        self._undo: list[tuple[str, str, Record | None]] | None = None
        self._pending: list[ClosedWon] = []
        self._auto_numbers: dict[str, int] = {}
        self.user_id = self._seed(
            "User",
            {
                "Username": "integration@quote2cash.example",
                "LastName": "Integration",
                "FirstName": "Hub",
                "Email": "integration@quote2cash.example",
                "Name": "Hub Integration",
                "IsActive": True,
            },
        )
        self.org_id = self._seed(
            "Organization",
            {"Name": "quote2cash Emulated Org", "IsSandbox": True, "DefaultLocaleSidKey": "en_US"},
        )
        self.standard_pricebook_id = self._seed(
            "Pricebook2", {"Name": "Standard Price Book", "IsActive": True, "IsStandard": True}
        )

    def _seed(self, type_name: str, values: Record) -> str:
        obj = self.schema.objects[type_name]
        record = self._blank(obj)
        record.update(values)
        record_id = record["Id"]
        self._put(type_name, record)
        self.type_of[record_id] = type_name
        return str(record_id)

    def _blank(self, obj: ObjectDef) -> Record:
        now = self.clock.now()
        record: Record = dict.fromkeys(obj.fields)
        record_id = self.ids.new(obj.key_prefix)
        user = getattr(self, "user_id", None) or record_id
        record.update(
            Id=record_id,
            IsDeleted=False,
            CreatedDate=now,
            LastModifiedDate=now,
            SystemModstamp=now,
            CreatedById=user,
            LastModifiedById=user,
        )
        for f in obj.fields.values():
            if f.type == "boolean" and record[f.name] is None:
                record[f.name] = bool(f.default)
            elif f.default == CURRENT_USER:
                record[f.name] = user
            elif f.default is not None and record[f.name] is None:
                record[f.name] = f.default
        return record

    # ----- external id / unique index -----

    def _indexed(self, type_name: str) -> list[FieldDef]:
        obj = self.schema.objects[type_name]
        return [f for f in obj.fields.values() if f.external_id or f.unique]

    def _put(self, type_name: str, record: Record) -> None:
        old = self.tables[type_name].get(record["Id"])
        if old is not None:
            self._unindex(type_name, old)
        self.tables[type_name][record["Id"]] = record
        if record["IsDeleted"]:
            return
        for f in self._indexed(type_name):
            if record[f.name] is not None:
                bucket = self._index.setdefault((type_name, f.name), {})
                bucket.setdefault(_index_key(record[f.name]), set()).add(record["Id"])

    def _unindex(self, type_name: str, record: Record) -> None:
        if record["IsDeleted"]:
            return
        for f in self._indexed(type_name):
            if record[f.name] is not None:
                bucket = self._index.get((type_name, f.name), {})
                bucket.get(_index_key(record[f.name]), set()).discard(record["Id"])

    def _indexed_ids(self, type_name: str, field_name: str, value: Any) -> set[str]:
        return set(self._index.get((type_name, field_name), {}).get(_index_key(value), ()))

    # ----- lookup -----

    def object(self, type_name: str) -> ObjectDef:
        obj = self.schema.get(type_name)
        if obj is None:
            raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
        return obj

    def find(self, record_id: str, *, include_deleted: bool = False) -> Record | None:
        full = to_18(record_id)
        if full is None:
            return None
        type_name = self.type_of.get(full)
        if type_name is None:
            return None
        record = self.tables[type_name].get(full)
        if record is None or (record["IsDeleted"] and not include_deleted):
            return None
        return record

    def get(self, type_name: str, record_id: str) -> Record:
        obj = self.object(type_name)
        record = self.find(record_id)
        if record is None or self.type_of[record["Id"]] != obj.name:
            raise not_found()
        return record

    def records(self, type_name: str, *, include_deleted: bool = False) -> Iterator[Record]:
        for record in self.tables[type_name].values():
            if include_deleted or not record["IsDeleted"]:
                yield record

    def find_by_external_id(self, obj: ObjectDef, field_def: FieldDef, value: Any) -> list[Record]:
        """Live records whose external id equals ``value`` (text compared case-insensitively)."""
        target = self._coerce(obj, field_def, value)
        if target is None:
            return []
        if field_def.external_id or field_def.unique:
            ids = self._indexed_ids(obj.name, field_def.name, target)
            return [self.tables[obj.name][i] for i in sorted(ids)]
        return [
            r
            for r in self.records(obj.name)
            if r[field_def.name] is not None and _index_key(r[field_def.name]) == _index_key(target)
        ]

    # ----- transactions -----

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all; Closed Won events only on commit."""
        outer = self._undo is None
        if outer:
            self._undo = []
            self._pending = []
        mark = len(self._undo or [])
        pending_mark = len(self._pending)
        try:
            yield
        except BaseException:
            self._rollback_to(mark)
            del self._pending[pending_mark:]
            if outer:
                self._undo = None
            raise
        if outer:
            self._undo = None
            events, self._pending = self._pending, []
            for event in events:
                for listener in self.listeners:
                    listener(event)

    def _rollback_to(self, mark: int) -> None:
        assert self._undo is not None
        while len(self._undo) > mark:
            type_name, record_id, previous = self._undo.pop()
            if previous is None:
                current = self.tables[type_name].pop(record_id, None)
                if current is not None:
                    self._unindex(type_name, current)
                self.type_of.pop(record_id, None)
            else:
                self._put(type_name, previous)

    def _remember(self, type_name: str, record_id: str, previous: Record | None) -> None:
        if self._undo is not None:
            self._undo.append((type_name, record_id, None if previous is None else dict(previous)))

    # ----- writes -----

    def create(self, type_name: str, body: Any) -> str:
        obj = self.object(type_name)
        if not obj.createable:
            raise bad_request("INVALID_TYPE", f"sObject type '{obj.name}' is not createable")
        values = self._validate(obj, body, creating=True)
        with self.transaction():
            record = self._blank(obj)
            record.update(values)
            missing = [f.name for f in obj.fields.values() if f.required and record[f.name] is None]
            if missing:
                raise bad_request(
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{', '.join(missing)}]",
                    missing,
                )
            self._derive(obj, record, None)
            self._check_unique(obj, record)
            self._remember(obj.name, record["Id"], None)
            self._put(obj.name, record)
            self.type_of[record["Id"]] = obj.name
            self._after_write(obj, record, None)
        return str(record["Id"])

    def update(self, type_name: str, record_id: str, body: Any) -> None:
        obj = self.object(type_name)
        current = self.get(obj.name, record_id)
        values = self._validate(obj, body, creating=False)
        with self.transaction():
            self._apply_update(obj, current, values)

    def _apply_update(self, obj: ObjectDef, current: Record, values: Record) -> None:
        previous = dict(current)
        record = dict(current)
        record.update(values)
        nulled = [f.name for f in obj.fields.values() if f.required and record[f.name] is None]
        if nulled:
            raise bad_request(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(nulled)}]",
                nulled,
            )
        self._derive(obj, record, previous)
        self._check_unique(obj, record)
        now = self.clock.now()
        record.update(LastModifiedDate=now, SystemModstamp=now, LastModifiedById=self.user_id)
        self._remember(obj.name, record["Id"], previous)
        self._put(obj.name, record)
        self._after_write(obj, record, previous)

    def delete(self, type_name: str, record_id: str) -> None:
        obj = self.object(type_name)
        full = to_18(record_id)
        existing = self.tables[obj.name].get(full) if full else None
        if existing is not None and existing["IsDeleted"]:
            raise SalesforceError(404, "ENTITY_IS_DELETED", "entity is deleted")
        record = self.get(obj.name, record_id)
        with self.transaction():
            self._delete(obj, record)

    def _delete(self, obj: ObjectDef, record: Record) -> None:
        """Delete like Salesforce: cascade to owned children, clear optional lookups, refuse
        when a required lookup (or a line item) still points at the record."""
        previous = dict(record)
        now = self.clock.now()
        deleted = dict(record, IsDeleted=True, LastModifiedDate=now, SystemModstamp=now)
        self._remember(obj.name, record["Id"], previous)
        self._put(obj.name, deleted)
        for child_obj, f in self.schema.referrers(obj.name):
            children = [c for c in self.records(child_obj.name) if c[f.name] == record["Id"]]
            if not children:
                continue
            if (child_obj.name, f.name) in CASCADE_DELETE:
                for child in children:
                    self._delete(child_obj, child)
            elif f.nillable and (child_obj.name, f.name) not in RESTRICT_DELETE:
                for child in children:
                    self._apply_update(child_obj, child, {f.name: None})
            else:
                raise bad_request(
                    "DELETE_FAILED",
                    f"Your attempt to delete {record.get('Name') or record['Id']} could not be "
                    f"completed because it is associated with the following "
                    f"{child_obj.label_plural.lower()}: {children[0]['Id']}",
                )
        self._after_write(obj, deleted, previous)

    def merge(
        self, type_name: str, master_id: str, losers: list[str], master_values: Any = None
    ) -> dict[str, Any]:
        """Merge like the SOAP ``merge()`` call: up to two records into the master, their related
        records re-parented to it, the losers deleted with ``MasterRecordId`` set; one transaction.
        Returns the MergeResult's fields (id, mergedRecordIds, updatedRelatedIds)."""
        obj = self.object(type_name)
        if obj.name not in MERGEABLE:
            raise bad_request(
                "INVALID_TYPE", f"merge: {obj.name} is not mergeable (Account, Contact, Lead)"
            )
        if not 1 <= len(losers) <= 2:
            raise bad_request(
                "INVALID_OPERATION",
                "merge: give one or two records to merge (three records at most in a request)",
            )
        master = self.get(obj.name, master_id)
        values = self._validate(obj, master_values or {}, creating=False)
        loser_records = []
        for loser_id in losers:
            loser = self.get(obj.name, loser_id)
            if loser["Id"] == master["Id"]:
                raise bad_request("INVALID_OPERATION", "merge: the master is among the records")
            loser_records.append(loser)
        related: list[str] = []
        with self.transaction():
            for loser in loser_records:
                for child_obj, f in self.schema.referrers(obj.name):
                    if f.name == "MasterRecordId" or not f.updateable:
                        continue
                    for child in list(self.records(child_obj.name)):
                        if child[f.name] != loser["Id"]:
                            continue
                        pointer = None if child["Id"] == master["Id"] else master["Id"]
                        self._apply_update(child_obj, child, {f.name: pointer})
                        related.append(child["Id"])
                self._delete(obj, self.get(obj.name, loser["Id"]))
                gone = dict(self.tables[obj.name][loser["Id"]], MasterRecordId=master["Id"])
                self._put(obj.name, gone)
            if values:
                self._apply_update(obj, self.get(obj.name, master["Id"]), values)
        return {
            "id": master["Id"],
            "mergedRecordIds": [r["Id"] for r in loser_records],
            "updatedRelatedIds": sorted(set(related) - {master["Id"]}),
        }

    def upsert(
        self, type_name: str, field_name: str, value: str, body: Any, *, update_only: bool = False
    ) -> tuple[str, bool]:
        """Create or update by external id; (id, created). 300 when several records match;
        404 with ``update_only`` (the ``updateOnly`` parameter) when none does."""
        obj = self.object(type_name)
        field_def = obj.field(field_name)
        if field_def is None or not (field_def.external_id or field_def.type == "id"):
            raise SalesforceError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {field_name}",
            )
        if not isinstance(body, dict):
            raise _parser_error(f"SObject {obj.name}", body)
        if field_def.type == "id":
            existing = self.find(value)
            matches = [existing] if existing and self.type_of[existing["Id"]] == obj.name else []
        else:
            matches = self.find_by_external_id(obj, field_def, value)
        if len(matches) > 1:
            raise multiple_records(obj, matches)
        body = dict(body)
        for key in list(body):
            if (
                key.lower() == field_def.name.lower()
                and str(body.pop(key)).casefold() != str(value).casefold()
            ):
                raise bad_request(
                    "INVALID_FIELD",
                    f"The value of {field_def.name} in the URL does not match "
                    "the value in the request body",
                    [field_def.name],
                )
        if matches:
            values = self._validate(obj, body, creating=False)
            with self.transaction():
                self._apply_update(obj, matches[0], values)
            return str(matches[0]["Id"]), False
        if update_only:
            raise not_found()
        if field_def.type != "id":
            body[field_def.name] = value
        return self.create(obj.name, body), True

    # ----- validation -----

    def _validate(self, obj: ObjectDef, body: Any, *, creating: bool) -> Record:
        if not isinstance(body, dict):
            raise _parser_error(f"SObject {obj.name}", body)
        values: Record = {}
        read_only = []
        for key, raw in body.items():
            if key == "attributes":
                continue
            field_def = obj.field(key)
            if field_def is None:
                rel = obj.relationship(key)
                if rel is not None and isinstance(raw, dict):
                    values[rel.name] = self._resolve_foreign_key(obj, rel, raw)
                    continue
                raise bad_request(
                    "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}"
                )
            allowed = field_def.createable if creating else field_def.updateable
            if field_def.read_only_for_users and not self._integration_user():
                allowed = False
            if not allowed:
                if field_def.type == "id" and not creating:
                    continue
                read_only.append(field_def.name)
                continue
            values[field_def.name] = self._coerce(obj, field_def, raw)
        if read_only:
            verb = "create" if creating else "update"
            raise bad_request(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to {verb}/update fields: {', '.join(read_only)}. Please check the "
                "security settings of this field and verify that it is read/write for your "
                "profile or permission set.",
                read_only,
            )
        return values

    def _integration_user(self) -> bool:
        return self.acting_user is None or self.acting_user in self.integration_users

    def _resolve_foreign_key(self, obj: ObjectDef, rel: FieldDef, raw: Record) -> str:
        target = self.schema.objects[rel.reference_to[0]]
        keys = [k for k in raw if k != "attributes"]
        if len(keys) != 1:
            raise bad_request(
                "INVALID_FIELD",
                f"{rel.relationship_name}: a foreign key reference names exactly "
                "one external id field",
            )
        key_field = target.field(keys[0])
        if key_field is None or not (key_field.external_id or key_field.type == "id"):
            raise bad_request(
                "INVALID_FIELD",
                f"Field name provided, {keys[0]} is not an External ID or indexed "
                f"field for {target.name}",
            )
        matches = self.find_by_external_id(target, key_field, raw[keys[0]])
        if not matches:
            raise bad_request(
                "INVALID_FIELD",
                f"Foreign key external ID: {raw[keys[0]]} not found for field "
                f"{key_field.name} in entity {target.name}",
            )
        if len(matches) > 1:
            raise bad_request(
                "INVALID_FIELD",
                f"Foreign key external ID: {raw[keys[0]]} matches multiple {target.name} records",
            )
        return str(matches[0]["Id"])

    def _coerce(self, obj: ObjectDef, f: FieldDef, raw: Any) -> Any:
        if raw is None or (raw == "" and f.type not in TEXT_TYPES):
            return None
        kind = f.type
        if isinstance(raw, dict | list):
            raise bad_request(
                "INVALID_TYPE_ON_FIELD_IN_RECORD",
                f"{f.label}: value not of required type: {raw}",
                [f.name],
            )
        if kind in TEXT_TYPES:
            if isinstance(raw, bool):
                raise _parser_error("string", raw)
            text = str(raw)
            if len(text) > f.length:
                raise bad_request(
                    "STRING_TOO_LONG",
                    f"{f.label}: data value too large: {text[:40]} (max length={f.length})",
                    [f.name],
                )
            if kind == "email" and text and not _EMAIL.match(text):
                raise bad_request(
                    "INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {text}", [f.name]
                )
            if kind == "picklist" and f.restricted_picklist and text not in f.picklist_values:
                what = (
                    "invalid currency code"
                    if f.name == "CurrencyIsoCode"
                    else "bad value for restricted picklist field"
                )
                raise bad_request(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{f.label}: {what}: {text}",
                    [f.name],
                )
            return text
        if kind == "boolean":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("true", "false"):
                return raw.lower() == "true"
            raise _parser_error("boolean", raw)
        if kind in NUMERIC_TYPES:
            return self._coerce_number(f, raw)
        if kind == "date":
            parsed_date = parse_date(raw) if isinstance(raw, str) else None
            if parsed_date is None:
                raise _parser_error("date", raw)
            return parsed_date
        if kind == "datetime":
            parsed = parse_datetime(raw) if isinstance(raw, str) else None
            if parsed is None:
                raise _parser_error("datetime", raw)
            return parsed
        if kind in ("reference", "id"):
            return self._coerce_reference(obj, f, raw)
        raise _parser_error(kind, raw)

    def _coerce_number(self, f: FieldDef, raw: Any) -> Any:
        java_type = "int" if f.type == "int" else "double"
        if isinstance(raw, bool):
            raise _parser_error(java_type, raw)
        try:
            number = Decimal(raw)
        except InvalidOperation:
            raise _parser_error(java_type, raw) from None
        if not number.is_finite():
            raise _parser_error(java_type, raw)
        if abs(number) >= Decimal(10) ** (f.precision - f.scale):
            raise bad_request(
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"{f.label}: value outside of valid range on numeric field: {raw}",
                [f.name],
            )
        if f.type == "int":
            if number != number.to_integral_value():
                raise _parser_error(java_type, raw)
            return int(number)
        return format_decimal(number, f.scale)

    def _coerce_reference(self, obj: ObjectDef, f: FieldDef, raw: Any) -> str:
        if not isinstance(raw, str):
            raise _parser_error("id", raw)
        full = to_18(raw)
        if full is None:
            raise bad_request(
                "MALFORMED_ID", f"{f.label}: id value of incorrect type: {raw}", [f.name]
            )
        target_obj = self.schema.by_prefix(full[:3])
        if target_obj is None or target_obj.name not in (f.reference_to or (obj.name,)):
            raise bad_request(
                "FIELD_INTEGRITY_EXCEPTION",
                f"field integrity exception: unknown ({f.label}: id value of incorrect type: "
                f"{raw})",
                [f.name],
            )
        if self.find(full) is None:
            raise bad_request("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name])
        return full

    def _check_unique(self, obj: ObjectDef, record: Record) -> None:
        for f in obj.fields.values():
            value = record[f.name]
            if not f.unique or value is None:
                continue
            others = self._indexed_ids(obj.name, f.name, value) - {record["Id"]}
            if others:
                raise bad_request(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {f.name} duplicates value on record with id: "
                    f"{min(others)}",
                    [],
                )

    # ----- derived fields and roll-ups -----

    def _next_number(self, key: str) -> str:
        self._auto_numbers[key] = self._auto_numbers.get(key, 99) + 1
        return f"{self._auto_numbers[key]:08d}"

    def _derive(self, obj: ObjectDef, record: Record, previous: Record | None) -> None:
        name = obj.name
        if name == "Opportunity":
            stage = record["StageName"]
            record["IsClosed"] = stage in (CLOSED_WON, CLOSED_LOST)
            record["IsWon"] = stage == CLOSED_WON
        elif name in ("Contact", "User"):
            record["Name"] = " ".join(p for p in (record["FirstName"], record["LastName"]) if p)
        elif name == "PricebookEntry":
            self._derive_pricebook_entry(record, previous)
        elif name in ("OpportunityLineItem", "OrderItem"):
            self._derive_line(name, record, previous)
        elif name == "Contract":
            if previous is None:
                record["ContractNumber"] = self._next_number("Contract")
            start, term = record["StartDate"], record["ContractTerm"]
            record["EndDate"] = _add_months(start, term) if start and term else None
        elif name == "Order":
            if previous is None:
                record["OrderNumber"] = self._next_number("Order")
                record["TotalAmount"] = Decimal("0.00")
            if record["ContractId"] and not record["AccountId"]:
                record["AccountId"] = self.tables["Contract"][record["ContractId"]]["AccountId"]
            if not record["AccountId"]:
                raise bad_request(
                    "REQUIRED_FIELD_MISSING",
                    "Required fields are missing: [AccountId]",
                    ["AccountId"],
                )

    def _derive_pricebook_entry(self, record: Record, previous: Record | None) -> None:
        product = self.tables["Product2"][record["Product2Id"]]
        record["Name"], record["ProductCode"] = product["Name"], product["ProductCode"]
        if previous is not None:
            return
        pricebook = self.tables["Pricebook2"][record["Pricebook2Id"]]
        same_price = [
            e
            for e in self.records("PricebookEntry")
            if e["Product2Id"] == record["Product2Id"]
            and e["CurrencyIsoCode"] == record["CurrencyIsoCode"]
        ]
        if any(e["Pricebook2Id"] == record["Pricebook2Id"] for e in same_price):
            raise bad_request(
                "DUPLICATE_VALUE", "This price definition already exists in this price book", []
            )
        if not pricebook["IsStandard"] and not any(
            e["Pricebook2Id"] == self.standard_pricebook_id for e in same_price
        ):
            raise bad_request(
                "STANDARD_PRICE_NOT_DEFINED", "No standard price defined for this product", []
            )

    def _derive_line(self, name: str, record: Record, previous: Record | None) -> None:
        parent_field = "OpportunityId" if name == "OpportunityLineItem" else "OrderId"
        parent_type = "Opportunity" if name == "OpportunityLineItem" else "Order"
        parent = self.tables[parent_type][record[parent_field]]
        if previous is None:
            entry = self._line_entry(parent_type, parent, record)
            record["PricebookEntryId"] = entry["Id"]
            record["Product2Id"] = entry["Product2Id"]
            record["ListPrice"] = entry["UnitPrice"]
            record["CurrencyIsoCode"] = parent["CurrencyIsoCode"]
            if name == "OpportunityLineItem":
                product = self.tables["Product2"][entry["Product2Id"]]
                record["Name"] = f"{parent['Name']} {product['Name']}"[:255]
                record["ProductCode"] = product["ProductCode"]
            else:
                record["OrderItemNumber"] = self._next_number("OrderItem")
        if record["UnitPrice"] is None:
            raise bad_request(
                "FIELD_INTEGRITY_EXCEPTION",
                "field integrity exception: TotalPrice, UnitPrice (must specify either "
                "TotalPrice or UnitPrice)",
                ["UnitPrice"],
            )
        total = record["Quantity"] * record["UnitPrice"]
        if name == "OpportunityLineItem" and record["Discount"]:
            total = total * (Decimal(100) - record["Discount"]) / Decimal(100)
        record["TotalPrice"] = format_decimal(total, 2)

    def _line_entry(self, parent_type: str, parent: Record, record: Record) -> Record:
        entry_id = record["PricebookEntryId"]
        if entry_id is None and record.get("Product2Id"):
            pricebook = parent["Pricebook2Id"] or self.standard_pricebook_id
            for e in self.records("PricebookEntry"):
                if (
                    e["Product2Id"] == record["Product2Id"]
                    and e["Pricebook2Id"] == pricebook
                    and e["CurrencyIsoCode"] == parent["CurrencyIsoCode"]
                ):
                    entry_id = e["Id"]
        if entry_id is None:
            raise bad_request(
                "REQUIRED_FIELD_MISSING",
                "Required fields are missing: [PricebookEntryId]",
                ["PricebookEntryId"],
            )
        entry = self.tables["PricebookEntry"][entry_id]
        integrity = None
        if not entry["IsActive"]:
            integrity = "pricebook entry is inactive"
        elif entry["CurrencyIsoCode"] != parent["CurrencyIsoCode"]:
            integrity = (
                f"pricebook entry currency code does not match {parent_type.lower()} currency code"
            )
        elif parent["Pricebook2Id"] and parent["Pricebook2Id"] != entry["Pricebook2Id"]:
            integrity = (
                f"pricebook entry is in a different pricebook than the one assigned "
                f"to the {parent_type.lower()}"
            )
        if integrity:
            raise bad_request(
                "FIELD_INTEGRITY_EXCEPTION",
                f"field integrity exception: PricebookEntryId ({integrity})",
                ["PricebookEntryId"],
            )
        if not parent["Pricebook2Id"]:
            parent_obj = self.schema.objects[parent_type]
            self._apply_update(parent_obj, parent, {"Pricebook2Id": entry["Pricebook2Id"]})
        return entry

    def _after_write(self, obj: ObjectDef, record: Record, previous: Record | None) -> None:
        if obj.name == "Opportunity" and not record["IsDeleted"]:
            was_won = previous is not None and previous["StageName"] == CLOSED_WON
            if record["StageName"] == CLOSED_WON and not was_won:
                self._pending.append(ClosedWon(record["Id"], record["LastModifiedDate"]))
        elif obj.name in ("OpportunityLineItem", "OrderItem"):
            self._roll_up(obj.name, record)

    def _roll_up(self, name: str, line: Record) -> None:
        parent_field, parent_type, total_field = (
            ("OpportunityId", "Opportunity", "Amount")
            if name == "OpportunityLineItem"
            else ("OrderId", "Order", "TotalAmount")
        )
        parent = self.tables[parent_type].get(line[parent_field])
        if parent is None or parent["IsDeleted"]:
            return
        total = sum(
            (r["TotalPrice"] for r in self.records(name) if r[parent_field] == parent["Id"]),
            Decimal("0.00"),
        )
        if parent[total_field] != total:
            self._apply_update(self.schema.objects[parent_type], parent, {total_field: total})


def _add_months(start: date, months: int) -> date:
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    day = min(
        start.day,
        [
            31,
            29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28,
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ][month - 1],
    )
    return date(year, month, day) - timedelta(days=1)


def _index_key(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value
