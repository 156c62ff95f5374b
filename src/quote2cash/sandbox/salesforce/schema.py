"""The emulated org's metadata: standard objects in code, custom objects and fields from YAML.

Describe, write validation and SOQL all read this one model, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

FIELD_TYPES = frozenset(
    {
        "id",
        "string",
        "textarea",
        "url",
        "phone",
        "email",
        "picklist",
        "boolean",
        "currency",
        "double",
        "percent",
        "int",
        "date",
        "datetime",
        "reference",
    }
)
NUMERIC_TYPES = frozenset({"currency", "double", "percent", "int"})
TEXT_TYPES = frozenset({"string", "textarea", "url", "phone", "email", "picklist"})
_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "currency": "xsd:double",
    "double": "xsd:double",
    "percent": "xsd:double",
    "int": "xsd:int",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}
CURRENCY_CODES = ("USD", "EUR", "GBP", "CHF", "CAD", "AUD", "JPY", "SEK", "NOK", "DKK")
CORPORATE_CURRENCY = "USD"
CURRENT_USER = "__current_user__"  # default of OwnerId: the session's user
CLOSED_WON = "Closed Won"
CLOSED_LOST = "Closed Lost"
OPPORTUNITY_STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    CLOSED_WON,
    CLOSED_LOST,
)


CASCADE_DELETE = frozenset(
    {
        ("Contact", "AccountId"),
        ("Opportunity", "AccountId"),
        ("OpportunityLineItem", "OpportunityId"),
        ("OrderItem", "OrderId"),
        ("PricebookEntry", "Product2Id"),
        ("PricebookEntry", "Pricebook2Id"),
    }
)
RESTRICT_DELETE = frozenset(
    {
        ("OpportunityLineItem", "PricebookEntryId"),
        ("OrderItem", "PricebookEntryId"),
        ("Order", "AccountId"),
    }
)


class SchemaError(ValueError):
    """A custom-object YAML file that does not describe a valid schema; names file and key."""


@dataclass
class FieldDef:
    """One field as describe reports it; ``required`` means REQUIRED_FIELD_MISSING on create."""

    name: str
    type: str
    label: str = ""
    length: int = 0
    precision: int = 0
    scale: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    custom: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    child_relationship_name: str | None = None
    picklist_values: tuple[str, ...] = ()
    restricted_picklist: bool = False
    default: Any = None
    calculated: bool = False
    auto_number: bool = False
    read_only_for_users: bool = False
    """Field-level security: editable by the integration user only (the hub's write-backs)."""

    def __post_init__(self) -> None:
        if not self.label:
            self.label = self.name.removesuffix("__c").replace("_", " ")
        if self.type in ("string", "url", "phone", "email", "picklist") and not self.length:
            self.length = 255
        if self.type == "textarea" and not self.length:
            self.length = 32000
        if self.type == "id" or self.type == "reference":
            self.length = 18
        if self.type in ("currency", "double", "percent") and not self.precision:
            self.precision, self.scale = 18, 2
        if self.type == "int" and not self.precision:
            self.precision = 9

    @property
    def required(self) -> bool:
        return (
            not self.nillable
            and self.createable
            and self.default is None
            and self.type != "boolean"
            and not self.calculated
        )

    def describe(self) -> dict[str, Any]:
        """The field's entry in an sObject describe, with the keys real describe responses carry."""
        return {
            "name": self.name,
            "type": self.type,
            "label": self.label,
            "length": self.length,
            "precision": self.precision,
            "scale": self.scale,
            "digits": self.precision if self.type == "int" else 0,
            "byteLength": self.length * 3,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
            "externalId": self.external_id,
            "idLookup": self.external_id or self.type == "id",
            "unique": self.unique,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "defaultedOnCreate": self.default is not None or self.type in ("id", "boolean"),
            "defaultValue": (
                self.default
                if isinstance(self.default, bool | str) and self.default != CURRENT_USER
                else None
            ),
            "calculated": self.calculated,
            "autoNumber": self.auto_number,
            "custom": self.custom,
            "caseSensitive": False,
            "filterable": self.type != "textarea",
            "sortable": self.type != "textarea",
            "groupable": self.type not in ("textarea", "currency", "double", "percent"),
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "restrictedPicklist": self.restricted_picklist,
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": value == self.default,
                    "label": value,
                    "value": value,
                    "validFor": None,
                }
                for value in self.picklist_values
            ],
            "inlineHelpText": None,
        }


@dataclass
class ChildRelationship:
    """A parent's view of a lookup pointing at it, used by SOQL child subqueries."""

    child_object: str
    field: str
    relationship_name: str


@dataclass
class ObjectDef:
    """One sObject type: its fields by name (case-insensitive lookup) and its id key prefix."""

    name: str
    key_prefix: str
    label: str = ""
    label_plural: str = ""
    custom: bool = False
    createable: bool = True
    fields: dict[str, FieldDef] = field(default_factory=dict)
    children: dict[str, ChildRelationship] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.label = self.label or self.name.removesuffix("__c").replace("_", " ")
        self.label_plural = self.label_plural or self.label + "s"
        self._by_lower: dict[str, FieldDef] = {}
        self._by_relationship: dict[str, FieldDef] = {}

    def add(self, field_def: FieldDef) -> None:
        self.fields[field_def.name] = field_def
        self._by_lower[field_def.name.lower()] = field_def
        if field_def.relationship_name:
            self._by_relationship[field_def.relationship_name.lower()] = field_def

    def field(self, name: str) -> FieldDef | None:
        return self._by_lower.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        """The lookup field behind a parent relationship name such as ``Account`` or ``Foo__r``."""
        return self._by_relationship.get(name.lower())

    def child(self, name: str) -> ChildRelationship | None:
        for rel_name, rel in self.children.items():
            if rel_name.lower() == name.lower():
                return rel
        return None

    def urls(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {"sobject": base, "describe": base + "/describe", "rowTemplate": base + "/{ID}"}

    def summary(self, version: str) -> dict[str, Any]:
        """The describeGlobal entry for this object."""
        return {
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label_plural,
            "keyPrefix": self.key_prefix,
            "custom": self.custom,
            "customSetting": False,
            "createable": self.createable,
            "updateable": self.createable,
            "deletable": self.createable,
            "queryable": True,
            "retrieveable": True,
            "searchable": True,
            "layoutable": True,
            "triggerable": True,
            "replicateable": True,
            "undeletable": self.createable,
            "mergeable": self.name in ("Account", "Contact"),
            "urls": self.urls(version),
        }

    def describe(self, version: str) -> dict[str, Any]:
        result = self.summary(version)
        result["fields"] = [f.describe() for f in self.fields.values()]
        result["childRelationships"] = [
            {
                "childSObject": rel.child_object,
                "field": rel.field,
                "relationshipName": rel.relationship_name,
                "cascadeDelete": (rel.child_object, rel.field) in CASCADE_DELETE,
                "deprecatedAndHidden": False,
                "restrictedDelete": (rel.child_object, rel.field) in RESTRICT_DELETE,
            }
            for rel in self.children.values()
        ]
        result["recordTypeInfos"] = []
        result["encoding"] = "UTF-8"
        return result


class Schema:
    """All sObject types of the org, looked up case-insensitively like Salesforce does."""

    def __init__(self, objects: Iterable[ObjectDef]) -> None:
        self.objects: dict[str, ObjectDef] = {}
        self._by_lower: dict[str, ObjectDef] = {}
        self._by_prefix: dict[str, ObjectDef] = {}
        self._referrers: dict[str, list[tuple[ObjectDef, FieldDef]]] = {}
        for obj in objects:
            self.objects[obj.name] = obj
            self._by_lower[obj.name.lower()] = obj
            self._by_prefix[obj.key_prefix] = obj
        self._link_children()

    def get(self, name: str) -> ObjectDef | None:
        return self._by_lower.get(name.lower())

    def by_prefix(self, prefix: str) -> ObjectDef | None:
        return self._by_prefix.get(prefix)

    def referrers(self, name: str) -> list[tuple[ObjectDef, FieldDef]]:
        """Every (object, lookup field) that can point at records of ``name``."""
        cached = self._referrers.get(name)
        if cached is None:
            cached = [
                (obj, f)
                for obj in self.objects.values()
                for f in obj.fields.values()
                if f.type == "reference"
                and name in f.reference_to
                and f.updateable is not None
                and not f.name.endswith(("CreatedById", "LastModifiedById"))
            ]
            self._referrers[name] = cached
        return cached

    def _link_children(self) -> None:
        for obj in self.objects.values():
            for f in obj.fields.values():
                if f.type != "reference" or not f.child_relationship_name:
                    continue
                for parent_name in f.reference_to:
                    parent = self.objects.get(parent_name)
                    if parent is not None:
                        parent.children[f.child_relationship_name] = ChildRelationship(
                            obj.name, f.name, f.child_relationship_name
                        )


def _system_fields(obj: ObjectDef, *, owned: bool = True) -> None:
    ro: dict[str, Any] = {"createable": False, "updateable": False, "nillable": False}
    obj.add(FieldDef("Id", "id", "Record ID", **ro))
    obj.add(FieldDef("IsDeleted", "boolean", "Deleted", **ro))
    if owned:
        obj.add(
            FieldDef(
                "OwnerId",
                "reference",
                "Owner ID",
                reference_to=("User",),
                relationship_name="Owner",
                nillable=False,
                default=CURRENT_USER,
            )
        )
    obj.add(FieldDef("CreatedDate", "datetime", "Created Date", **ro))
    obj.add(
        FieldDef(
            "CreatedById",
            "reference",
            "Created By ID",
            reference_to=("User",),
            relationship_name="CreatedBy",
            **ro,
        )
    )
    obj.add(FieldDef("LastModifiedDate", "datetime", "Last Modified Date", **ro))
    obj.add(
        FieldDef(
            "LastModifiedById",
            "reference",
            "Last Modified By ID",
            reference_to=("User",),
            relationship_name="LastModifiedBy",
            **ro,
        )
    )
    obj.add(FieldDef("SystemModstamp", "datetime", "System Modstamp", **ro))


def _currency_field(obj: ObjectDef) -> None:
    obj.add(
        FieldDef(
            "CurrencyIsoCode",
            "picklist",
            "Currency ISO Code",
            length=3,
            picklist_values=CURRENCY_CODES,
            restricted_picklist=True,
            default=CORPORATE_CURRENCY,
            nillable=False,
        )
    )


def _address(obj: ObjectDef, prefix: str) -> None:
    for part, label in (
        ("Street", "Street"),
        ("City", "City"),
        ("State", "State/Province"),
        ("PostalCode", "Zip/Postal Code"),
        ("Country", "Country"),
    ):
        kind = "textarea" if part == "Street" else "string"
        length = 255 if part == "Street" else (20 if part == "PostalCode" else 80)
        obj.add(FieldDef(prefix + part, kind, f"{prefix} {label}", length=length))
    obj.add(FieldDef(prefix + "CountryCode", "string", f"{prefix} Country Code", length=10))


def _ref(name: str, target: str, relationship: str, children: str | None, **kw: Any) -> FieldDef:
    return FieldDef(
        name,
        "reference",
        reference_to=(target,),
        relationship_name=relationship,
        child_relationship_name=children,
        **kw,
    )


def standard_objects() -> list[ObjectDef]:
    """Standard objects a quote-to-cash integration touches, with their realistic fields."""
    calc: dict[str, Any] = {"createable": False, "updateable": False, "calculated": True}
    user = ObjectDef("User", "005", createable=False)
    _system_fields(user, owned=False)
    for name in ("Username", "LastName", "Email"):
        user.add(FieldDef(name, "email" if name != "LastName" else "string", nillable=False))
    user.add(FieldDef("FirstName", "string"))
    user.add(FieldDef("Name", "string", "Full Name", createable=False, updateable=False))
    user.add(FieldDef("IsActive", "boolean", "Active", default=True))

    org = ObjectDef("Organization", "00D", createable=False)
    _system_fields(org, owned=False)
    org.add(FieldDef("Name", "string", createable=False, updateable=False))
    org.add(FieldDef("IsSandbox", "boolean", createable=False, updateable=False))
    org.add(FieldDef("DefaultLocaleSidKey", "string", createable=False, updateable=False))

    account = ObjectDef("Account", "001")
    _system_fields(account)
    account.add(FieldDef("Name", "string", "Account Name", nillable=False))
    account.add(FieldDef("AccountNumber", "string", "Account Number", length=40))
    account.add(
        FieldDef(
            "Type",
            "picklist",
            "Account Type",
            picklist_values=(
                "Prospect",
                "Customer - Direct",
                "Customer - Channel",
                "Partner",
                "Other",
            ),
        )
    )
    account.add(_ref("ParentId", "Account", "Parent", "ChildAccounts", label="Parent Account ID"))
    account.add(
        _ref(
            "MasterRecordId",
            "Account",
            "MasterRecord",
            None,
            label="Master Record ID",
            createable=False,
            updateable=False,
        )
    )
    _address(account, "Billing")
    _address(account, "Shipping")
    account.add(FieldDef("Phone", "phone", "Account Phone", length=40))
    account.add(FieldDef("Website", "url"))
    account.add(
        FieldDef(
            "Industry",
            "picklist",
            picklist_values=(
                "Agriculture",
                "Banking",
                "Communications",
                "Consulting",
                "Education",
                "Energy",
                "Finance",
                "Healthcare",
                "Manufacturing",
                "Retail",
                "Technology",
                "Other",
            ),
        )
    )
    account.add(FieldDef("NumberOfEmployees", "int", "Employees", precision=8))
    account.add(FieldDef("AnnualRevenue", "currency", "Annual Revenue"))
    account.add(FieldDef("Description", "textarea", "Account Description"))
    _currency_field(account)

    contact = ObjectDef("Contact", "003")
    _system_fields(contact)
    contact.add(_ref("AccountId", "Account", "Account", "Contacts", label="Account ID"))
    contact.add(FieldDef("FirstName", "string", "First Name", length=40))
    contact.add(FieldDef("LastName", "string", "Last Name", length=80, nillable=False))
    contact.add(FieldDef("Name", "string", "Full Name", length=121, **calc))
    contact.add(FieldDef("Email", "email"))
    contact.add(FieldDef("Phone", "phone", "Business Phone", length=40))
    contact.add(FieldDef("Title", "string", length=128))
    _address(contact, "Mailing")
    _currency_field(contact)

    product = ObjectDef("Product2", "01t", label="Product")
    _system_fields(product, owned=False)
    product.add(FieldDef("Name", "string", "Product Name", nillable=False))
    product.add(FieldDef("ProductCode", "string", "Product Code"))
    product.add(FieldDef("Description", "textarea", "Product Description", length=4000))
    product.add(FieldDef("IsActive", "boolean", "Active", default=False))
    product.add(
        FieldDef(
            "Family",
            "picklist",
            "Product Family",
            picklist_values=("Subscription", "Usage", "Services", "Hardware"),
        )
    )
    product.add(
        FieldDef(
            "QuantityUnitOfMeasure",
            "picklist",
            "Quantity Unit Of Measure",
            picklist_values=("Each", "Seat", "Unit", "Hour"),
        )
    )
    _currency_field(product)

    pricebook = ObjectDef("Pricebook2", "01s", label="Price Book")
    _system_fields(pricebook, owned=False)
    pricebook.add(FieldDef("Name", "string", "Price Book Name", nillable=False))
    pricebook.add(FieldDef("IsActive", "boolean", "Active", default=False))
    pricebook.add(FieldDef("IsStandard", "boolean", "Is Standard Price Book", **calc))
    pricebook.add(FieldDef("Description", "string"))

    entry = ObjectDef("PricebookEntry", "01u", label="Price Book Entry")
    _system_fields(entry, owned=False)
    entry.add(
        _ref(
            "Pricebook2Id",
            "Pricebook2",
            "Pricebook2",
            "PricebookEntries",
            label="Price Book ID",
            nillable=False,
            updateable=False,
        )
    )
    entry.add(
        _ref(
            "Product2Id",
            "Product2",
            "Product2",
            "PricebookEntries",
            label="Product ID",
            nillable=False,
            updateable=False,
        )
    )
    entry.add(FieldDef("Name", "string", "Product Name", **calc))
    entry.add(FieldDef("ProductCode", "string", "Product Code", **calc))
    entry.add(FieldDef("UnitPrice", "currency", "List Price", nillable=False))
    entry.add(FieldDef("IsActive", "boolean", "Active", default=False))
    entry.add(FieldDef("UseStandardPrice", "boolean", "Use Standard Price", default=False))
    _currency_field(entry)

    opportunity = ObjectDef("Opportunity", "006", label_plural="Opportunities")
    _system_fields(opportunity)
    opportunity.add(FieldDef("Name", "string", nillable=False, length=120))
    opportunity.add(_ref("AccountId", "Account", "Account", "Opportunities", label="Account ID"))
    opportunity.add(
        FieldDef(
            "StageName", "picklist", "Stage", nillable=False, picklist_values=OPPORTUNITY_STAGES
        )
    )
    opportunity.add(FieldDef("CloseDate", "date", "Close Date", nillable=False))
    opportunity.add(FieldDef("Amount", "currency"))
    opportunity.add(FieldDef("Probability", "percent", "Probability (%)", precision=3, scale=0))
    opportunity.add(
        FieldDef(
            "Type",
            "picklist",
            "Opportunity Type",
            picklist_values=(
                "New Business",
                "Existing Business - Upgrade",
                "Existing Business - Renewal",
            ),
        )
    )
    opportunity.add(FieldDef("IsClosed", "boolean", "Closed", **calc))
    opportunity.add(FieldDef("IsWon", "boolean", "Won", **calc))
    opportunity.add(FieldDef("Description", "textarea", length=32000))
    opportunity.add(
        _ref("Pricebook2Id", "Pricebook2", "Pricebook2", "Opportunities", label="Price Book ID")
    )
    opportunity.add(
        _ref("ContractId", "Contract", "Contract", "Opportunities", label="Contract ID")
    )
    _currency_field(opportunity)

    line = ObjectDef("OpportunityLineItem", "00k", label="Opportunity Product")
    _system_fields(line, owned=False)
    line.add(
        _ref(
            "OpportunityId",
            "Opportunity",
            "Opportunity",
            "OpportunityLineItems",
            label="Opportunity ID",
            nillable=False,
            updateable=False,
        )
    )
    line.add(
        _ref(
            "PricebookEntryId",
            "PricebookEntry",
            "PricebookEntry",
            "OpportunityLineItems",
            label="Price Book Entry ID",
            updateable=False,
        )
    )
    line.add(_ref("Product2Id", "Product2", "Product2", None, label="Product ID", updateable=False))
    line.add(FieldDef("Name", "string", "Opportunity Product Name", **calc))
    line.add(FieldDef("ProductCode", "string", "Product Code", **calc))
    line.add(FieldDef("Quantity", "double", precision=12, scale=2, nillable=False))
    line.add(FieldDef("UnitPrice", "currency", "Sales Price"))
    line.add(FieldDef("ListPrice", "currency", "List Price", **calc))
    line.add(FieldDef("TotalPrice", "currency", "Total Price", **calc))
    line.add(FieldDef("Discount", "percent"))
    line.add(FieldDef("ServiceDate", "date", "Date"))
    line.add(FieldDef("Description", "string", "Line Description"))
    _currency_field(line)

    contract = ObjectDef("Contract", "800")
    _system_fields(contract)
    contract.add(
        _ref("AccountId", "Account", "Account", "Contracts", label="Account ID", nillable=False)
    )
    contract.add(
        FieldDef("ContractNumber", "string", "Contract Number", length=30, auto_number=True, **calc)
    )
    contract.add(
        FieldDef(
            "Status",
            "picklist",
            nillable=False,
            default="Draft",
            picklist_values=("Draft", "In Approval Process", "Activated"),
        )
    )
    contract.add(FieldDef("StartDate", "date", "Contract Start Date"))
    contract.add(FieldDef("EndDate", "date", "Contract End Date", **calc))
    contract.add(FieldDef("ContractTerm", "int", "Contract Term (months)", precision=4))
    contract.add(FieldDef("Description", "textarea"))
    _currency_field(contract)

    order = ObjectDef("Order", "801")
    _system_fields(order)
    order.add(_ref("AccountId", "Account", "Account", "Orders", label="Account ID"))
    order.add(_ref("ContractId", "Contract", "Contract", "Orders", label="Contract ID"))
    order.add(_ref("OpportunityId", "Opportunity", "Opportunity", "Orders", label="Opportunity ID"))
    order.add(_ref("Pricebook2Id", "Pricebook2", "Pricebook2", "Orders", label="Price Book ID"))
    order.add(
        FieldDef("OrderNumber", "string", "Order Number", length=30, auto_number=True, **calc)
    )
    order.add(
        FieldDef(
            "Status",
            "picklist",
            nillable=False,
            default="Draft",
            picklist_values=("Draft", "Activated"),
        )
    )
    order.add(FieldDef("EffectiveDate", "date", "Order Start Date", nillable=False))
    order.add(FieldDef("EndDate", "date", "Order End Date"))
    order.add(FieldDef("TotalAmount", "currency", "Order Amount", **calc))
    order.add(FieldDef("Description", "textarea"))
    _currency_field(order)

    item = ObjectDef("OrderItem", "802", label="Order Product")
    _system_fields(item, owned=False)
    item.add(
        _ref(
            "OrderId",
            "Order",
            "Order",
            "OrderItems",
            label="Order ID",
            nillable=False,
            updateable=False,
        )
    )
    item.add(
        _ref(
            "PricebookEntryId",
            "PricebookEntry",
            "PricebookEntry",
            "OrderItems",
            label="Price Book Entry ID",
            nillable=False,
            updateable=False,
        )
    )
    item.add(_ref("Product2Id", "Product2", "Product2", None, label="Product ID", updateable=False))
    item.add(
        FieldDef("OrderItemNumber", "string", "Order Product Number", auto_number=True, **calc)
    )
    item.add(FieldDef("Quantity", "double", precision=12, scale=2, nillable=False))
    item.add(FieldDef("UnitPrice", "currency", "Unit Price", nillable=False))
    item.add(FieldDef("ListPrice", "currency", "List Price", **calc))
    item.add(FieldDef("TotalPrice", "currency", "Total Price", **calc))
    item.add(FieldDef("ServiceDate", "date", "Start Date"))
    item.add(FieldDef("EndDate", "date", "End Date"))
    item.add(FieldDef("Description", "string", "Line Description"))
    _currency_field(item)

    return [
        user,
        org,
        account,
        contact,
        product,
        pricebook,
        entry,
        opportunity,
        line,
        contract,
        order,
        item,
    ]


DEFAULT_CUSTOM_SCHEMA = "default_schema.yaml"
_FIELD_KEYS = frozenset(
    {
        "type",
        "label",
        "length",
        "precision",
        "scale",
        "required",
        "external_id",
        "unique",
        "reference_to",
        "relationship_name",
        "child_relationship_name",
        "values",
        "restricted",
        "default",
        "read_only_for_users",
    }
)


def _check(cond: bool, source: str, key: str, expected: str) -> None:
    if not cond:
        raise SchemaError(f"{source}: {key}: expected {expected}")


def _custom_field(source: str, where: str, name: Any, spec: Any) -> FieldDef:
    key = f"{where}.{name}"
    _check(
        isinstance(name, str) and name.endswith("__c") and name[:-3].isidentifier(),
        source,
        key,
        "a custom field API name ending in __c",
    )
    _check(isinstance(spec, dict), source, key, "a mapping of field properties")
    unknown = set(spec) - _FIELD_KEYS
    _check(not unknown, source, key, f"only the keys {sorted(_FIELD_KEYS)} (got {sorted(unknown)})")
    kind = spec.get("type")
    _check(
        kind in FIELD_TYPES - {"id"},
        source,
        key + ".type",
        f"one of {sorted(FIELD_TYPES - {'id'})}",
    )
    for int_key in ("length", "precision", "scale"):
        if int_key in spec:
            _check(
                isinstance(spec[int_key], int) and spec[int_key] >= 0,
                source,
                f"{key}.{int_key}",
                "a non-negative integer",
            )
    for bool_key in ("required", "external_id", "unique", "restricted", "read_only_for_users"):
        if bool_key in spec:
            _check(isinstance(spec[bool_key], bool), source, f"{key}.{bool_key}", "true or false")
    reference_to: tuple[str, ...] = ()
    relationship = None
    if kind == "reference":
        target = spec.get("reference_to")
        _check(isinstance(target, str), source, key + ".reference_to", "an sObject name")
        reference_to = (str(target),)
        relationship = spec.get("relationship_name", str(name)[:-3] + "__r")
    values = spec.get("values", [])
    if kind == "picklist":
        _check(
            isinstance(values, list) and all(isinstance(v, str) for v in values),
            source,
            key + ".values",
            "a list of picklist values (strings)",
        )
    if spec.get("external_id"):
        _check(
            kind in ("string", "int", "double", "email"),
            source,
            key + ".external_id",
            "external ids only on string, int, double or email fields",
        )
    return FieldDef(
        name=str(name),
        type=str(kind),
        label=str(spec.get("label", "")),
        length=int(spec.get("length", 0)),
        precision=int(spec.get("precision", 0)),
        scale=int(spec.get("scale", 0)),
        nillable=not spec.get("required", False),
        external_id=bool(spec.get("external_id", False)),
        unique=bool(spec.get("unique", False)),
        custom=True,
        reference_to=reference_to,
        relationship_name=relationship,
        child_relationship_name=spec.get("child_relationship_name"),
        picklist_values=tuple(values),
        restricted_picklist=bool(spec.get("restricted", False)),
        default=spec.get("default"),
        read_only_for_users=bool(spec.get("read_only_for_users", False)),
    )


def load_custom_schema(text: str, source: str, objects: list[ObjectDef]) -> list[ObjectDef]:
    """Add the YAML's custom objects and fields to ``objects``; SchemaError names file and key."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SchemaError(f"{source}: not valid YAML: {exc}") from exc
    if doc is None:
        return objects
    _check(isinstance(doc, dict), source, "<root>", "a mapping with 'objects' and/or 'fields'")
    unknown = set(doc) - {"objects", "fields"}
    _check(not unknown, source, "<root>", f"only 'objects' and 'fields' (got {sorted(unknown)})")
    by_name = {o.name: o for o in objects}
    custom_objects: Mapping[Any, Any] = doc.get("objects") or {}
    _check(isinstance(custom_objects, dict), source, "objects", "a mapping of object name to spec")
    used_prefixes = {o.key_prefix for o in objects}
    for index, (name, spec) in enumerate(custom_objects.items()):
        key = f"objects.{name}"
        _check(
            isinstance(name, str) and name.endswith("__c") and name[:-3].isidentifier(),
            source,
            key,
            "a custom object API name ending in __c",
        )
        _check(isinstance(spec, dict), source, key, "a mapping with 'label' and 'fields'")
        _check(name not in by_name, source, key, "a name not already defined")
        prefix = str(spec.get("key_prefix", f"a{index:02d}"))
        _check(
            len(prefix) == 3 and prefix.isalnum() and prefix not in used_prefixes,
            source,
            key + ".key_prefix",
            "a unique 3-character key prefix",
        )
        used_prefixes.add(prefix)
        obj = ObjectDef(
            str(name),
            prefix,
            label=str(spec.get("label", "")),
            label_plural=str(spec.get("label_plural", "")),
            custom=True,
        )
        _system_fields(obj)
        obj.add(
            FieldDef(
                "Name",
                "string",
                spec.get("name_label", obj.label + " Name"),
                length=80,
                nillable=True,
            )
        )
        _currency_field(obj)
        fields = spec.get("fields") or {}
        _check(isinstance(fields, dict), source, key + ".fields", "a mapping of custom fields")
        for field_name, field_spec in fields.items():
            obj.add(_custom_field(source, key + ".fields", field_name, field_spec))
        objects.append(obj)
        by_name[obj.name] = obj
    extra_fields: Mapping[Any, Any] = doc.get("fields") or {}
    _check(isinstance(extra_fields, dict), source, "fields", "a mapping of object name to fields")
    for obj_name, fields in extra_fields.items():
        key = f"fields.{obj_name}"
        _check(obj_name in by_name, source, key, f"a known sObject ({sorted(by_name)})")
        _check(isinstance(fields, dict), source, key, "a mapping of custom fields")
        for field_name, field_spec in fields.items():
            f = _custom_field(source, key, field_name, field_spec)
            _check(
                by_name[obj_name].field(f.name) is None,
                source,
                f"{key}.{field_name}",
                "a field name not already defined",
            )
            by_name[obj_name].add(f)
    for obj in objects:
        for f in obj.fields.values():
            for target in f.reference_to:
                _check(
                    target in by_name,
                    source,
                    f"{obj.name}.{f.name}.reference_to",
                    f"a known sObject (got {target!r})",
                )
    return objects


def build_schema(custom_schema_path: str | Path | None = None) -> Schema:
    """The org's schema: standard objects plus the given YAML (default: the packaged one)."""
    objects = standard_objects()
    if custom_schema_path is None:
        text = resources.files(__package__).joinpath(DEFAULT_CUSTOM_SCHEMA).read_text("utf-8")
        source = DEFAULT_CUSTOM_SCHEMA
    else:
        path = Path(custom_schema_path)
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise SchemaError(f"{path}: cannot be read: {exc.strerror}") from exc
        source = str(path)
    return Schema(load_custom_schema(text, source, objects))
