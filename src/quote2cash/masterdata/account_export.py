"""An account export for batch matching: read and checked row by row, results written 0600.

A bad row never stops the run: it is reported with its record id, field and what was expected,
copied to ``rejected.csv`` and left out of matching; every good row gets an outcome.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from quote2cash.masterdata.matching import Matcher, MatchKeys, MatchRun, match_keys
from quote2cash.private_files import open_private

COLUMNS = (
    "record_id",
    "source",
    "name",
    "website",
    "tax_id",
    "country",
    "postal_code",
    "city",
    "street",
)
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
_HOST = re.compile(
    r"^(?:[a-z][a-z0-9+.-]*://)?(?:www\.)?([a-z0-9-]+(?:\.[a-z0-9-]+)+)(?::\d+)?(?:/.*)?$"
)
_POSTAL = re.compile(r"^[A-Za-z0-9 -]{1,12}$")
_TAX = re.compile(r"^[A-Za-z0-9 .\-/]{2,30}$")
_MAX_TEXT = 300


class ExportError(ValueError):
    """The file as a whole cannot be read (missing columns, not UTF-8 CSV)."""


@dataclass(frozen=True)
class RowProblem:
    line: int
    record_id: str
    field: str
    expected: str

    def __str__(self) -> str:
        who = f"record {self.record_id!r}" if self.record_id else "a record without id"
        return f"line {self.line}: {who}: {self.field}: expected {self.expected}"


@dataclass
class Accounts:
    ids: list[tuple[str, str]]
    keys: list[MatchKeys]
    problems: list[RowProblem]
    rejected: list[dict[str, str]]


def read_accounts(path: Path, matcher: Matcher) -> Accounts:
    """Every row checked; good rows as match keys (id: source, record_id), bad ones reported."""
    accounts = Accounts([], [], [], [])
    seen: set[str] = set()
    try:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("record_id", "name") if c not in (reader.fieldnames or [])]
            if missing:
                raise ExportError(
                    f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}"
                )
            for row in reader:
                clean = {c: (row.get(c) or "").strip() for c in COLUMNS}
                problem = _check(reader.line_num, clean, row, seen)
                if problem is not None:
                    accounts.problems.append(problem)
                    accounts.rejected.append({**clean, "problem": str(problem)})
                    continue
                seen.add(clean["record_id"])
                accounts.ids.append((clean["source"], clean["record_id"]))
                accounts.keys.append(
                    matcher.keys_of(
                        name=clean["name"],
                        country=clean["country"] or None,
                        postal_code=clean["postal_code"] or None,
                        street=clean["street"] or None,
                        city=clean["city"] or None,
                        domain=_domain(clean["website"]),
                        tax_ids=[clean["tax_id"]] if clean["tax_id"] else [],
                    )
                )
    except UnicodeDecodeError as exc:
        raise ExportError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise ExportError(f"{path}: not a readable CSV file ({exc})") from None
    return accounts


def _check(
    line: int, row: dict[str, str], raw: dict[str | None, object], seen: set[str]
) -> RowProblem | None:
    rid = row["record_id"]
    if None in raw:
        return RowProblem(line, rid, "row", f"{len(COLUMNS)} columns at most, found more")
    if not rid:
        return RowProblem(line, rid, "record_id", "a non-empty id")
    if rid in seen:
        return RowProblem(line, rid, "record_id", "an id not used by an earlier row")
    if not row["name"]:
        return RowProblem(line, rid, "name", "the account's legal name")
    checks = (
        ("country", _COUNTRY, "an ISO 3166 two-letter code such as DE, or empty"),
        ("postal_code", _POSTAL, "letters, digits, spaces or dashes (at most 12), or empty"),
        ("tax_id", _TAX, "a tax id of 2-30 letters, digits, spaces, dots or dashes, or empty"),
    )
    for field, pattern, expected in checks:
        if row[field] and not pattern.match(row[field]):
            return RowProblem(line, rid, field, expected)
    if row["website"] and _domain(row["website"]) is None:
        return RowProblem(line, rid, "website", "a web address such as example.com, or empty")
    for field in COLUMNS:
        if len(row[field]) > _MAX_TEXT:
            return RowProblem(line, rid, field, f"at most {_MAX_TEXT} characters")
    return None


def _domain(website: str) -> str | None:
    found = _HOST.match(website.strip().lower())
    return found.group(1) if found else None


def outcomes(ids: list[tuple[str, str]], run: MatchRun) -> dict[tuple[str, str], tuple[int, str]]:
    """Each record's cluster number and outcome: auto (in a cluster), review (in a pair), new."""
    in_review = {key for e in run.reviews for key in (e.left, e.right)}
    result: dict[tuple[str, str], tuple[int, str]] = {}
    for number, members in enumerate(run.clusters, start=1):
        for key in members:
            outcome = "auto" if len(members) > 1 else "review" if key in in_review else "new"
            result[key] = (number, outcome)
    for key in ids:
        result.setdefault(key, (0, "new"))
    return result


def write_results(
    out: Path, ids: list[tuple[str, str]], run: MatchRun, rejected: Iterable[dict[str, str]]
) -> dict[str, int]:
    """``clusters.csv``, ``review.csv`` and ``rejected.csv`` in ``out``, 0600; outcome counts."""
    out.mkdir(parents=True, exist_ok=True)
    decided = outcomes(ids, run)
    counts = {"auto": 0, "review": 0, "new": 0}
    with open_private(out / "clusters.csv", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["record_id", "cluster_id", "outcome"])
        for source, rid in ids:
            number, outcome = decided[(source, rid)]
            counts[outcome] += 1
            writer.writerow([rid, f"C{number:07d}", outcome])
    with open_private(out / "review.csv", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        signals = ["tax_id", "domain", "country", "postal_code", "street", "legal_form"]
        writer.writerow(
            ["left_record_id", "right_record_id", "score", "name_similarity", *signals, "reason"]
        )
        for e in sorted(run.reviews, key=lambda e: (-e.score, e.left, e.right)):
            row = e.as_dict()
            writer.writerow(
                [e.left[1], e.right[1], row["score"], row["name_similarity"]]
                + [row[s] for s in signals]
                + [e.reason]
            )
    with open_private(out / "rejected.csv", newline="", encoding="utf-8") as f:
        kept = csv.DictWriter(f, fieldnames=[*COLUMNS, "problem"])
        kept.writeheader()
        kept.writerows(rejected)
    return counts


def match_accounts(
    matcher: Matcher, accounts: Accounts, progress: Callable[[int, int], None] | None = None
) -> MatchRun:
    """The batch run: the same blocking, scoring and clustering onboarding uses."""
    return match_keys(matcher, accounts.ids, accounts.keys, progress)
