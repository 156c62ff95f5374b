"""Cross-reference store on SQLite and PostgreSQL: ensure-or-get, lookups, merge, re-parent."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from quote2cash.engine.audit import verify_audit
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.errors import ConflictError, DataError
from quote2cash.engine.runtime import Runtime
from quote2cash.masterdata.xref import Kind, XrefStore
from quote2cash.store.schema import audit_log, md_xrefs


@pytest.fixture
def store(runtime: Runtime, clock: ManualClock) -> XrefStore:
    return XrefStore(runtime.engine, clock)


def audit_rows(runtime: Runtime) -> list[dict[str, object]]:
    with runtime.engine.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.seq)).all()
    return [
        {"action": r.action, "entity": r.entity, "actor": r.actor, **json.loads(r.details)}
        for r in rows
    ]


def test_ensure_is_get_or_create_and_lookups_go_both_ways(store: XrefStore) -> None:
    gid = store.ensure_global_id(Kind.CUSTOMER, "crm", "001A")
    assert gid.startswith("CUS-") and len(gid) <= 64
    assert store.ensure_global_id("customer", "crm", "001A") == gid
    assert store.link(gid, "erp", "C42") is True
    assert store.link(gid, "erp", "C42") is False
    assert store.global_id_for(Kind.CUSTOMER, "erp", "C42") == gid
    assert store.global_id_for(Kind.CUSTOMER, "erp", "nope") is None
    assert store.system_ids(gid) == {"crm": ("001A",), "erp": ("C42",)}
    assert store.local_id(gid, "erp") == "C42"
    # the same local id of another kind is another object
    assert store.ensure_global_id(Kind.INVOICE, "crm", "001A") != gid


def test_linking_an_id_owned_by_another_global_id_is_a_conflict(store: XrefStore) -> None:
    first = store.ensure_global_id(Kind.CUSTOMER, "crm", "A")
    second = store.ensure_global_id(Kind.CUSTOMER, "crm", "B")
    with pytest.raises(ConflictError, match="already linked"):
        store.link(second, "crm", "A")
    assert store.global_id_for(Kind.CUSTOMER, "crm", "A") == first


def test_bad_keys_are_refused_with_the_reason(store: XrefStore) -> None:
    with pytest.raises(DataError, match="unknown kind 'thing'"):
        store.ensure_global_id("thing", "crm", "1")
    with pytest.raises(DataError, match="lowercase name"):
        store.ensure_global_id(Kind.ORDER, "CRM", "1")
    with pytest.raises(DataError, match="unknown global id"):
        store.resolve("CUS-missing")


def test_concurrent_ensure_creates_exactly_one(runtime: Runtime, clock: ManualClock) -> None:
    stores = [XrefStore(runtime.engine, clock) for _ in range(6)]
    keys = [f"acct-{n}" for n in range(10)]

    def work(store: XrefStore) -> list[str]:
        return [store.ensure_global_id(Kind.CUSTOMER, "crm", key) for key in keys]

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(work, stores))
    assert all(result == results[0] for result in results)
    assert len(set(results[0])) == len(keys)
    with runtime.engine.connect() as conn:
        rows = conn.execute(select(md_xrefs.c.local_id)).scalars().all()
    assert sorted(rows) == sorted(keys)


def test_merge_keeps_every_reference_reachable_and_is_audited(
    runtime: Runtime, store: XrefStore, clock: ManualClock
) -> None:
    survivor = store.ensure_global_id(Kind.CUSTOMER, "crm", "001-S")
    store.link(survivor, "erp", "C1")
    merged = store.ensure_global_id(Kind.CUSTOMER, "crm", "001-M")
    store.link(merged, "billing", "cus_M")
    store.link(merged, "erp", "C2")
    child = store.ensure_global_id(Kind.CUSTOMER, "crm", "001-CHILD")
    store.reparent(child, merged, actor="steward", reason="subsidiary")
    clock.advance(60)

    result = store.merge(survivor, merged, actor="steward", reason="duplicate account")

    assert set(result.moved) == {("crm", "001-M"), ("billing", "cus_M"), ("erp", "C2")}
    assert store.resolve(merged) == survivor
    assert store.system_ids(merged) == store.system_ids(survivor)
    assert store.system_ids(survivor) == {
        "crm": ("001-S", "001-M"),
        "erp": ("C1", "C2"),
        "billing": ("cus_M",),
    }
    for system, local in [("crm", "001-M"), ("billing", "cus_M"), ("erp", "C2"), ("crm", "001-S")]:
        assert store.global_id_for(Kind.CUSTOMER, system, local) == survivor
    assert store.parent_of(child) == survivor
    assert store.children_of(survivor) == [child]
    # history keeps the old links, closed at the merge
    history = store.history_of(Kind.CUSTOMER, "billing", "cus_M")
    assert [(h.global_id, h.current) for h in history] == [(merged, False), (survivor, True)]
    assert history[0].valid_to == history[1].valid_from == clock.now()
    assert merged in store.merged_ids(survivor)
    # merging again is a no-op, and nothing can be linked to the merged id separately
    assert store.merge(survivor, merged, actor="steward", reason="again").already_merged
    store.link(merged, "erp", "C3")
    assert store.local_id(survivor, "erp") == "C1"
    assert "C3" in store.system_ids(survivor)["erp"]

    assert verify_audit(runtime.engine).ok
    entries = audit_rows(runtime)
    merges = [e for e in entries if e["action"] == "masterdata.xref.merged"]
    assert len(merges) == 1
    assert merges[0]["survivor"] == survivor and merges[0]["merged"] == merged
    assert merges[0]["actor"] == "steward" and merges[0]["reason"] == "duplicate account"
    assert sorted(map(tuple, merges[0]["moved"])) == sorted(result.moved)
    reparents = [e for e in entries if e["action"] == "masterdata.customer.reparented"]
    assert [(e["old_parent"], e["new_parent"]) for e in reparents] == [
        (None, merged),
        (merged, survivor),
    ]


def test_chained_merges_resolve_to_the_last_survivor(store: XrefStore, runtime: Runtime) -> None:
    a = store.ensure_global_id(Kind.CUSTOMER, "crm", "a")
    b = store.ensure_global_id(Kind.CUSTOMER, "crm", "b")
    c = store.ensure_global_id(Kind.CUSTOMER, "crm", "c")
    store.merge(b, a, actor="s", reason="dup")
    store.merge(c, b, actor="s", reason="dup")
    assert store.resolve(a) == store.resolve(b) == c
    assert set(store.system_ids(a)["crm"]) == {"a", "b", "c"}
    assert sorted(store.merged_ids(c)) == sorted([a, b])
    assert {h.local_id for h in store.history(a)} == {"a", "b", "c"}
    with pytest.raises(ConflictError, match="cannot merge"):
        store.merge(
            c, store.ensure_global_id(Kind.INVOICE, "billing", "in_1"), actor="s", reason="x"
        )
    assert verify_audit(runtime.engine).ok


def test_reparent_refuses_cycles_and_audits_each_change(
    runtime: Runtime, store: XrefStore, clock: ManualClock
) -> None:
    group = store.ensure_global_id(Kind.CUSTOMER, "crm", "group")
    region = store.ensure_global_id(Kind.CUSTOMER, "crm", "region")
    shop = store.ensure_global_id(Kind.CUSTOMER, "crm", "shop")
    assert store.reparent(region, group, actor="ops", reason="org chart")
    assert store.reparent(shop, region, actor="ops", reason="org chart")
    assert not store.reparent(shop, region, actor="ops", reason="same again")
    with pytest.raises(ConflictError, match="descendants"):
        store.reparent(group, shop, actor="ops", reason="loop")
    with pytest.raises(ConflictError, match="same account"):
        store.reparent(group, group, actor="ops", reason="self")
    invoice = store.ensure_global_id(Kind.INVOICE, "billing", "in_1")
    with pytest.raises(DataError, match="only customers"):
        store.reparent(invoice, group, actor="ops", reason="x")
    clock.advance(10)
    assert store.reparent(shop, group, actor="ops", reason="restructure")
    assert store.reparent(region, None, actor="ops", reason="spun off")
    assert store.parent_of(shop) == group and store.parent_of(region) is None
    assert store.children_of(group) == [shop]
    links = store.hierarchy_history(shop)
    assert [(link.parent, link.valid_to is None) for link in links] == [
        (region, False),
        (group, True),
    ]
    assert verify_audit(runtime.engine).ok
    changes = [
        (e["child"], e["old_parent"], e["new_parent"])
        for e in audit_rows(runtime)
        if e["action"] == "masterdata.customer.reparented"
    ]
    assert changes == [
        (region, None, group),
        (shop, None, region),
        (shop, region, group),
        (region, group, None),
    ]


def test_opposite_merges_at_once_leave_one_survivor_and_no_cycle(
    runtime: Runtime, clock: ManualClock
) -> None:
    setup = XrefStore(runtime.engine, clock)
    pairs = []
    for n in range(4):
        a = setup.ensure_global_id(Kind.CUSTOMER, "crm", f"a{n}")
        b = setup.ensure_global_id(Kind.CUSTOMER, "erp", f"b{n}")
        pairs.append((a, b))

    def merge(args: tuple[str, str]) -> None:
        XrefStore(runtime.engine, clock).merge(args[0], args[1], actor="t", reason="race")

    jobs = [p for a, b in pairs for p in ((a, b), (b, a))]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(merge, jobs))
    for n, (a, b) in enumerate(pairs):
        survivor = setup.resolve(a)
        assert setup.resolve(b) == survivor
        assert setup.system_ids(survivor) == {"crm": (f"a{n}",), "erp": (f"b{n}",)}
    assert verify_audit(runtime.engine).ok
    merges = [e for e in audit_rows(runtime) if e["action"] == "masterdata.xref.merged"]
    assert len(merges) == len(pairs)
