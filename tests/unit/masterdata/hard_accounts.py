"""The harder labelled set (tests/data/accounts_hard): reading it and scoring a run against it."""

from __future__ import annotations

import csv
import importlib.util
import sys
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from types import ModuleType

from quote2cash.masterdata.account_export import Accounts, read_accounts
from quote2cash.masterdata.matching import Matcher, MatchRun

HARD = Path(__file__).resolve().parents[2] / "data" / "accounts_hard"

Pair = frozenset[str]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("accounts_hard_generate", HARD / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def truth(folder: Path) -> dict[str, tuple[str, str]]:
    """record_id -> (entity, case)."""
    with (folder / "truth.csv").open(encoding="utf-8") as f:
        return {r["record_id"]: (r["entity"], r["case"]) for r in csv.DictReader(f)}


def load(folder: Path, matcher: Matcher) -> tuple[Accounts, dict[str, tuple[str, str]]]:
    accounts = read_accounts(folder / "accounts.csv", matcher)
    assert accounts.problems == []
    return accounts, truth(folder)


def _pairs(groups: list[list[str]]) -> set[Pair]:
    return {frozenset(p) for g in groups for p in combinations(g, 2)}


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    review_precision: float
    false_pairs: set[Pair]
    missed_pairs: set[Pair]
    review_pairs: int

    def line(self, label: str) -> str:
        return (
            f"[{label}] auto-match precision {self.precision:.4f}, recall {self.recall:.4f} "
            f"({len(self.false_pairs)} false / {len(self.missed_pairs)} missed pairs); "
            f"{self.review_pairs} review pairs, {self.review_precision:.1%} of them true matches"
        )


def score(run: MatchRun, labels: dict[str, tuple[str, str]]) -> Scores:
    """Pairwise precision/recall of auto clusters; share of review pairs that are one company."""
    by_entity: dict[str, list[str]] = {}
    for rid, (entity, _case) in labels.items():
        by_entity.setdefault(entity, []).append(rid)
    true = _pairs(list(by_entity.values()))
    predicted = _pairs([[key[1] for key in cluster] for cluster in run.clusters])
    reviews = {frozenset((e.left[1], e.right[1])) for e in run.reviews} - predicted
    right = predicted & true
    return Scores(
        precision=len(right) / len(predicted) if predicted else 1.0,
        recall=len(right) / len(true) if true else 1.0,
        review_precision=len(reviews & true) / len(reviews) if reviews else 1.0,
        false_pairs=predicted - true,
        missed_pairs=true - predicted,
        review_pairs=len(reviews),
    )
