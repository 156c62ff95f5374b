"""Customer matching: is this CRM account or ERP customer the same legal person as another?

Each pair is compared on explainable signals (name similarity, tax id, website domain, billing
country, postal code, street); each agreement or disagreement adds its configured evidence weight
(Fellegi-Sunter style log-likelihood ratios, ``config/matching.yaml``) and the total decides:
``auto_match``, ``review`` by a steward, or ``new``. A different (or inferred different) country
never matches; candidate pairs come from ``blocking.py``, clusters from ``clustering.py``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

from anyascii import anyascii
from pydantic import Field, model_validator
from rapidfuzz import fuzz
from rapidfuzz.distance import DamerauLevenshtein

from quote2cash.canonical import Customer
from quote2cash.masterdata.config import (
    KeyedValueError,
    StrictModel,
    parse_yaml,
    read_yaml,
    validate_model,
)
from quote2cash.masterdata.country_hints import infer_countries, legal_form_of
from quote2cash.masterdata.legal_forms import basename

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
    one_typo_min_length: Annotated[int, Field(ge=1)] = 8
    """Names this long that differ by one typo (Damerau-Levenshtein 1) count as close."""

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


class DomainRules(StrictModel):
    review_name_similarity: Score = 60
    """Same website domain and at least this name similarity: ask a steward (parents share one)."""
    free_email_domains: list[str] = Field(default_factory=list)


class AgreementWeights(StrictModel):
    """Evidence for (same) and against (different) one legal person; unknown adds nothing."""

    same: float
    different: float


class NameWeights(StrictModel):
    """Evidence by name-similarity band (the band limits are ``name.*`` and ``domain.*``)."""

    identical: float
    close: float
    similar: float
    weak: float
    different: float


class Weights(StrictModel):
    name: NameWeights
    tax_id: AgreementWeights
    domain: AgreementWeights
    postal_code: AgreementWeights
    street: AgreementWeights
    city: AgreementWeights
    country: AgreementWeights
    legal_form: AgreementWeights


class Thresholds(StrictModel):
    auto_match: float
    review: float

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.review > self.auto_match:
            raise KeyedValueError(
                ("review",),
                f"review ({self.review:g}) must not exceed auto_match ({self.auto_match:g})",
            )
        return self


class BlockingRules(StrictModel):
    max_block_size: Annotated[int, Field(ge=2)] = 50
    """A block key shared by more records says little (a common word) and is not compared."""
    min_token_length: Annotated[int, Field(ge=1)] = 3


class MatchingConfig(StrictModel):
    """``config/matching.yaml``."""

    version: Annotated[int, Field(ge=1)] = 1
    name: NameRules
    tax_id: TaxIdRules = Field(default_factory=TaxIdRules)
    domain: DomainRules = Field(default_factory=DomainRules)
    weights: Weights
    thresholds: Thresholds
    blocking: BlockingRules = Field(default_factory=BlockingRules)


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


@dataclass(frozen=True, slots=True)
class MatchKeys:
    name_key: str
    country: str | None
    postal_code: str | None
    domain: str | None
    tax_keys: frozenset[str]
    inferred_countries: frozenset[str] = frozenset()
    """Where a record without a billing country can be (tax-id prefix, legal form, TLD)."""
    street: str | None = None
    city: str | None = None
    legal_form: str | None = None

    @property
    def countries(self) -> frozenset[str]:
        """The billing country, else the inferred ones; empty: nothing known."""
        return frozenset({self.country}) if self.country else self.inferred_countries


@dataclass(frozen=True, slots=True)
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
    score: float = 0.0
    street: Agreement = Agreement.UNKNOWN
    legal_form: Agreement = Agreement.UNKNOWN

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 2),
            "street": self.street.value,
            "legal_form": self.legal_form.value,
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
_NAME_CACHE_SIZE = 2_000_000


class Matcher:
    """Scores pairs of customer candidates under one MatchingConfig."""

    def __init__(self, config: MatchingConfig) -> None:
        self.config = config
        self._forms = [tuple(self._plain(form).split()) for form in config.name.extra_legal_forms]
        self._forms.sort(key=len, reverse=True)
        self._noise = frozenset(self._plain(word) for word in config.name.noise_words)
        self._fuzzy_forms = [self._plain(word) for word in config.name.fuzzy_legal_forms]
        self._free = frozenset(d.lower() for d in config.domain.free_email_domains)
        self._name_cache: dict[str, tuple[str, str]] = {}

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
            text = basename(text) or text
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
        return self.keys_of(
            name=customer.name,
            country=address.country if address else None,
            postal_code=address.postal_code if address else None,
            street=address.line1 if address else None,
            city=address.city if address else None,
            domain=self.domain_of(candidate),
            tax_ids=[t.value for t in customer.tax_ids if t.value],
        )

    def keys_of(
        self,
        *,
        name: str,
        country: str | None,
        postal_code: str | None,
        street: str | None,
        domain: str | None,
        tax_ids: Iterable[str],
        city: str | None = None,
    ) -> MatchKeys:
        """Comparable keys from raw fields; names are normalised once per distinct spelling."""
        cached = self._name_cache.get(name)
        if cached is None:
            cached = (self.normalise_name(name), self._plain(name))
            if len(self._name_cache) < _NAME_CACHE_SIZE:
                self._name_cache[name] = cached
        name_key, plain = cached
        postal = _NOT_ALNUM.sub("", postal_code.upper()) if postal_code else ""
        tax_keys = frozenset(k for t in tax_ids if (k := _NOT_ALNUM.sub("", t.upper())))
        country = country.strip().upper() or None if country else None
        inferred = frozenset() if country else infer_countries(plain, tax_keys, domain)
        street_key = _NOT_ALNUM.sub("", self._plain(street).upper()) if street else ""
        city_key = _NOT_ALNUM.sub("", self._plain(city).upper()) if city else ""
        return MatchKeys(
            name_key=name_key,
            country=country,
            postal_code=postal or None,
            domain=domain or None,
            tax_keys=tax_keys,
            inferred_countries=inferred,
            street=street_key or None,
            city=city_key or None,
            legal_form=legal_form_of(plain),
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
        """0-100: the best of plain, word-order-insensitive and space-insensitive ratios, and edit
        similarity counting a swap of two letters as one typo."""
        if not left or not right:
            return 0.0
        return max(
            fuzz.ratio(left, right),
            DamerauLevenshtein.normalized_similarity(left, right) * 100,
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
        return self.compare_keys(
            left.key, right.key, left_keys or self.keys(left), right_keys or self.keys(right)
        )

    def compare_keys(
        self, left: tuple[str, str], right: tuple[str, str], a: MatchKeys, b: MatchKeys
    ) -> PairEvidence:
        """Add up the evidence of every signal; the total and the hard rules give the outcome."""
        rules, weights = self.config, self.config.weights
        similarity = self.name_similarity(a.name_key, b.name_key)
        tax = _agree_sets(a.tax_keys, b.tax_keys)
        domain = _agree(a.domain, b.domain)
        country = _agree_countries(a, b)
        postal = (
            _agree(a.postal_code, b.postal_code)
            if country is not Agreement.DIFFERENT
            else Agreement.DIFFERENT
        )
        street = _agree_street(a, b, postal)
        city = _agree(a.city, b.city) if postal is Agreement.UNKNOWN else Agreement.UNKNOWN
        form = _agree(a.legal_form, b.legal_form)
        if _numbers_differ(a.name_key, b.name_key):
            band, name_weight = "different (numbers)", self.config.weights.name.different
        else:
            band, name_weight = self._name_band(similarity, self._one_typo(a.name_key, b.name_key))
        parts = [(f"name {band}", name_weight)]
        for signal, agreement, pair in (
            ("tax id", tax, weights.tax_id),
            ("domain", domain, weights.domain),
            ("country", country, weights.country),
            ("postal code", postal, weights.postal_code),
            ("street", street, weights.street),
            ("city", city, weights.city),
            ("legal form", form, weights.legal_form),
        ):
            if agreement is not Agreement.UNKNOWN:
                weight = pair.same if agreement is Agreement.SAME else pair.different
                parts.append((f"{signal} {agreement.value}", weight))
        score = sum(weight for _, weight in parts)
        explained = ", ".join(f"{what} {weight:+g}" for what, weight in parts)

        def result(outcome: Outcome, reason: str) -> PairEvidence:
            return PairEvidence(
                left,
                right,
                similarity,
                tax,
                domain,
                country,
                postal,
                outcome,
                f"{reason} (score {score:g}: {explained})",
                score,
                street,
                form,
            )

        if country is Agreement.DIFFERENT:
            if tax is Agreement.SAME:
                return result(Outcome.REVIEW, "same tax id but different countries")
            return result(Outcome.NEW, "different countries")
        identified = (tax is Agreement.SAME and rules.tax_id.auto_match) or band in (
            "identical",
            "close",
        )
        if score >= rules.thresholds.auto_match:
            if identified:
                return result(Outcome.AUTO_MATCH, "strong evidence")
            return result(Outcome.REVIEW, "strong evidence but neither tax id nor name agree")
        if score >= rules.thresholds.review:
            return result(Outcome.REVIEW, "some evidence")
        return result(Outcome.NEW, "evidence against")

    def _one_typo(self, left: str, right: str) -> bool:
        if min(len(left), len(right)) < self.config.name.one_typo_min_length:
            return False
        return DamerauLevenshtein.distance(left, right, score_cutoff=1) <= 1

    def _name_band(self, similarity: float, one_typo: bool) -> tuple[str, float]:
        name, weights = self.config.name, self.config.weights.name
        if similarity >= name.identical:
            return "identical", weights.identical
        if similarity >= name.auto_match or one_typo:
            return "close", weights.close
        if similarity >= name.review:
            return "similar", weights.similar
        if similarity >= self.config.domain.review_name_similarity:
            return "weak", weights.weak
        return "different", weights.different


_NUMBER = re.compile(r"\d+")


def _numbers_differ(left: str, right: str) -> bool:
    """Both names carry numbers and not the same ones: numbered entities ("Fund 1", "Fund 2",
    "Ledger 3 Corp") are different legal persons however alike the rest, never a typo."""
    if not (_NUMBER.search(left) and _NUMBER.search(right)):
        return False
    return sorted(int(n) for n in _NUMBER.findall(left)) != sorted(
        int(n) for n in _NUMBER.findall(right)
    )


def _words(text: str) -> list[str]:
    """Words without punctuation; dots vanish (``G.m.b.H`` -> ``gmbh``), ``&`` reads ``and``."""
    cleaned = re.sub(r"[^a-z0-9& ]+", " ", text.lower().replace(".", ""))
    return ["and" if w == "&" else w for w in cleaned.split()]


def _agree(a: str | None, b: str | None) -> Agreement:
    if a is None or b is None:
        return Agreement.UNKNOWN
    return Agreement.SAME if a == b else Agreement.DIFFERENT


def _agree_street(a: MatchKeys, b: MatchKeys, postal: Agreement) -> Agreement:
    """A street says something inside one postal code, or one city when a postal code is missing."""
    if postal is Agreement.SAME or (
        postal is Agreement.UNKNOWN and a.city is not None and a.city == b.city
    ):
        return _agree(a.street, b.street)
    return Agreement.UNKNOWN


def _agree_countries(a: MatchKeys, b: MatchKeys) -> Agreement:
    """Same only for two stated equal countries; different when the possibilities cannot meet."""
    left, right = a.countries, b.countries
    if not left or not right:
        return Agreement.UNKNOWN
    if not left & right:
        return Agreement.DIFFERENT
    if a.country and b.country:
        return Agreement.SAME
    return Agreement.UNKNOWN


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
    if a.countries and b.countries and not a.countries & b.countries:
        return f"countries differ ({_show(a.countries)}, {_show(b.countries)})"
    if a.tax_keys and b.tax_keys and not a.tax_keys & b.tax_keys:
        return "tax ids differ"
    return None


def _show(countries: frozenset[str]) -> str:
    return "/".join(sorted(countries))


def match_all(
    matcher: Matcher,
    candidates: Sequence[CustomerCandidate],
    progress: Callable[[int, int], None] | None = None,
) -> MatchRun:
    """Compare the blocked pairs and cluster the auto-matches, whatever the input order."""
    keys = [matcher.keys(c) for c in candidates]
    return match_keys(matcher, [c.key for c in candidates], keys, progress)


def match_keys(
    matcher: Matcher,
    ids: Sequence[tuple[str, str]],
    keys: Sequence[MatchKeys],
    progress: Callable[[int, int], None] | None = None,
) -> MatchRun:
    """``match_all`` on precomputed keys: what the batch CLI and the benchmark call."""
    from quote2cash.masterdata.blocking import candidate_pairs
    from quote2cash.masterdata.clustering import cluster

    autos: list[tuple[int, int, PairEvidence]] = []
    reviews: list[PairEvidence] = []
    for i, j in candidate_pairs(matcher.config.blocking, keys, progress):
        evidence = matcher.compare_keys(ids[i], ids[j], keys[i], keys[j])
        if evidence.outcome is Outcome.AUTO_MATCH:
            autos.append((i, j, evidence))
        elif evidence.outcome is Outcome.REVIEW:
            reviews.append(evidence)
    groups, accepted, refused = cluster(ids, keys, autos)
    return MatchRun(
        clusters=[[ids[x] for x in group] for group in groups],
        reviews=reviews + refused,
        auto_matches=accepted,
    )


def load_matching(path: str | Path) -> Matcher:
    return Matcher(validate_model(MatchingConfig, read_yaml(path)))


def parse_matching(text: str, source: str = "<matching.yaml>") -> Matcher:
    return Matcher(validate_model(MatchingConfig, parse_yaml(text, source)))
