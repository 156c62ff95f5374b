"""Matching on the harder labelled set: the acceptance figures, printed, on the committed file and
on fresh samples of its recipe (so the weights are not fitted to one file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quote2cash.masterdata.account_export import match_accounts
from quote2cash.masterdata.matching import Matcher, load_matching
from unit.masterdata.accounts_data import CONFIG
from unit.masterdata.hard_accounts import HARD, generator, load, score


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return load_matching(CONFIG / "matching.yaml")


def _check(folder: Path, matcher: Matcher, label: str, min_recall: float) -> None:
    accounts, labels = load(folder, matcher)
    run = match_accounts(matcher, accounts)
    scores = score(run, labels)
    print("\n" + scores.line(f"{label}: {len(accounts.ids)} records"))
    assert scores.precision >= 0.995, sorted(map(sorted, scores.false_pairs))
    assert scores.recall >= min_recall
    assert scores.review_precision >= 0.70
    cases = {labels[rid][1] for pair in scores.missed_pairs for rid in pair}
    assert cases <= {"typo_alone", "rebrand_no_tax"}, "only cases meant for a steward are missed"


def test_harder_set_meets_the_acceptance_figures(matcher: Matcher) -> None:
    _, labels = load(HARD, matcher)
    cases = {case for _, case in labels.values()}
    assert {
        "no_country",
        "rebrand_tax",
        "rebrand_no_tax",
        "same_name_abroad",
        "typo_alone",
        "umlaut",
        "legal_form",
        "lookalike",
    } <= cases
    _check(HARD, matcher, "harder set", 0.97)


@pytest.mark.parametrize("seed", [101, 202])
def test_fresh_samples_of_the_harder_recipe_meet_them_too(
    matcher: Matcher, seed: int, tmp_path: Path
) -> None:
    """Recall varies with how many steward-only cases a sample draws (0.968-0.975 seen); every
    pair missed must still be one of them."""
    module = generator()
    module.write(tmp_path, module.labelled(seed))
    _check(tmp_path, matcher, f"harder recipe, seed {seed}", 0.96)


def test_the_committed_file_is_what_the_generator_writes(tmp_path: Path) -> None:
    module = generator()
    module.write(tmp_path, module.labelled(15))
    for name in ("accounts.csv", "truth.csv"):
        assert (tmp_path / name).read_bytes() == (HARD / name).read_bytes(), name
