"""Customer matching: is this CRM account or ERP customer the same legal person as another?

Each pair is compared on explainable signals (normalised legal name, name similarity, tax id,
website domain, billing country, postal code). Thresholds come from ``config/matching.yaml``.
The outcome is ``auto_match`` only when the evidence is strong and nothing contradicts it;
doubtful pairs go to a steward (``review``); a different billing country never auto-matches.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

from anyascii import anyascii
from cleanco import basename  # type: ignore[import-untyped]
from pydantic import Field, model_validator
from rapidfuzz import fuzz

from quote2cash.canonical import Customer
from quote2cash.masterdata.config import (
    KeyedValueError,
    StrictModel,
    parse_yaml,
    read_yaml,
    validate_model,
)

Score = Annotated[float, Field(ge=0, le=100)]


class NameRules(StrictModel):
    """Name similarity thresholds, 0-100 (rapidfuzz ratio on normalised legal names)."""

    identical: Score = 100
    auto_match: Score
    review: Score
    extra_legal_forms: list[str] = Field(default_factory=list)
    fuzzy_legal_forms: list[str] = Field(default_factory=list)
    """Long legal forms also removed when misspelt (last word, similarity >= the next key)."""
    fuzzy_legal_form_similarity: Score = 85
    noise_words: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.review <= self.auto_match <= self.identical:
            raise KeyedValueError(
                ("review",),
                f"thresholds must satisfy review ({self.review:g}) <= auto_match "
                f"({self.auto_match:g}) <= identical ({self.identical:g})",
            )
        return self


class TaxIdRules(StrictModel):
    auto_match: bool = True
    """The same tax id in the same (or an unknown) country is the same legal person."""


class CorroborationRules(StrictModel):
    min_signals: Annotated[int, Field(ge=0, le=2)] = 1
    """Agreeing postal code / website domain needed for a fuzzy (not identical) name auto-match."""


class DomainRules(StrictModel):
    review_name_similarity: Score = 60
    """Same website domain and at least this name similarity: ask a steward (parents share one)."""
    free_email_domains: list[str] = Field(default_factory=list)


class MatchingConfig(StrictModel):
    """``config/matching.yaml``."""

    version: Annotated[int, Field(ge=1)] = 1
    name: NameRules
    tax_id: TaxIdRules = Field(default_factory=TaxIdRules)
    corroboration: CorroborationRules = Field(default_factory=CorroborationRules)
    domain: DomainRules = Field(default_factory=DomainRules)


class Outcome(StrEnum):
    AUTO_MATCH = "auto_match"
    REVIEW = "review"
    NEW = "new"


class Agreement(StrEnum):
    SAME = "same"
    DIFFERENT = "different"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CustomerCandidate:
    """A customer as one system holds it, with what matching needs beyond the canonical record."""

    system: str
    local_id: str
    customer: Customer
    updated_at: datetime
    website: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.system, self.local_id)


@dataclass(frozen=True)
class MatchKeys:
    name_key: str
    country: str | None
    postal_code: str | None
    domain: str | None
    tax_keys: frozenset[str]


@dataclass(frozen=True)
class PairEvidence:
    """Why two candidates do or do not match: every signal, its score and the outcome."""

    left: tuple[str, str]
    right: tuple[str, str]
    name_similarity: float
    tax_id: Agreement
    domain: Agreement
    country: Agreement
    postal_code: Agreement
    outcome: Outcome
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "left": list(self.left),
            "right": list(self.right),
            "name_similarity": round(self.name_similarity, 2),
            "tax_id": self.tax_id.value,
            "domain": self.domain.value,
            "country": self.country.value,
            "postal_code": self.postal_code.value,
            "outcome": self.outcome.value,
            "reason": self.reason,
        }


_GERMAN = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"})
_GREEK_OU = re.compile("([\u03bf\u039f])([\u03c5\u03a5\u03cd\u038e])")
"""Greek omicron-upsilon is ``ou`` (ELOT 743); letter by letter it would give ``oy``."""
_NOT_WORD = re.compile(r"[^a-z0-9&./ ]+")
_SPACES = re.compile(r"\s+")
_NOT_ALNUM = re.compile(r"[^A-Z0-9]")


class Matcher:
    """Scores pairs of customer candidates under one MatchingConfig."""

    def __init__(self, config: MatchingConfig) -> None:
        self.config = config
        self._forms = [tuple(self._plain(form).split()) for form in config.name.extra_legal_forms]
        self._forms.sort(key=len, reverse=True)
        self._noise = frozenset(self._plain(word) for word in config.name.noise_words)
        self._fuzzy_forms = [self._plain(word) for word in config.name.fuzzy_legal_forms]
        self._free = frozenset(d.lower() for d in config.domain.free_email_domains)

    @staticmethod
    def _plain(text: str) -> str:
        """Unicode-normalise, transliterate to ASCII (German umlauts as ae/oe/ue), lower-case."""
        text = unicodedata.normalize("NFKC", text).translate(_GERMAN)
        text = _GREEK_OU.sub(lambda m: "OU" if m.group(1) == "\u039f" else "ou", text)
        text = anyascii(text).lower().replace("'", "")
        return _SPACES.sub(" ", _NOT_WORD.sub(" ", text)).strip()

    def normalise_name(self, name: str) -> str:
        """The comparable core of a legal name: no legal form, case, punctuation or accents."""
        words = self._strip_forms(_words(self._plain(name)))
        text = " ".join(words)
        for _ in range(2):
            text = basename(text, prefix=True, suffix=True) or text
        words = self._strip_forms(_words(text))
        if len(words) > 1 and any(
            fuzz.ratio(words[-1], form) >= self.config.name.fuzzy_legal_form_similarity
            for form in self._fuzzy_forms
        ):
            words = words[:-1]
        kept = [w for w in words if w not in self._noise]
        return " ".join(kept or words)

    def _strip_forms(self, words: list[str]) -> list[str]:
        """Remove configured legal forms from either end, longest first, until none is left."""
        changed = True
        while changed and len(words) > 1:
            changed = False
            for form in self._forms:
                n = len(form)
                if len(words) > n and tuple(words[-n:]) == form:
                    words = words[:-n]
                    changed = True
                elif len(words) > n and tuple(words[:n]) == form:
                    words = words[n:]
                    changed = True
        return words

    def keys(self, candidate: CustomerCandidate) -> MatchKeys:
        customer = candidate.customer
        address = customer.billing_address or customer.address
        postal = (
            _NOT_ALNUM.sub("", address.postal_code.upper())
            if address and address.postal_code
            else None
        )
        return MatchKeys(
            name_key=self.normalise_name(customer.name),
            country=address.country if address else None,
            postal_code=postal or None,
            domain=self.domain_of(candidate),
            tax_keys=frozenset(
                _NOT_ALNUM.sub("", t.value.upper()) for t in customer.tax_ids if t.value
            ),
        )

    def domain_of(self, candidate: CustomerCandidate) -> str | None:
        """The website's registrable host, else the e-mail domain unless it is a free-mail one."""
        if candidate.website:
            host = re.sub(r"^[a-z]+://", "", candidate.website.strip().lower())
            host = host.split("/", 1)[0].split(":", 1)[0].removeprefix("www.")
            if host:
                return host
        email = candidate.customer.email
        if email and "@" in email:
            domain = email.rsplit("@", 1)[1].lower()
            if domain not in self._free:
                return domain
        return None

    @staticmethod
    def name_similarity(left: str, right: str) -> float:
        """0-100: the best of plain, word-order-insensitive and space-insensitive ratios."""
        if not left or not right:
            return 0.0
        return max(
            fuzz.ratio(left, right),
            fuzz.token_sort_ratio(left, right),
            fuzz.ratio(left.replace(" ", ""), right.replace(" ", "")),
        )

    def compare(
        self,
        left: CustomerCandidate,
        right: CustomerCandidate,
        left_keys: MatchKeys | None = None,
        right_keys: MatchKeys | None = None,
    ) -> PairEvidence:
        a = left_keys or self.keys(left)
        b = right_keys or self.keys(right)
        rules = self.config
        similarity = self.name_similarity(a.name_key, b.name_key)
        tax = _agree_sets(a.tax_keys, b.tax_keys)
        domain = _agree(a.domain, b.domain)
        country = _agree(a.country, b.country)
        postal = (
            _agree(a.postal_code, b.postal_code)
            if country is not Agreement.DIFFERENT
            else Agreement.DIFFERENT
        )

        def result(outcome: Outcome, reason: str) -> PairEvidence:
            return PairEvidence(
                left.key, right.key, similarity, tax, domain, country, postal, outcome, reason
            )

        if country is Agreement.DIFFERENT:
            if tax is Agreement.SAME:
                return result(Outcome.REVIEW, "same tax id but different billing countries")
            return result(Outcome.NEW, "different billing countries")
        if tax is Agreement.SAME and rules.tax_id.auto_match:
            return result(Outcome.AUTO_MATCH, "same tax id")
        corroborating = (postal is Agreement.SAME) + (domain is Agreement.SAME)
        contradicting = [
            name
            for name, agreement in (("tax id", tax), ("postal code", postal), ("domain", domain))
            if agreement is Agreement.DIFFERENT
        ]
        if similarity >= rules.name.review:
            if contradicting:
                return result(
                    Outcome.REVIEW, f"similar names but {', '.join(contradicting)} differ"
                )
            if similarity >= rules.name.identical:
                return result(Outcome.AUTO_MATCH, "same normalised name, nothing contradicts")
            if similarity >= rules.name.auto_match:
                if corroborating >= rules.corroboration.min_signals:
                    return result(Outcome.AUTO_MATCH, "similar names, corroborated")
                return result(Outcome.REVIEW, "similar names, not corroborated")
            return result(Outcome.REVIEW, "names somewhat similar")
        if domain is Agreement.SAME and similarity >= rules.domain.review_name_similarity:
            return result(Outcome.REVIEW, "same website domain, different names")
        return result(Outcome.NEW, "names differ")


def _words(text: str) -> list[str]:
    """Words without punctuation; dots vanish (``G.m.b.H`` -> ``gmbh``), ``&`` reads ``and``."""
    cleaned = re.sub(r"[^a-z0-9& ]+", " ", text.lower().replace(".", ""))
    return ["and" if w == "&" else w for w in cleaned.split()]


def _agree(a: str | None, b: str | None) -> Agreement:
    if a is None or b is None:
        return Agreement.UNKNOWN
    return Agreement.SAME if a == b else Agreement.DIFFERENT


def _agree_sets(a: frozenset[str], b: frozenset[str]) -> Agreement:
    if not a or not b:
        return Agreement.UNKNOWN
    return Agreement.SAME if a & b else Agreement.DIFFERENT


@dataclass
class MatchRun:
    """Clusters of candidates that auto-matched, and every pair sent to review."""

    clusters: list[list[tuple[str, str]]]
    reviews: list[PairEvidence] = field(default_factory=list)
    auto_matches: list[PairEvidence] = field(default_factory=list)

    def cluster_of(self) -> dict[tuple[str, str], int]:
        return {key: index for index, members in enumerate(self.clusters) for key in members}


def conflict(a: MatchKeys, b: MatchKeys) -> str | None:
    """Why two records cannot be one legal person whatever their names say, if they cannot."""
    if a.country and b.country and a.country != b.country:
        return f"billing countries differ ({a.country}, {b.country})"
    if a.tax_keys and b.tax_keys and not a.tax_keys & b.tax_keys:
        return "tax ids differ"
    return None


def match_all(matcher: Matcher, candidates: Sequence[CustomerCandidate]) -> MatchRun:
    """Compare every pair (blocked by country) and join auto-matched pairs into clusters.

    Strongest pairs join first (same tax id, then name similarity). A pair whose join would put
    two records that conflict (different countries or tax ids) into one cluster goes to review
    instead, so transitive chains never merge what a direct comparison would not.
    """
    keys = [matcher.keys(c) for c in candidates]
    members: dict[int, list[int]] = {i: [i] for i in range(len(candidates))}
    root = list(range(len(candidates)))
    run = MatchRun(clusters=[])
    autos: list[tuple[int, int, PairEvidence]] = []
    for i, j in _pairs(keys):
        evidence = matcher.compare(candidates[i], candidates[j], keys[i], keys[j])
        if evidence.outcome is Outcome.AUTO_MATCH:
            autos.append((i, j, evidence))
        elif evidence.outcome is Outcome.REVIEW:
            run.reviews.append(evidence)
    autos.sort(key=lambda t: (t[2].tax_id is not Agreement.SAME, -t[2].name_similarity, t[0], t[1]))
    for i, j, evidence in autos:
        ri, rj = root[i], root[j]
        if ri == rj:
            run.auto_matches.append(evidence)
            continue
        clash = next(
            (
                why
                for x in members[ri]
                for y in members[rj]
                if (why := conflict(keys[x], keys[y])) is not None
            ),
            None,
        )
        if clash is not None:
            run.reviews.append(
                replace(evidence, outcome=Outcome.REVIEW, reason=f"joining would merge: {clash}")
            )
            continue
        run.auto_matches.append(evidence)
        for x in members[rj]:
            root[x] = ri
        members[ri].extend(members.pop(rj))
    run.clusters = [[candidates[x].key for x in group] for group in members.values()]
    return run


def _pairs(keys: Sequence[MatchKeys]) -> Iterable[tuple[int, int]]:
    """All pairs that could be anything but NEW: same or unknown country, or a shared tax id."""
    by_country: dict[str | None, list[int]] = {}
    for index, key in enumerate(keys):
        by_country.setdefault(key.country, []).append(index)
    seen: set[tuple[int, int]] = set()
    unknown = by_country.get(None, [])
    for country, members in by_country.items():
        pool = members if country is None else members + unknown
        for x in range(len(pool)):
            for y in range(x + 1, len(pool)):
                pair = (min(pool[x], pool[y]), max(pool[x], pool[y]))
                if pair not in seen:
                    seen.add(pair)
                    yield pair
    by_tax: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        for tax in key.tax_keys:
            by_tax.setdefault(tax, []).append(index)
    for members in by_tax.values():
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                pair = (min(members[x], members[y]), max(members[x], members[y]))
                if pair not in seen:
                    seen.add(pair)
                    yield pair


def load_matching(path: str | Path) -> Matcher:
    return Matcher(validate_model(MatchingConfig, read_yaml(path)))


def parse_matching(text: str, source: str = "<matching.yaml>") -> Matcher:
    return Matcher(validate_model(MatchingConfig, parse_yaml(text, source)))
