"""Where a record without a billing country probably is: tax-id prefix, legal form, domain TLD.

A missing country must not agree with every country: a German "GmbH & Co. KG" and a US "LLC" of
the same name are different companies even when one of them has no address.
"""

from __future__ import annotations

import re

_EU_VAT = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "EL",
        "ES",
        "FI",
        "FR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
        "XI",
    ]
)
_OTHER_TAX_PREFIX = frozenset(["CH", "GB", "NO"])
_TAX_ALIASES = {"EL": "GR", "XI": "GB"}

LEGAL_FORM_COUNTRIES: dict[str, frozenset[str]] = {
    form: frozenset(countries.split())
    for form, countries in {
        "gmbh": "DE AT CH",
        "ag": "DE AT CH",
        "kg": "DE AT",
        "ohg": "DE AT",
        "ug": "DE",
        "ek": "DE",
        "llc": "US",
        "inc": "US CA",
        "incorporated": "US CA",
        "corp": "US CA",
        "corporation": "US CA",
        "ltd": "GB IE",
        "limited": "GB IE",
        "plc": "GB IE",
        "llp": "GB US",
        "sarl": "FR LU BE CH",
        "sas": "FR",
        "sa": "FR ES BE CH LU PT GR PL",
        "bv": "NL BE",
        "nv": "NL BE",
        "spa": "IT",
        "srl": "IT RO",
        "ab": "SE FI",
        "oy": "FI",
        "asa": "NO",
        "aps": "DK",
        "ooo": "RU",
        "kk": "JP",
        "pty": "AU ZA",
        "sro": "CZ SK",
        "ae": "GR",
    }.items()
}
"""Legal forms (normalised words) and the countries whose law defines them."""

LEGAL_FORM_ALIASES = {
    "aktiengesellschaft": "ag",
    "limited": "ltd",
    "incorporated": "inc",
    "corporation": "corp",
    "kommanditgesellschaft": "kg",
    "gesmbh": "gmbh",
}
"""Spelled-out legal forms and the abbreviation they are compared as."""

_GENERIC_TLDS = frozenset(["com", "net", "org", "io", "co", "biz", "info", "app", "dev", "eu"])
_TLD_ALIASES = {"uk": "GB"}
_WORD = re.compile(r"[a-z0-9]+")


def country_of_tax_id(tax_key: str) -> str | None:
    """The country of a VAT-style id (``DE123...`` -> DE); None when it carries no prefix."""
    prefix = tax_key[:2]
    if len(tax_key) < 4 or not prefix.isalpha():
        return None
    if prefix in _EU_VAT or prefix in _OTHER_TAX_PREFIX:
        return _TAX_ALIASES.get(prefix, prefix)
    return None


def legal_form_of(plain_name: str) -> str | None:
    """The legal form ending (or starting) the name, abbreviated (``Aktiengesellschaft`` -> ag)."""
    words: list[str] = _WORD.findall(plain_name.replace(".", ""))
    if not words:
        return None
    if words[-1] == "kg" and (
        words[-3:-1] == ["gmbh", "co"] or words[-4:-2] in (["gmbh", "u"], ["gmbh", "und"])
    ):
        return "gmbh co kg"
    for word in (words[-1], words[0]):
        form = LEGAL_FORM_ALIASES.get(word, word)
        if form in LEGAL_FORM_COUNTRIES:
            return form
    return None


def countries_of_legal_form(plain_name: str) -> frozenset[str]:
    """Countries whose law defines the name's legal form; empty when none is recognised."""
    form = legal_form_of(plain_name)
    if form == "gmbh co kg":
        return LEGAL_FORM_COUNTRIES["kg"]
    return LEGAL_FORM_COUNTRIES.get(form, frozenset()) if form else frozenset()


def country_of_domain(domain: str | None) -> str | None:
    """The country of a country-code TLD (``.de`` -> DE, ``.co.uk`` -> GB); None for .com etc."""
    if not domain or "." not in domain:
        return None
    tld = domain.rsplit(".", 1)[1]
    if tld in _GENERIC_TLDS or len(tld) != 2:
        return None
    return _TLD_ALIASES.get(tld, tld.upper())


def infer_countries(
    plain_name: str, tax_keys: frozenset[str], domain: str | None
) -> frozenset[str]:
    """The countries a record without a billing country can be in; empty: no hint at all.

    A tax-id prefix is the strongest hint and decides alone; otherwise the legal form and the
    domain narrow each other (a ``.de`` GmbH is German; a ``.de`` LLC is still American).
    """
    from_tax = {c for t in tax_keys if (c := country_of_tax_id(t))}
    if from_tax:
        return frozenset(from_tax)
    forms = countries_of_legal_form(plain_name)
    tld = country_of_domain(domain)
    if forms:
        return frozenset({tld}) if tld in forms else forms
    return frozenset({tld}) if tld else frozenset()
