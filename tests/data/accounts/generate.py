# ruff: noqa: E501, RUF001  (data: long literal rows and deliberately non-Latin names)
"""Generate the labelled messy account data set for customer matching (deterministic).

    python tests/data/accounts/generate.py            # rewrites accounts.csv and truth.csv here
    python tests/data/accounts/generate.py --seed 7 --out /tmp/x   # another sample, same recipe

Every real company ("entity") yields a CRM account, usually an ERP customer and sometimes a
duplicate CRM account, each written the way people and systems actually write names: legal-form
variants, case, punctuation, typos, missing fields. On top of the random part come hand-written
hard cases (HARD_CASES below, checked by hand): umlaut spellings, Cyrillic and Greek
transliterations, renamed companies sharing a tax id, the same name in different countries
(different companies), parent/child companies (different companies sharing a domain and an
address), and look-alike names of different companies in one country.

truth.csv says which records belong to the same real entity; `case` names what makes it hard.
"""

from __future__ import annotations

import argparse
import csv
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).parent
FIELDS = [
    "record_id",
    "system",
    "local_id",
    "name",
    "street",
    "city",
    "postal_code",
    "country",
    "website",
    "email",
    "tax_id_type",
    "tax_id",
    "currency",
    "updated_at",
]

WORDS_A = [
    "Alpen",
    "Amber",
    "Apex",
    "Arcadia",
    "Aster",
    "Atlas",
    "Aurora",
    "Azure",
    "Basalt",
    "Beacon",
    "Birch",
    "Blue",
    "Bright",
    "Cedar",
    "Cobalt",
    "Copper",
    "Coral",
    "Crest",
    "Crystal",
    "Delta",
    "Eagle",
    "Ember",
    "Falcon",
    "Fern",
    "Forge",
    "Garnet",
    "Glacier",
    "Granite",
    "Harbor",
    "Hawk",
    "Helix",
    "Heron",
    "Horizon",
    "Indigo",
    "Iron",
    "Jade",
    "Juniper",
    "Keystone",
    "Lark",
    "Linden",
    "Lumen",
    "Maple",
    "Marble",
    "Meridian",
    "Mistral",
    "Nimbus",
    "Noble",
    "Nova",
    "Oak",
    "Onyx",
    "Orbit",
    "Pacific",
    "Pine",
    "Polar",
    "Prairie",
    "Quartz",
    "Raven",
    "Redwood",
    "Ridge",
    "River",
    "Sable",
    "Sage",
    "Sierra",
    "Silver",
    "Solstice",
    "Spruce",
    "Stone",
    "Summit",
    "Sun",
    "Tidal",
    "Timber",
    "Topaz",
    "Trident",
    "Tundra",
    "Umber",
    "Vale",
    "Vertex",
    "Willow",
    "Zenith",
]
WORDS_B = [
    "Analytics",
    "Bau",
    "Biotech",
    "Cargo",
    "Chemie",
    "Consulting",
    "Data",
    "Design",
    "Dynamics",
    "Energy",
    "Engineering",
    "Finance",
    "Foods",
    "Freight",
    "Health",
    "Industries",
    "Instruments",
    "Labs",
    "Logistics",
    "Machines",
    "Media",
    "Metals",
    "Mobility",
    "Networks",
    "Optics",
    "Pharma",
    "Photonics",
    "Plastics",
    "Robotics",
    "Security",
    "Software",
    "Solutions",
    "Systems",
    "Technik",
    "Telecom",
    "Textiles",
    "Tools",
    "Trading",
    "Ventures",
    "Werke",
]
FIRST_NAMES = [
    "anna",
    "ben",
    "clara",
    "david",
    "emma",
    "felix",
    "greta",
    "hugo",
    "ida",
    "jonas",
    "karl",
    "lena",
    "max",
    "nora",
    "otto",
    "paul",
    "rosa",
    "sam",
    "tara",
    "uwe",
    "vera",
]
FREE_MAIL = ["gmail.com", "outlook.com", "yahoo.com", "gmx.de", "web.de"]

COUNTRIES = {
    # country: (legal form variants, tld, currency, cities)
    "DE": (
        ["GmbH", "G.m.b.H.", "Gmbh", "GMBH", "AG", "GmbH & Co. KG"],
        "de",
        "EUR",
        ["Berlin", "Hamburg", "München", "Köln", "Stuttgart", "Düsseldorf"],
    ),
    "AT": (["GmbH", "G.m.b.H.", "AG"], "at", "EUR", ["Wien", "Graz", "Linz"]),
    "CH": (["AG", "GmbH", "SA"], "ch", "CHF", ["Zürich", "Basel", "Genève"]),
    "FR": (["SAS", "S.A.S.", "SA", "SARL", "S.A.R.L."], "fr", "EUR", ["Paris", "Lyon", "Lille"]),
    "NL": (["B.V.", "BV", "N.V."], "nl", "EUR", ["Amsterdam", "Utrecht", "Rotterdam"]),
    "GB": (["Ltd", "Ltd.", "Limited", "PLC"], "co.uk", "GBP", ["London", "Leeds", "Bristol"]),
    "US": (
        ["Inc.", "Inc", "Incorporated", "LLC", "Corp.", "Corporation"],
        "com",
        "USD",
        ["Austin", "Denver", "Boston", "Chicago"],
    ),
    "CA": (["Inc.", "Ltd.", "Corp."], "ca", "CAD", ["Toronto", "Ottawa", "Vancouver"]),
}
SAME_FORM = {  # spellings of one legal form, used when the same company is written again
    "GmbH": ["GmbH", "G.m.b.H.", "Gmbh", "GMBH", "gmbh", ""],
    "G.m.b.H.": ["GmbH", "G.m.b.H.", ""],
    "Gmbh": ["GmbH", "Gmbh"],
    "GMBH": ["GmbH", "GMBH"],
    "AG": ["AG", "A.G.", "Aktiengesellschaft", ""],
    "GmbH & Co. KG": ["GmbH & Co. KG", "GmbH & Co KG", "GmbH u. Co. KG", ""],
    "SA": ["SA", "S.A.", ""],
    "SAS": ["SAS", "S.A.S.", ""],
    "S.A.S.": ["SAS", "S.A.S."],
    "SARL": ["SARL", "S.A.R.L.", "Sàrl"],
    "S.A.R.L.": ["SARL", "S.A.R.L."],
    "B.V.": ["B.V.", "BV", "B.V"],
    "BV": ["B.V.", "BV"],
    "N.V.": ["N.V.", "NV"],
    "Ltd": ["Ltd", "Ltd.", "Limited", "LTD"],
    "Ltd.": ["Ltd", "Ltd.", "Limited"],
    "Limited": ["Ltd", "Limited"],
    "PLC": ["PLC", "plc", "P.L.C."],
    "Inc.": ["Inc.", "Inc", "Incorporated", "INC", ""],
    "Inc": ["Inc.", "Inc"],
    "Incorporated": ["Inc.", "Incorporated"],
    "LLC": ["LLC", "L.L.C.", "llc"],
    "Corp.": ["Corp.", "Corp", "Corporation"],
    "Corporation": ["Corp.", "Corporation"],
}


@dataclass
class Record:
    system: str
    name: str
    street: str
    city: str
    postal_code: str
    country: str
    website: str
    email: str
    tax_id_type: str
    tax_id: str
    currency: str
    updated_at: datetime
    case: str = "random"


@dataclass
class Entity:
    key: str
    records: list[Record] = field(default_factory=list)
    case: str = "random"


def postal(rng: random.Random, country: str) -> str:
    if country == "GB":
        return f"{rng.choice('EWNS')}{rng.randint(1, 20)} {rng.randint(1, 9)}{rng.choice('ABDEFG')}{rng.choice('HJLNPQ')}"
    if country == "CA":
        return f"M{rng.randint(1, 9)}{rng.choice('ABCEG')} {rng.randint(1, 9)}{rng.choice('HJK')}{rng.randint(1, 9)}"
    if country == "NL":
        return f"{rng.randint(1000, 9999)} {rng.choice(['AB', 'CD', 'GH', 'KL'])}"
    digits = {"DE": 5, "FR": 5, "US": 5, "AT": 4, "CH": 4}[country]
    return str(rng.randint(10 ** (digits - 1), 10**digits - 1))


def tax_id(rng: random.Random, country: str) -> tuple[str, str]:
    n = "".join(str(rng.randint(0, 9)) for _ in range(9))
    return {
        "DE": ("eu_vat", f"DE{n}"),
        "AT": ("eu_vat", f"ATU{n[:8]}"),
        "FR": ("eu_vat", f"FR{rng.randint(10, 99)}{n}"),
        "NL": ("eu_vat", f"NL{n}B01"),
        "GB": ("gb_vat", f"GB{n}"),
        "CH": ("ch_vat", f"CHE-{n[:3]}.{n[3:6]}.{n[6:]} MWST"),
        "US": ("us_ein", f"{n[:2]}-{n[2:]}"),
        "CA": ("ca_bn", n),
    }[country]


def slug(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def typo(rng: random.Random, name: str) -> str:
    words = name.split()
    candidates = [i for i, w in enumerate(words) if len(w) >= 6 and w.isalpha()]
    if not candidates:
        return name
    i = rng.choice(candidates)
    w = words[i]
    p = rng.randint(1, len(w) - 3)
    kind = rng.choice(["swap", "drop", "double"])
    if kind == "swap":
        w = w[:p] + w[p + 1] + w[p] + w[p + 2 :]
    elif kind == "drop":
        w = w[:p] + w[p + 1 :]
    else:
        w = w[:p] + w[p] + w[p:]
    words[i] = w
    return " ".join(words)


def restyle(rng: random.Random, base: str, form: str, *, allow_typo: bool) -> str:
    """The same company name as another person or system would type it."""
    form = rng.choice(SAME_FORM.get(form, [form]))
    name = f"{base}, {form}" if form and rng.random() < 0.15 else f"{base} {form}".strip()
    roll = rng.random()
    if roll < 0.2:
        name = name.upper()
    elif roll < 0.28:
        name = name.lower()
    if rng.random() < 0.1:
        name = name.replace(".", "").replace(",", "")
    if rng.random() < 0.08:
        name = name.replace(" & ", " and ")
    if allow_typo and rng.random() < 0.25:
        name = typo(rng, name)
    return name


def random_entities(rng: random.Random, count: int, now: datetime) -> list[Entity]:
    entities: list[Entity] = []
    used: set[tuple[str, str]] = set()
    countries = list(COUNTRIES)
    weights = [30, 6, 6, 8, 6, 12, 24, 8]
    while len(entities) < count:
        country = rng.choices(countries, weights)[0]
        base = f"{rng.choice(WORDS_A)} {rng.choice(WORDS_B)}"
        if (base, country) in used or any(base.lower() in row[3].lower() for row in HARD_CASES):
            continue
        used.add((base, country))
        forms, tld, currency, cities = COUNTRIES[country]
        form = rng.choice(forms)
        domain = f"{slug(base)}.{tld}"
        city = rng.choice(cities)
        pc = postal(rng, country)
        tax_type, tax_value = tax_id(rng, country)
        street = f"{rng.choice(WORDS_A)}{rng.choice(['strasse', ' Road', ' Street', 'weg'])} {rng.randint(1, 200)}"
        entity = Entity(f"E{len(entities) + 1:04d}")
        systems = ["crm"] + (["erp"] if rng.random() < 0.8 else [])
        systems += ["crm"] if rng.random() < 0.25 else []
        for index, system in enumerate(systems):
            crm = system == "crm"
            has_tax = rng.random() < (0.3 if crm else 0.85)
            tax_shown = (
                tax_value if rng.random() < 0.7 else " ".join([tax_value[:2], tax_value[2:]])
            )
            email_domain = domain if rng.random() < 0.5 else rng.choice(FREE_MAIL)
            entity.records.append(
                Record(
                    system=system,
                    name=(
                        f"{base} {form}"
                        if index == 0
                        else restyle(rng, base, form, allow_typo=True)
                    ),
                    street=street,
                    city=city,
                    postal_code="" if rng.random() < 0.1 else pc,
                    country=country,
                    website=(
                        ""
                        if rng.random() < (0.15 if crm else 0.5)
                        else rng.choice([domain, f"www.{domain}", f"https://www.{domain}/"])
                    ),
                    email=f"{rng.choice(FIRST_NAMES)}@{email_domain}" if rng.random() < 0.7 else "",
                    tax_id_type=tax_type if has_tax else "",
                    tax_id=tax_shown if has_tax else "",
                    currency="" if crm and rng.random() < 0.5 else currency,
                    updated_at=now
                    - timedelta(days=rng.randint(0, 900), minutes=rng.randint(0, 1440)),
                )
            )
        entities.append(entity)
    return entities


def lookalikes(rng: random.Random, count: int, now: datetime, start: int) -> list[Entity]:
    """Different companies in one country whose names differ by one word (must NOT match)."""
    result: list[Entity] = []
    for n in range(count):
        country = rng.choice(["DE", "US", "GB"])
        forms, tld, currency, cities = COUNTRIES[country]
        first = f"{rng.choice(WORDS_A)} {rng.choice(WORDS_A)}"
        second = rng.sample(WORDS_B, 2)
        for word in second:
            base = f"{first} {word}"
            entity = Entity(f"E{start + len(result) + 1:04d}", case="lookalike")
            tax_type, tax_value = tax_id(rng, country)
            domain = f"{slug(base)}.{tld}"
            entity.records.append(
                Record(
                    "crm",
                    f"{base} {forms[0]}",
                    f"Main Street {n + 1}",
                    rng.choice(cities),
                    postal(rng, country),
                    country,
                    domain,
                    "",
                    "",
                    "",
                    currency,
                    now - timedelta(days=rng.randint(0, 500)),
                    "lookalike",
                )
            )
            entity.records.append(
                Record(
                    "erp",
                    restyle(rng, base, forms[0], allow_typo=False),
                    f"Main Street {n + 1}",
                    entity.records[0].city,
                    entity.records[0].postal_code,
                    country,
                    "",
                    "",
                    tax_type,
                    tax_value,
                    currency,
                    now - timedelta(days=rng.randint(0, 500)),
                    "lookalike",
                )
            )
            result.append(entity)
    return result


# Hand-written hard cases, checked by hand. One tuple per record:
# (entity key, system, name, city, postal code, country, website, tax id type, tax id, currency)
HARD_CASES: list[tuple[str, str, str, str, str, str, str, str, str, str, str]] = [
    # umlauts: Müller / Mueller / MÜLLER G.m.b.H. / Muller are one company
    (
        "H01",
        "umlaut",
        "crm",
        "Müller Maschinenbau GmbH",
        "München",
        "80331",
        "DE",
        "mueller-maschinenbau.de",
        "",
        "",
        "EUR",
    ),
    (
        "H01",
        "umlaut",
        "erp",
        "Mueller Maschinenbau GmbH",
        "München",
        "80331",
        "DE",
        "",
        "eu_vat",
        "DE811234567",
        "EUR",
    ),
    (
        "H01",
        "umlaut",
        "crm",
        "MÜLLER MASCHINENBAU G.m.b.H.",
        "Muenchen",
        "80331",
        "DE",
        "www.mueller-maschinenbau.de",
        "",
        "",
        "",
    ),
    ("H01", "umlaut", "crm", "Muller Maschinenbau GmbH", "München", "80331", "DE", "", "", "", ""),
    (
        "H02",
        "umlaut",
        "crm",
        "Bäckerei Größl KG",
        "Wien",
        "1010",
        "AT",
        "groessl.at",
        "",
        "",
        "EUR",
    ),
    (
        "H02",
        "umlaut",
        "erp",
        "Baeckerei Groessl KG",
        "Wien",
        "1010",
        "AT",
        "",
        "eu_vat",
        "ATU61234567",
        "EUR",
    ),
    (
        "H03",
        "umlaut",
        "crm",
        "Straßenbau Weiß AG",
        "Köln",
        "50667",
        "DE",
        "weiss-strassenbau.de",
        "",
        "",
        "EUR",
    ),
    (
        "H03",
        "umlaut",
        "erp",
        "STRASSENBAU WEISS AG",
        "Koeln",
        "50667",
        "DE",
        "",
        "eu_vat",
        "DE298765432",
        "EUR",
    ),
    # Cyrillic and Greek, with their Latin transliterations
    ("H04", "cyrillic", "crm", "ООО «Техносила»", "Москва", "101000", "RU", "", "", "", ""),
    (
        "H04",
        "cyrillic",
        "erp",
        "Tekhnosila LLC",
        "Moscow",
        "101000",
        "RU",
        "tekhnosila.ru",
        "ru_inn",
        "7701234567",
        "USD",
    ),
    (
        "H05",
        "cyrillic",
        "crm",
        "Газпром нефть ПАО",
        "Санкт-Петербург",
        "190000",
        "RU",
        "gazprom-neft.ru",
        "",
        "",
        "",
    ),
    (
        "H05",
        "cyrillic",
        "erp",
        "Gazprom Neft PJSC",
        "Saint Petersburg",
        "190000",
        "RU",
        "",
        "ru_inn",
        "5504036333",
        "USD",
    ),
    ("H06", "cyrillic", "crm", "Елпром ЕООД", "София", "1000", "BG", "elprom.bg", "", "", ""),
    (
        "H06",
        "cyrillic",
        "erp",
        "Elprom EOOD",
        "Sofia",
        "1000",
        "BG",
        "",
        "eu_vat",
        "BG123456789",
        "EUR",
    ),
    (
        "H07",
        "greek",
        "crm",
        "Αθηναϊκή Ζυθοποιία Α.Ε.",
        "Αθήνα",
        "10431",
        "GR",
        "athenianbrewery.gr",
        "",
        "",
        "",
    ),
    (
        "H07",
        "greek",
        "erp",
        "Athinaiki Zythopoiia S.A.",
        "Athens",
        "10431",
        "GR",
        "",
        "eu_vat",
        "EL094012345",
        "EUR",
    ),
    ("H08", "greek", "crm", "Παπαδόπουλος Α.Ε.", "Θεσσαλονίκη", "54625", "GR", "", "", "", ""),
    (
        "H08",
        "greek",
        "erp",
        "Papadopoulos SA",
        "Thessaloniki",
        "54625",
        "GR",
        "papadopoulos.gr",
        "eu_vat",
        "EL998877665",
        "EUR",
    ),
    # same tax id, different names (renamed company; the ERP already has the new name)
    (
        "H09",
        "tax_rename",
        "crm",
        "Globex Handels GmbH",
        "Hamburg",
        "20095",
        "DE",
        "globex-handel.de",
        "eu_vat",
        "DE277665544",
        "EUR",
    ),
    (
        "H09",
        "tax_rename",
        "erp",
        "GXH Global Trading GmbH",
        "Hamburg",
        "20457",
        "DE",
        "gxh-trading.de",
        "eu_vat",
        "DE 277 665 544",
        "EUR",
    ),
    (
        "H10",
        "tax_rename",
        "crm",
        "Initech Software Inc.",
        "Austin",
        "78701",
        "US",
        "initech.com",
        "us_ein",
        "74-1234567",
        "USD",
    ),
    (
        "H10",
        "tax_rename",
        "erp",
        "Initrode Holdings Inc.",
        "Austin",
        "78702",
        "US",
        "",
        "us_ein",
        "74-1234567",
        "USD",
    ),
    (
        "H11",
        "tax_rename",
        "crm",
        "Vandelay Industries Ltd",
        "London",
        "EC1A 1BB",
        "GB",
        "vandelay.co.uk",
        "gb_vat",
        "GB123498765",
        "EUR",
    ),
    (
        "H11",
        "tax_rename",
        "erp",
        "Vandelay Import Export Ltd",
        "London",
        "EC1A 1BB",
        "GB",
        "",
        "gb_vat",
        "GB123498765",
        "EUR",
    ),
    # the same name in different countries: different companies
    (
        "H12",
        "same_name_other_country",
        "crm",
        "Atlas Logistics Ltd",
        "Leeds",
        "LS1 4AP",
        "GB",
        "atlaslogistics.co.uk",
        "",
        "",
        "GBP",
    ),
    (
        "H13",
        "same_name_other_country",
        "crm",
        "Atlas Logistics Inc.",
        "Denver",
        "80202",
        "US",
        "atlaslogistics.com",
        "",
        "",
        "USD",
    ),
    (
        "H14",
        "same_name_other_country",
        "erp",
        "Atlas Logistics GmbH",
        "Berlin",
        "10115",
        "DE",
        "",
        "eu_vat",
        "DE300111222",
        "EUR",
    ),
    (
        "H15",
        "same_name_other_country",
        "crm",
        "Nordwind GmbH",
        "Hamburg",
        "20095",
        "DE",
        "nordwind.de",
        "",
        "",
        "EUR",
    ),
    (
        "H16",
        "same_name_other_country",
        "crm",
        "Nordwind AG",
        "Zürich",
        "8001",
        "CH",
        "nordwind.ch",
        "",
        "",
        "CHF",
    ),
    (
        "H17",
        "same_name_other_country",
        "crm",
        "Helvetia Data SA",
        "Genève",
        "1201",
        "CH",
        "helvetiadata.ch",
        "",
        "",
        "CHF",
    ),
    (
        "H18",
        "same_name_other_country",
        "crm",
        "Helvetia Data SAS",
        "Lyon",
        "69001",
        "FR",
        "helvetiadata.fr",
        "",
        "",
        "EUR",
    ),
    # parent / child companies: different legal persons sharing a domain and an address
    (
        "H19",
        "parent_child",
        "crm",
        "Siebert Holding AG",
        "Stuttgart",
        "70173",
        "DE",
        "siebert-group.de",
        "eu_vat",
        "DE811000001",
        "EUR",
    ),
    (
        "H20",
        "parent_child",
        "crm",
        "Siebert AG",
        "Stuttgart",
        "70173",
        "DE",
        "siebert-group.de",
        "eu_vat",
        "DE811000002",
        "EUR",
    ),
    (
        "H21",
        "parent_child",
        "erp",
        "Siebert Services GmbH",
        "Stuttgart",
        "70173",
        "DE",
        "siebert-group.de",
        "eu_vat",
        "DE811000003",
        "EUR",
    ),
    (
        "H22",
        "parent_child",
        "crm",
        "Northwind Group Inc.",
        "Boston",
        "02110",
        "US",
        "northwind.com",
        "",
        "",
        "USD",
    ),
    (
        "H23",
        "parent_child",
        "crm",
        "Northwind Inc.",
        "Boston",
        "02110",
        "US",
        "northwind.com",
        "",
        "",
        "USD",
    ),
    (
        "H24",
        "parent_child",
        "crm",
        "Northwind Canada Ltd.",
        "Toronto",
        "M5H 2N2",
        "CA",
        "northwind.com",
        "",
        "",
        "CAD",
    ),
    (
        "H25",
        "parent_child",
        "crm",
        "Helios Software AG",
        "Basel",
        "4051",
        "CH",
        "helios.ch",
        "",
        "",
        "CHF",
    ),
    (
        "H26",
        "parent_child",
        "crm",
        "Helios Software Services AG",
        "Basel",
        "4051",
        "CH",
        "helios.ch",
        "",
        "",
        "CHF",
    ),
    # a common name, two different companies in one country (different towns)
    (
        "H27",
        "common_name",
        "crm",
        "Schmidt GmbH",
        "Berlin",
        "10117",
        "DE",
        "schmidt-berlin.de",
        "",
        "",
        "EUR",
    ),
    (
        "H28",
        "common_name",
        "erp",
        "Schmidt GmbH",
        "München",
        "80331",
        "DE",
        "",
        "eu_vat",
        "DE144556677",
        "EUR",
    ),
    # typos, punctuation, case, word order
    (
        "H29",
        "typo",
        "crm",
        "Brightwave Analytics Inc.",
        "Chicago",
        "60601",
        "US",
        "brightwave.io",
        "",
        "",
        "USD",
    ),
    (
        "H29",
        "typo",
        "erp",
        "Brigthwave Analytics Inc",
        "Chicago",
        "60601",
        "US",
        "",
        "us_ein",
        "36-9988776",
        "USD",
    ),
    (
        "H30",
        "punctuation",
        "crm",
        "O'Neill & Sons Ltd",
        "Bristol",
        "BS1 4DJ",
        "GB",
        "oneillandsons.co.uk",
        "",
        "",
        "",
    ),
    (
        "H30",
        "punctuation",
        "erp",
        "ONEILL AND SONS LIMITED",
        "Bristol",
        "BS1 4DJ",
        "GB",
        "",
        "gb_vat",
        "GB555666777",
        "EUR",
    ),
    ("H31", "word_order", "crm", "Schulz Bau GmbH", "Düsseldorf", "40213", "DE", "", "", "", "EUR"),
    (
        "H31",
        "word_order",
        "erp",
        "Bau Schulz GmbH",
        "Duesseldorf",
        "40213",
        "DE",
        "",
        "eu_vat",
        "DE312312312",
        "EUR",
    ),
    (
        "H32",
        "accents",
        "crm",
        "Société Générale de Logiciels SA",
        "Paris",
        "75008",
        "FR",
        "sgl.fr",
        "",
        "",
        "EUR",
    ),
    (
        "H32",
        "accents",
        "erp",
        "SOCIETE GENERALE DE LOGICIELS S.A.",
        "Paris",
        "75008",
        "FR",
        "",
        "eu_vat",
        "FR12345678901",
        "EUR",
    ),
    (
        "H33",
        "nordic",
        "crm",
        "Øresund Ærø ApS",
        "København",
        "1050",
        "DK",
        "oresund-aero.dk",
        "",
        "",
        "",
    ),
    (
        "H33",
        "nordic",
        "erp",
        "Oresund Aero ApS",
        "Copenhagen",
        "1050",
        "DK",
        "",
        "eu_vat",
        "DK12345678",
        "EUR",
    ),
]


def hard_entities(now: datetime) -> list[Entity]:
    entities: dict[str, Entity] = {}
    for n, row in enumerate(HARD_CASES):
        key, case, system, name, city, pc, country, website, ttype, tval, cur = row
        entity = entities.setdefault(key, Entity(key, case=case))
        entity.records.append(
            Record(
                system,
                name,
                "Hauptstrasse 1" if country in ("DE", "AT") else "1 Main Street",
                city,
                pc,
                country,
                website,
                "",
                ttype,
                tval,
                cur,
                now - timedelta(days=10 + n),
                case,
            )
        )
    return list(entities.values())


def generate(seed: int = 20261126) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    rng = random.Random(seed)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    entities = random_entities(rng, 130, now)
    entities += lookalikes(rng, 8, now, len(entities))
    entities += hard_entities(now)
    accounts: list[dict[str, str]] = []
    truth: list[dict[str, str]] = []
    counters = {"crm": 0, "erp": 0}
    for entity in entities:
        for record in entity.records:
            counters[record.system] += 1
            local_id = (
                f"001A{counters['crm']:011d}"
                if record.system == "crm"
                else f"C{counters['erp']:06d}"
            )
            record_id = f"{record.system}:{local_id}"
            accounts.append(
                {
                    "record_id": record_id,
                    "system": record.system,
                    "local_id": local_id,
                    "name": record.name,
                    "street": record.street,
                    "city": record.city,
                    "postal_code": record.postal_code,
                    "country": record.country,
                    "website": record.website,
                    "email": record.email,
                    "tax_id_type": record.tax_id_type,
                    "tax_id": record.tax_id,
                    "currency": record.currency,
                    "updated_at": record.updated_at.isoformat(),
                }
            )
            truth.append({"record_id": record_id, "entity": entity.key, "case": entity.case})
    order = list(range(len(accounts)))
    rng.shuffle(order)
    return [accounts[i] for i in order], [truth[i] for i in order]


def write(out: Path, seed: int) -> None:
    accounts, truth = generate(seed)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "accounts.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(accounts)
    with (out / "truth.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["record_id", "entity", "case"])
        writer.writeheader()
        writer.writerows(truth)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    write(args.out, args.seed)
