"""The sync state answers an id only for the same fingerprint and a still-current link."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from quote2cash.canonical import Address, Customer
from quote2cash.engine.runtime import Runtime
from quote2cash.masterdata.sync import SyncState, fingerprint
from quote2cash.masterdata.xref import Kind, XrefStore


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime.open(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    yield rt
    rt.close()


def _customer(street: str = "1 Main St") -> Customer:
    return Customer(
        name="Acme Inc.",
        address=Address(line1=street, city="Austin", postal_code="73301", country="US"),
    )


def test_fingerprint_depends_on_content_and_context_only() -> None:
    assert fingerprint(_customer(), legal_entity="US") == fingerprint(
        _customer(), legal_entity="US"
    )
    assert fingerprint(_customer(), legal_entity="US") != fingerprint(
        _customer("2 Main St"), legal_entity="US"
    )
    assert fingerprint(_customer(), legal_entity="US") != fingerprint(
        _customer(), legal_entity="DE"
    )


def test_unchanged_only_for_the_same_print_and_a_current_link(runtime: Runtime) -> None:
    xref = XrefStore(runtime.engine, runtime.clock)
    sync = SyncState(runtime.engine, runtime.clock, xref)
    gid = xref.ensure_global_id(Kind.CUSTOMER, "crm", "001A", actor="test")
    before = fingerprint(_customer(), legal_entity="US")
    assert sync.unchanged(gid, "erp", before) is None
    xref.link(gid, "erp", "17", actor="test")
    sync.record(gid, "erp", before, "17")
    assert sync.unchanged(gid, "erp", before) == "17"
    assert sync.unchanged(gid, "billing", before) is None
    assert sync.unchanged(gid, "erp", fingerprint(_customer("2 Main St"))) is None
    # a recorded id the cross-reference no longer holds as the customer's: write again
    sync.record(gid, "erp", before, "99")
    assert sync.unchanged(gid, "erp", before) is None
