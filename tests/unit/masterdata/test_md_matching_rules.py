"""Each matching rule on its own: country inference, disagreements counting against, blocking,
and clusters that do not depend on the input order."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from quote2cash.masterdata.blocking import block_keys, candidate_pairs
from quote2cash.masterdata.country_hints import infer_countries, legal_form_of
from quote2cash.masterdata.matching import (
    Agreement,
    Matcher,
    MatchKeys,
    Outcome,
    load_matching,
    match_keys,
)
from unit.masterdata.accounts_data import CONFIG
from unit.masterdata.hard_accounts import HARD, generator, load


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return load_matching(CONFIG / "matching.yaml")


def keys(matcher: Matcher, name: str, **fields: str | None) -> MatchKeys:
    tax = fields.pop("tax", None)
    values: dict[str, str | None] = {
        "country": None,
        "postal_code": None,
        "street": None,
        "domain": None,
        "city": None,
    }
    values.update(fields)
    return matcher.keys_of(name=name, tax_ids=[tax] if tax else [], **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "tax", "domain", "expected"),
    [
        ("Nordwind GmbH & Co. KG", None, None, {"DE", "AT"}),
        ("Nordwind LLC", None, None, {"US"}),
        ("Nordwind Aktiengesellschaft", None, None, {"DE", "AT", "CH"}),
        ("Nordwind AG", None, "nordwind.ch", {"CH"}),
        ("Nordwind LLC", None, "nordwind.de", {"US"}),
        ("Nordwind", "ATU12345678", None, {"AT"}),
        ("Nordwind Ltd", "EL123456789", None, {"GR"}),
        ("Nordwind", None, "nordwind.co.uk", {"GB"}),
        ("Nordwind", None, "nordwind.com", set()),
        ("Nordwind", "123456789", None, set()),
    ],
)
def test_country_is_inferred_from_tax_prefix_legal_form_and_tld(
    name: str, tax: str | None, domain: str | None, expected: set[str]
) -> None:
    assert infer_countries(name.lower(), frozenset({tax} if tax else ()), domain) == expected


def test_legal_form_variants_compare_as_one_form() -> None:
    assert legal_form_of("acme aktiengesellschaft") == legal_form_of("acme ag") == "ag"
    assert legal_form_of("acme limited") == legal_form_of("acme ltd.") == "ltd"
    assert legal_form_of("acme gmbh u. co. kg") == legal_form_of("acme gmbh & co kg")
    assert legal_form_of("acme") is None


def test_a_record_without_country_no_longer_agrees_with_every_country(matcher: Matcher) -> None:
    german = keys(matcher, "Nordwind GmbH & Co. KG", country="DE", postal_code="20095")
    american = keys(matcher, "Nordwind LLC")
    unknown = keys(matcher, "Nordwind")
    assert matcher.compare_keys(("a", "1"), ("b", "2"), german, american).outcome is Outcome.NEW
    assert matcher.compare_keys(("a", "1"), ("b", "3"), german, unknown).outcome is (
        Outcome.AUTO_MATCH
    )


@pytest.mark.parametrize(
    ("field", "same", "other"),
    [
        ("tax", "DE111111111", "DE222222222"),
        ("postal_code", "20095", "80331"),
        ("domain", "nordwind.de", "nordwind-gruppe.de"),
        ("city", "Hamburg", "Bremen"),
    ],
)
def test_each_disagreement_counts_against_and_each_agreement_for(
    matcher: Matcher, field: str, same: str, other: str
) -> None:
    base = {"country": "DE"}
    left = keys(matcher, "Nordwind Handel GmbH", **base, **{field: same})
    agree = keys(matcher, "Nordwind Handel GmbH", **base, **{field: same})
    unknown = keys(matcher, "Nordwind Handel GmbH", **base)
    differ = keys(matcher, "Nordwind Handel GmbH", **base, **{field: other})
    scores = [
        matcher.compare_keys(("a", "1"), ("b", "2"), left, right).score
        for right in (agree, unknown, differ)
    ]
    assert scores[0] > scores[1] > scores[2], scores


def test_a_different_tax_id_pushes_an_identical_name_out_of_auto_match(matcher: Matcher) -> None:
    left = keys(matcher, "Nordwind GmbH", country="DE", tax="DE111111111")
    right = keys(matcher, "Nordwind GmbH", country="DE", tax="DE222222222")
    evidence = matcher.compare_keys(("a", "1"), ("b", "2"), left, right)
    assert evidence.tax_id is Agreement.DIFFERENT
    assert evidence.outcome is not Outcome.AUTO_MATCH
    assert "tax id different" in evidence.reason


def test_a_renamed_company_with_shared_domain_and_address_goes_to_a_steward(
    matcher: Matcher,
) -> None:
    where = {"country": "DE", "postal_code": "20095", "street": "Hafenweg 4", "domain": "nw.de"}
    old = keys(matcher, "Nordwind Handel GmbH", **where)
    new = keys(matcher, "Baltic Trade Partners GmbH", **where)
    evidence = matcher.compare_keys(("a", "1"), ("b", "2"), old, new)
    assert evidence.outcome is Outcome.REVIEW, evidence.reason


def test_every_true_pair_of_the_harder_set_shares_a_block(matcher: Matcher) -> None:
    accounts, labels = load(HARD, matcher)
    pairs = set(candidate_pairs(matcher.config.blocking, accounts.keys))
    index = {key[1]: i for i, key in enumerate(accounts.ids)}
    entity_of = {rid: entity for rid, (entity, _) in labels.items()}
    for a in index:
        for b in index:
            if a < b and entity_of[a] == entity_of[b]:
                i, j = sorted((index[a], index[b]))
                assert (i, j) in pairs, (a, b)


def test_pairs_per_record_do_not_grow_with_the_data(matcher: Matcher, tmp_path: Path) -> None:
    """Comparing all records of a country grows with n squared; blocking must stay near n once
    common keys outgrow the block limit (a small limit here, so small samples show it)."""
    module = generator()
    rules = matcher.config.blocking.model_copy(update={"max_block_size": 8})
    per_record = []
    for size in (2_000, 8_000):
        module.write(tmp_path / str(size), module.synthetic(size, 3))
        accounts, _ = load(tmp_path / str(size), matcher)
        pairs = sum(1 for _ in candidate_pairs(rules, accounts.keys))
        per_record.append(pairs / size)
    print(f"\ncandidate pairs per record: {per_record[0]:.2f} (2,000), {per_record[1]:.2f} (8,000)")
    assert per_record[1] < 1.5 * per_record[0]


def test_blocks_larger_than_the_limit_are_not_compared(matcher: Matcher) -> None:
    rules = matcher.config.blocking.model_copy(update={"max_block_size": 3})
    crowd = [keys(matcher, f"Zq{i}x{i} Systems GmbH", country="DE") for i in range(5)]
    assert all("n:systems" in block_keys(k, rules) for k in crowd)
    assert list(candidate_pairs(rules, crowd)) == []


def test_shuffled_input_gives_the_same_clusters(matcher: Matcher) -> None:
    accounts, _ = load(HARD, matcher)
    first = match_keys(matcher, accounts.ids, accounts.keys)
    expected = sorted(sorted(c) for c in first.clusters)
    for seed in (1, 2, 3):
        order = list(range(len(accounts.ids)))
        random.Random(seed).shuffle(order)
        run = match_keys(
            matcher, [accounts.ids[i] for i in order], [accounts.keys[i] for i in order]
        )
        assert sorted(sorted(c) for c in run.clusters) == expected, seed
        assert len(run.reviews) == len(first.reviews)


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("Ledger 1 Corp", "Ledger 2 Corp", Outcome.NEW),  # one "typo", but a numbered entity
        ("Lakeshore 1 Inc.", "Lakeshore 3 Inc.", Outcome.NEW),
        ("Harbour Fund 12 LP", "Harbour Fund 21 LP", Outcome.NEW),
        ("7-Eleven Inc", "7 Eleven Inc", Outcome.AUTO_MATCH),  # the same number
        ("Studio 54 LLC", "Studio 054 LLC", Outcome.AUTO_MATCH),
    ],
)
def test_names_with_different_numbers_are_different_entities(
    matcher: Matcher, left: str, right: str, expected: Outcome
) -> None:
    place = {"country": "US", "postal_code": "53703", "street": "100 State St", "city": "Madison"}
    a, b = keys(matcher, left, **place), keys(matcher, right, **place)
    evidence = matcher.compare_keys(("crm", "a"), ("crm", "b"), a, b)
    assert evidence.outcome is expected, evidence.reason
    if expected is Outcome.NEW:
        assert "name different (numbers)" in evidence.reason
