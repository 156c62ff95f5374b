# ruff: noqa: RUF001  (Cyrillic and Greek names are the point of these tests)
"""Customer matching: normalisation, pair decisions, and precision/recall on the labelled set."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

from quote2cash.canonical import Address, Customer
from quote2cash.masterdata.config import ConfigError
from quote2cash.masterdata.matching import (
    CustomerCandidate,
    Matcher,
    Outcome,
    load_matching,
    match_all,
    parse_matching,
)
from unit.masterdata.accounts_data import CONFIG, DATA, generator, precision_recall, read


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return load_matching(CONFIG / "matching.yaml")


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("Müller GmbH", "Mueller GmbH"),
        ("Müller GmbH", "MÜLLER G.m.b.H."),
        ("ACME, Inc.", "Acme Incorporated"),
        ("Acme Ltd", "ACME LIMITED"),
        ("Apex Health GmbH & Co. KG", "Apex Health GmbH u. Co. KG"),
        ("O'Neill & Sons Ltd", "ONEILL AND SONS LIMITED"),
        ("ООО «Техносила»", "Tekhnosila LLC"),
        ("Παπαδόπουλος Α.Ε.", "Papadopoulos SA"),
        ("Société Générale de Logiciels SA", "SOCIETE GENERALE DE LOGICIELS S.A."),
        ("Straßenbau Weiß AG", "STRASSENBAU WEISS AG"),
        ("Summit Media AG", "Summit Media Aktiengesellschaft"),
        ("Cedar Engineering Ltd", "Cedar Engineering Limitted"),
    ],
)
def test_variants_of_one_legal_name_normalise_alike(
    matcher: Matcher, left: str, right: str
) -> None:
    assert matcher.normalise_name(left) == matcher.normalise_name(right)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("Siebert Holding AG", "Siebert AG"),
        ("Blue River Systems Inc.", "Blue River Solutions Inc."),
        ("Helios Software AG", "Helios Software Services AG"),
    ],
)
def test_different_names_stay_different(matcher: Matcher, left: str, right: str) -> None:
    assert matcher.normalise_name(left) != matcher.normalise_name(right)


NOW = datetime(2026, 11, 1, tzinfo=UTC)


def cand(
    local_id: str,
    name: str,
    country: str = "DE",
    postal: str | None = "10115",
    *,
    tax: str | None = None,
    website: str | None = None,
    email: str | None = None,
    street: str = "Hauptstrasse 1",
) -> CustomerCandidate:
    customer = Customer(
        name=name,
        email=email,
        address=Address(line1=street, city="Berlin", postal_code=postal, country=country),
        tax_ids=(("eu_vat", tax),) if tax else (),
    )
    return CustomerCandidate("crm", local_id, customer, NOW, website)


PAIRS = [
    # (why, left, right, expected outcome)
    (
        "same tax id, renamed",
        cand("1", "Globex GmbH", tax="DE1"),
        cand("2", "GXH AG", tax="DE 1"),
        Outcome.AUTO_MATCH,
    ),
    (
        "same name, other country",
        cand("1", "Nordwind GmbH"),
        cand("2", "Nordwind AG", "CH", "8001"),
        Outcome.NEW,
    ),
    (
        "same tax id, other country",
        cand("1", "Nordwind GmbH", tax="X1"),
        cand("2", "Nordwind AG", "CH", "8001", tax="X1"),
        Outcome.REVIEW,
    ),
    (
        "identical names, nothing contradicts",
        cand("1", "Acme GmbH"),
        cand("2", "ACME G.m.b.H.", postal=None),
        Outcome.AUTO_MATCH,
    ),
    (
        "identical names, postal codes differ",
        cand("1", "Schmidt GmbH"),
        cand("2", "Schmidt GmbH", postal="80331"),
        Outcome.REVIEW,
    ),
    (
        "identical names, tax ids differ",
        cand("1", "Schmidt GmbH", tax="DE1"),
        cand("2", "Schmidt GmbH", tax="DE2"),
        Outcome.REVIEW,
    ),
    (
        "typo, same postal code",
        cand("1", "Brightwave Analytics GmbH"),
        cand("2", "Brigthwave Analytics GmbH"),
        Outcome.AUTO_MATCH,
    ),
    (
        "typo, no corroboration",
        cand("1", "Brightwave Analytics GmbH", postal=None, street="Rosenweg 5"),
        cand("2", "Brigthwave Analytics GmbH"),
        Outcome.REVIEW,
    ),
    (
        "parent and child share domain and address",
        cand("1", "Siebert Holding AG", website="siebert.de"),
        cand("2", "Siebert AG", website="https://www.siebert.de/"),
        Outcome.REVIEW,
    ),
    (
        "different companies",
        cand("1", "Atlas Logistics GmbH"),
        cand("2", "Nimbus Foods GmbH"),
        Outcome.NEW,
    ),
    (
        "free-mail domains are not evidence",
        cand("1", "Kappa Data GmbH", postal=None, email="a@gmail.com", street="Rosenweg 5"),
        cand("2", "Kapa Data GmbH", postal=None, email="b@gmail.com"),
        Outcome.REVIEW,
    ),
    (
        "company e-mail domain corroborates",
        cand("1", "Kappa Data GmbH", postal=None, email="a@kappa.de"),
        cand("2", "Kapa Data GmbH", postal=None, email="b@kappa.de"),
        Outcome.AUTO_MATCH,
    ),
]


@pytest.mark.parametrize(("why", "left", "right", "expected"), PAIRS, ids=[p[0] for p in PAIRS])
def test_pair_outcomes(
    matcher: Matcher, why: str, left: CustomerCandidate, right: CustomerCandidate, expected: Outcome
) -> None:
    evidence = matcher.compare(left, right)
    assert evidence.outcome is expected, evidence.as_dict()
    assert matcher.compare(right, left).outcome is expected
    assert set(evidence.as_dict()) >= {
        "name_similarity",
        "tax_id",
        "domain",
        "country",
        "postal_code",
    }


def test_chains_of_auto_matches_never_join_conflicting_records(matcher: Matcher) -> None:
    a = cand("a", "Acme GmbH", tax="DE1")
    bridge = cand("b", "ACME G.m.b.H.", postal=None)
    c = cand("c", "Acme GmbH", tax="DE2")
    assert matcher.compare(a, bridge).outcome is Outcome.AUTO_MATCH
    assert matcher.compare(bridge, c).outcome is Outcome.AUTO_MATCH
    assert matcher.compare(a, c).outcome is Outcome.REVIEW
    run = match_all(matcher, [a, bridge, c])
    for cluster in run.clusters:
        assert not {("crm", "a"), ("crm", "c")} <= set(cluster)
    assert any("joining would merge: tax ids differ" in e.reason for e in run.reviews)


def _measure(folder: Path, matcher: Matcher, label: str) -> tuple[float, float]:
    candidates, labels = read(folder)
    run = match_all(matcher, candidates)
    precision, recall, false_pos, false_neg = precision_recall(run, labels)
    print(
        f"\n[{label}] {len(candidates)} records, {len(set(labels.values()))} entities: "
        f"auto-match precision {precision:.4f}, recall {recall:.4f} "
        f"({len(false_pos)} false / {len(false_neg)} missed pairs; "
        f"{len(run.reviews)} pairs to review)"
    )
    return precision, recall


def test_labelled_data_set_precision_and_recall(matcher: Matcher) -> None:
    candidates, _labels = read()
    assert len(candidates) >= 300
    precision, recall = _measure(
        Path(__file__).parents[2] / "data" / "accounts", matcher, "committed set"
    )
    assert precision >= 0.99
    assert recall >= 0.95


def test_hard_cases_never_merge_different_companies(matcher: Matcher) -> None:
    candidates, labels = read()
    run = match_all(matcher, candidates)
    for cluster in run.clusters:
        assert len({labels[key] for key in cluster}) == 1, [labels[k] for k in cluster]
    cluster_of = run.cluster_of()
    with (DATA / "truth.csv").open(encoding="utf-8") as f:
        case_of = {row["record_id"]: row["case"] for row in csv.DictReader(f)}
    hard: dict[str, set[int]] = {}
    for key, entity in labels.items():
        if case_of[f"{key[0]}:{key[1]}"] != "random":
            hard.setdefault(entity, set()).add(cluster_of[key])
    assert len(hard) >= 30
    split = {entity: clusters for entity, clusters in hard.items() if len(clusters) > 1}
    assert split == {}, f"hand-written hard cases split over several customers: {split}"


@pytest.mark.parametrize("seed", [1, 2])
def test_a_fresh_sample_of_the_same_recipe_scores_alike(
    matcher: Matcher, seed: int, tmp_path: Path
) -> None:
    """Not tuned on the committed file: other samples of the generator must hold the bar too."""
    generator().write(tmp_path, seed)
    precision, recall = _measure(tmp_path, matcher, f"seed {seed}")
    assert precision >= 0.99
    assert recall >= 0.95


GOOD = (CONFIG / "matching.yaml").read_text()


@pytest.mark.parametrize(
    ("text", "line", "key", "problem"),
    [
        (
            GOOD.replace("auto_match: 90", "auto_match: 70"),
            None,
            "name.review",
            "review (80) <= auto_match (70)",
        ),
        (
            GOOD.replace("review: 80", "review: 180"),
            None,
            "name.review",
            "less than or equal to 100",
        ),
        (
            GOOD.replace("max_block_size: 50", "max_block_size: many"),
            None,
            "blocking.max_block_size",
            "integer",
        ),
        (
            GOOD.replace("  auto_match: 90\n", ""),
            None,
            "name.auto_match",
            "required key is missing",
        ),
        (GOOD.replace("tax_id:\n", "tax_idd:\n"), None, "tax_idd", "unknown key"),
        ("name: [unclosed", 1, None, "not valid YAML"),
    ],
)
def test_bad_matching_config_names_file_key_line_and_problem(
    text: str, line: int | None, key: str | None, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_matching(text, "config/matching.yaml")
    message = str(caught.value)
    assert message.startswith("config/matching.yaml: line ")
    if key is not None:
        assert caught.value.key_path == key
        assert key in message
    assert problem in message
    assert caught.value.line is not None
    if key == "name.auto_match":
        assert caught.value.line == _line_of(text, "name")
    elif key is not None:
        assert caught.value.line == _line_of(text, key.split(".")[-1])


def _line_of(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().startswith(f"{key}:"):
            return number
    raise AssertionError(f"{key} not in text")
