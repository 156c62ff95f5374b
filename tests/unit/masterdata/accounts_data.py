"""Reading the labelled account data set (tests/data/accounts) as matching candidates."""

from __future__ import annotations

import csv
import importlib.util
import sys
from collections.abc import Iterable
from datetime import datetime
from itertools import combinations
from pathlib import Path
from types import ModuleType

from quote2cash.canonical import Address, Customer
from quote2cash.defaults import packaged_config_dir
from quote2cash.masterdata.matching import CustomerCandidate, MatchRun

DATA = Path(__file__).resolve().parents[2] / "data" / "accounts"
CONFIG = packaged_config_dir()


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("accounts_generate", DATA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def candidate(row: dict[str, str]) -> CustomerCandidate:
    customer = Customer(
        external_ids={row["system"]: row["local_id"]},
        name=row["name"],
        email=row["email"] or None,
        address=Address(
            line1=row["street"],
            city=row["city"],
            postal_code=row["postal_code"] or None,
            country=row["country"],
        ),
        tax_ids=((row["tax_id_type"], row["tax_id"]),) if row["tax_id"] else (),
        currency=row["currency"] or None,
    )
    return CustomerCandidate(
        system=row["system"],
        local_id=row["local_id"],
        customer=customer,
        updated_at=datetime.fromisoformat(row["updated_at"]),
        website=row["website"] or None,
    )


def read(folder: Path = DATA) -> tuple[list[CustomerCandidate], dict[tuple[str, str], str]]:
    with (folder / "accounts.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with (folder / "truth.csv").open(encoding="utf-8") as f:
        truth = {r["record_id"]: r["entity"] for r in csv.DictReader(f)}
    candidates = [candidate(r) for r in rows]
    labels = {c.key: truth[f"{c.system}:{c.local_id}"] for c in candidates}
    return candidates, labels


def same_pairs(groups: Iterable[Iterable[tuple[str, str]]]) -> set[frozenset[tuple[str, str]]]:
    return {frozenset(p) for g in groups for p in combinations(sorted(g), 2)}


def precision_recall(
    run: MatchRun, labels: dict[tuple[str, str], str]
) -> tuple[float, float, set[frozenset[tuple[str, str]]], set[frozenset[tuple[str, str]]]]:
    """Pairwise precision and recall of auto-matched clusters against the truth."""
    by_entity: dict[str, list[tuple[str, str]]] = {}
    for key, entity in labels.items():
        by_entity.setdefault(entity, []).append(key)
    truth = same_pairs(by_entity.values())
    predicted = same_pairs(run.clusters)
    right = predicted & truth
    precision = len(right) / len(predicted) if predicted else 1.0
    recall = len(right) / len(truth) if truth else 1.0
    return precision, recall, predicted - truth, truth - predicted
