"""Master data: cross-references, golden customer record, matching, survivorship, legal-entity
resolution, catalog mapping and field ownership."""

from quote2cash.masterdata.catalog import (
    Catalog,
    CatalogProblem,
    CatalogReport,
    MappedOrderLine,
    ResolvedMapping,
    check_catalog,
    load_catalog,
    parse_catalog,
    product_code_of,
    product_codes,
)
from quote2cash.masterdata.config import ConfigError
from quote2cash.masterdata.entities import (
    EntityResolution,
    EntityResolver,
    load_entities,
    parse_entities,
)
from quote2cash.masterdata.golden import (
    GoldenCustomers,
    IngestOutcome,
    IngestResult,
    MatchReview,
    ReviewStatus,
)
from quote2cash.masterdata.matching import (
    CustomerCandidate,
    Matcher,
    Outcome,
    PairEvidence,
    load_matching,
    match_all,
    parse_matching,
)
from quote2cash.masterdata.ownership import (
    VIOLATION_EVENT,
    OwnershipConfig,
    OwnershipDecision,
    OwnershipViolation,
    check_change,
    load_ownership,
    parse_ownership,
)
from quote2cash.masterdata.survivorship import (
    GoldenRecord,
    Provenance,
    Survivorship,
    load_survivorship,
    parse_survivorship,
)
from quote2cash.masterdata.tax import (
    TaxDetermination,
    TaxResolver,
    load_tax,
    parse_tax,
)
from quote2cash.masterdata.xref import CrossReference, Kind, MergeResult, XrefStore

__all__ = [
    "VIOLATION_EVENT",
    "Catalog",
    "CatalogProblem",
    "CatalogReport",
    "ConfigError",
    "CrossReference",
    "CustomerCandidate",
    "EntityResolution",
    "EntityResolver",
    "GoldenCustomers",
    "GoldenRecord",
    "IngestOutcome",
    "IngestResult",
    "Kind",
    "MappedOrderLine",
    "MatchReview",
    "Matcher",
    "MergeResult",
    "Outcome",
    "OwnershipConfig",
    "OwnershipDecision",
    "OwnershipViolation",
    "PairEvidence",
    "Provenance",
    "ResolvedMapping",
    "ReviewStatus",
    "Survivorship",
    "TaxDetermination",
    "TaxResolver",
    "XrefStore",
    "check_catalog",
    "check_change",
    "load_catalog",
    "load_entities",
    "load_matching",
    "load_ownership",
    "load_survivorship",
    "load_tax",
    "match_all",
    "parse_catalog",
    "parse_entities",
    "parse_matching",
    "parse_ownership",
    "parse_survivorship",
    "parse_tax",
    "product_code_of",
    "product_codes",
]
