# ruff: noqa: E501, SIM905  (data: long word lists)
"""Generate the harder labelled account set, and large synthetic sets for scale (deterministic).

    python tests/data/accounts_hard/generate.py                   # rewrites accounts.csv, truth.csv
    python tests/data/accounts_hard/generate.py --seed 7 --out /tmp/x      # another sample
    python tests/data/accounts_hard/generate.py --scale 1000000 --out /tmp/big   # for benchmarks

Columns are those of ``q2c customers match``:
``record_id,source,name,website,tax_id,country,postal_code,city,street``. truth.csv gives each
record's real company (``entity``) and what makes it hard (``case``). The labelled set was never
used to choose the weights in config/matching.yaml (they were set on tests/data/accounts); what
it adds over that set:

- ``no_country``: records without a country (the legal form, tax-id prefix or TLD still hint);
- ``rebrand_tax``: a renamed company that kept its tax id (one company);
- ``rebrand_no_tax``: a renamed company with only domain and address in common (one company,
  which the hub must not merge silently: a steward decides);
- ``same_name_abroad``: the same name in other countries sharing a domain (different companies),
  some without a country but with a foreign legal form (GmbH & Co. KG vs LLC);
- ``typo``: a typo in the name (not in the legal form) with its other fields as usual;
- ``typo_alone``: a typo with no second signal (one company; a steward decides);
- ``umlaut``: Müller / Mueller / Muller spellings; ``legal_form``: Ltd / Limited, AG /
  Aktiengesellschaft, Inc. / Incorporated, S.A. / SA;
- ``lookalike``: different companies of one country whose names differ by one word.
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
FIELDS = [
    "record_id",
    "source",
    "name",
    "website",
    "tax_id",
    "country",
    "postal_code",
    "city",
    "street",
]

COUNTRIES = {
    "DE": (["GmbH", "AG"], "de", ["Berlin", "Hamburg", "München", "Köln"], "Straße"),
    "AT": (["GmbH", "AG"], "at", ["Wien", "Graz", "Linz"], "Gasse"),
    "CH": (["AG", "GmbH", "SA"], "ch", ["Zürich", "Basel", "Genève"], "Strasse"),
    "FR": (["SA", "SARL", "SAS"], "fr", ["Paris", "Lyon", "Lille"], "Rue"),
    "GB": (["Ltd", "PLC"], "co.uk", ["London", "Leeds", "Bristol"], "Road"),
    "US": (["Inc.", "LLC", "Corp."], "com", ["Austin", "Boston", "Denver"], "Street"),
    "NL": (["B.V.", "N.V."], "nl", ["Amsterdam", "Utrecht"], "straat"),
    "IT": (["S.p.A.", "S.r.l."], "it", ["Milano", "Roma"], "Via"),
}
FORM_VARIANTS = {
    "GmbH": ["GmbH", "G.m.b.H.", "GMBH", "Gmbh"],
    "AG": ["AG", "Aktiengesellschaft", "A.G."],
    "Ltd": ["Ltd", "Limited", "LTD.", "Ltd."],
    "Inc.": ["Inc.", "Incorporated", "Inc", "INC"],
    "SA": ["SA", "S.A.", "S.A"],
    "LLC": ["LLC", "L.L.C."],
    "Corp.": ["Corp.", "Corporation", "Corp"],
}
VAT_PREFIX = {"DE": "DE", "AT": "ATU", "FR": "FR", "NL": "NL", "IT": "IT", "GB": "GB", "CH": "CHE"}
FIRST = (
    "Alder Amber Apex Aster Atlas Birch Blue Bright Cedar Cobalt Coral Crest Delta Ember Falcon "
    "Fern Granite Harbor Helios Indigo Iron Juniper Kestrel Lumen Maple Meridian Nimbus Nova Oak "
    "Onyx Orbit Pine Quartz Raven Sage Sierra Solstice Summit Terra Tidal Umber Vale Vertex "
    "Willow Zenith Lynx Polar Aurora Basalt Cinder Dune Echo Flint Glacier Haven Ivory Jade"
).split()
UMLAUT_FIRST = ["Müller", "Jäger", "Köhler", "Bäcker", "Schön", "Größ", "Fröhlich", "Hübner"]
SECOND = (
    "Analytics Systems Solutions Logistics Foods Media Engineering Robotics Pharma Textiles "
    "Energy Software Capital Labs Machines Networks Security Dynamics Works Partners"
).split()
STREETS = "Main Park Mill Station Church Lake Garden Market Bridge Hill".split()


@dataclass
class Record:
    name: str
    website: str
    tax_id: str
    country: str
    postal_code: str
    city: str
    street: str
    source: str = "crm"


@dataclass
class Company:
    core: str
    country: str
    form: str
    postal: str
    city: str
    street: str
    domain: str
    tax: str

    def record(self, rng: random.Random, **changes: str) -> Record:
        form = rng.choice(FORM_VARIANTS.get(self.form, [self.form]))
        core = (
            rng.choice([self.core, self.core.upper(), self.core])
            if rng.random() < 0.2
            else self.core
        )
        fields = {
            "name": f"{core} {form}",
            "website": rng.choice(
                [f"www.{self.domain}", f"https://{self.domain}/", self.domain, ""]
            ),
            "tax_id": self.tax if rng.random() < 0.6 else "",
            "country": self.country,
            "postal_code": self.postal if rng.random() < 0.9 else "",
            "city": self.city,
            "street": self.street,
            "source": rng.choice(["crm", "erp", "billing"]),
        }
        fields.update(changes)
        return Record(**fields)


def _company(rng: random.Random, core: str, country: str | None = None) -> Company:
    country = country or rng.choice(list(COUNTRIES))
    forms, tld, cities, street_word = COUNTRIES[country]
    slug = (
        core.lower()
        .replace(" ", "")
        .translate(str.maketrans({"ü": "ue", "ä": "ae", "ö": "oe", "ß": "ss"}))
    )
    digits = "".join(rng.choice("0123456789") for _ in range(9))
    return Company(
        core=core,
        country=country,
        form=rng.choice(forms),
        postal=str(rng.randint(1000, 99999)),
        city=rng.choice(cities),
        street=f"{rng.choice(STREETS)} {street_word} {rng.randint(1, 150)}",
        domain=f"{slug}.{tld}",
        tax=f"{VAT_PREFIX.get(country, '')}{digits}",
    )


def _typo(rng: random.Random, text: str) -> str:
    i = rng.randrange(1, len(text) - 2)
    if text[i].isalpha() and text[i + 1].isalpha():
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    return text[:i] + text[i + 1 :]


def _umlaut_variant(rng: random.Random, text: str) -> str:
    table = rng.choice(
        [
            {"ü": "ue", "ä": "ae", "ö": "oe", "ß": "ss"},
            {"ü": "u", "ä": "a", "ö": "o", "ß": "ss"},
            {"ü": "Ü", "ä": "Ä", "ö": "Ö"},
        ]
    )
    return text.translate(str.maketrans(table)) if table else text


def labelled(seed: int) -> Iterator[tuple[str, str, Record]]:
    """(entity, case, record) for the harder labelled set."""
    rng = random.Random(seed)
    used: set[str] = set()

    def fresh_core() -> str:
        while True:
            core = f"{rng.choice(FIRST)} {rng.choice(SECOND)}"
            if core not in used:
                used.add(core)
                return core

    n = 0

    def entity() -> str:
        nonlocal n
        n += 1
        return f"E{n:04d}"

    for _ in range(220):
        company, e = _company(rng, fresh_core()), entity()
        for _ in range(rng.choice([1, 2, 2, 3])):
            yield e, "random", company.record(rng)
        if rng.random() < 0.3:
            yield e, "typo", company.record(rng, name=f"{_typo(rng, company.core)} {company.form}")
    for _ in range(40):
        company, e = _company(rng, fresh_core()), entity()
        yield e, "no_country", company.record(rng)
        yield e, "no_country", company.record(rng, country="", postal_code="")
    for _ in range(25):
        company, e = _company(rng, fresh_core()), entity()
        yield e, "rebrand_tax", company.record(rng, tax_id=company.tax)
        yield (
            e,
            "rebrand_tax",
            company.record(
                rng, name=f"{fresh_core()} {company.form}", tax_id=company.tax, website=""
            ),
        )
    for _ in range(8):
        company, e = _company(rng, fresh_core()), entity()
        yield e, "rebrand_no_tax", company.record(rng, tax_id="", website=company.domain)
        yield (
            e,
            "rebrand_no_tax",
            company.record(
                rng,
                name=f"{fresh_core()} {company.form}",
                tax_id="",
                website=company.domain,
                postal_code=company.postal,
            ),
        )
    for _ in range(25):
        core = fresh_core()
        home, away = rng.sample(["DE", "US", "GB", "FR", "CH", "IT"], 2)
        first, second = _company(rng, core, home), _company(rng, core, away)
        second.domain = first.domain
        e1, e2 = entity(), entity()
        yield e1, "same_name_abroad", first.record(rng)
        yield e1, "same_name_abroad", first.record(rng)
        hidden = rng.random() < 0.5
        yield (
            e2,
            "same_name_abroad",
            second.record(
                rng,
                **(
                    {"country": "", "postal_code": "", "website": "", "tax_id": ""}
                    if hidden
                    else {}
                ),
            ),
        )
    for _ in range(12):
        core = fresh_core()
        de, us = _company(rng, core, "DE"), _company(rng, core, "US")
        de.form, us.form = "GmbH & Co. KG", "LLC"
        e1, e2 = entity(), entity()
        yield e1, "same_name_abroad", de.record(rng, tax_id="")
        yield (
            e1,
            "same_name_abroad",
            de.record(rng, tax_id="", country="", postal_code="", website=""),
        )
        yield (
            e2,
            "same_name_abroad",
            us.record(rng, tax_id="", country="", postal_code="", website=""),
        )
    for _ in range(10):
        company, e = _company(rng, fresh_core()), entity()
        yield e, "typo_alone", company.record(rng, website="", postal_code="", tax_id="", street="")
        yield (
            e,
            "typo_alone",
            company.record(
                rng,
                name=_typo(rng, f"{company.core} {company.form}"),
                website="",
                postal_code="",
                tax_id="",
            ),
        )
    for _ in range(25):
        core = f"{rng.choice(UMLAUT_FIRST)} {rng.choice(SECOND)}"
        if core in used:
            continue
        used.add(core)
        company, e = _company(rng, core, rng.choice(["DE", "AT", "CH"])), entity()
        yield e, "umlaut", company.record(rng)
        yield e, "umlaut", company.record(rng, name=f"{_umlaut_variant(rng, core)} {company.form}")
    for _ in range(25):
        company, e = _company(rng, fresh_core(), rng.choice(["GB", "US", "CH", "DE"])), entity()
        for _ in range(3):
            yield e, "legal_form", company.record(rng)
    for _ in range(20):
        first_word = rng.choice(FIRST)
        a, b = rng.sample(SECOND, 2)
        if f"{first_word} {a}" in used or f"{first_word} {b}" in used:
            continue
        used.update({f"{first_word} {a}", f"{first_word} {b}"})
        country = rng.choice(list(COUNTRIES))
        left, right = (
            _company(rng, f"{first_word} {a}", country),
            _company(rng, f"{first_word} {b}", country),
        )
        right.city, right.postal = left.city, left.postal
        e1, e2 = entity(), entity()
        yield e1, "lookalike", left.record(rng)
        yield e2, "lookalike", right.record(rng)


SYLLABLES = "ka ro tex mi lo va sen dor pli qua zu neo bri fal gor hel ix jun kel mar nor pax rin sol tum ver wex yal".split()


def synthetic(count: int, seed: int) -> Iterator[tuple[str, str, Record]]:
    """``count`` records of ~count/1.6 companies with the same kinds of noise, for scale."""
    rng = random.Random(seed)
    made, n = 0, 0
    while made < count:
        n += 1
        core = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()
        core = f"{core} {rng.choice(SECOND)}"
        company = _company(rng, core)
        for _ in range(min(rng.choice([1, 1, 2, 2, 3]), count - made)):
            record = company.record(rng)
            if rng.random() < 0.1:
                record.name = record.name.replace(company.core, _typo(rng, company.core))
            if rng.random() < 0.1:
                record.country = ""
            made += 1
            yield f"S{n:07d}", "synthetic", record


def write(folder: Path, rows: Iterator[tuple[str, str, Record]]) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    with (
        (folder / "accounts.csv").open("w", newline="", encoding="utf-8") as accounts,
        (folder / "truth.csv").open("w", newline="", encoding="utf-8") as truth,
    ):
        out = csv.writer(accounts)
        labels = csv.writer(truth)
        out.writerow(FIELDS)
        labels.writerow(["record_id", "entity", "case"])
        for entity, case, r in rows:
            count += 1
            rid = f"R{count:07d}"
            out.writerow(
                [
                    rid,
                    r.source,
                    r.name,
                    r.website,
                    r.tax_id,
                    r.country,
                    r.postal_code,
                    r.city,
                    r.street,
                ]
            )
            labels.writerow([rid, entity, case])
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--scale", type=int, default=0, help="synthetic records instead")
    args = parser.parse_args()
    rows = synthetic(args.scale, args.seed) if args.scale else labelled(args.seed)
    print(f"{write(args.out, rows)} records written to {args.out}")


if __name__ == "__main__":
    main()
