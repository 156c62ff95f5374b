"""The demo's book of business: accounts in both legal entities, their deals and how they pay.

Deterministic for a seed, so two runs tell the same story. Names and addresses are invented but
shaped like the real thing (legal suffixes, postal codes and states per country). Prices are the
sandbox catalog's list prices, so a deal's monthly value is what billing invoices.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum

LIST_PRICES: dict[str, dict[str, Decimal]] = {
    "PLAT-SEAT": {"USD": Decimal("49.00"), "EUR": Decimal("45.00")},
    "SUPPORT-PREM": {"USD": Decimal("199.00"), "EUR": Decimal("179.00")},
}
VOLUME_DISCOUNTS: dict[int, Decimal] = {
    40: Decimal("10"),
    60: Decimal("12.5"),
    100: Decimal("15"),
}
"""Seats -> the Discount % a rep gives on large deals; billing must charge exactly that price."""
UNMAPPED_CODE = "LEGACY-ANALYTICS"
"""A product the sales org still sells in the CRM but the catalog never mapped."""
UNMAPPED_PRICES = {"USD": Decimal("99.00"), "EUR": Decimal("89.00")}


class Payer(StrEnum):
    """How an account settles its invoices."""

    CARD = "card"
    BANK_TRANSFER = "bank transfer"
    LATE = "not yet paid"
    DECLINED = "card declined"


@dataclass(frozen=True)
class Place:
    country: str
    country_name: str
    city: str
    state: str | None
    postal_code: str
    street: str


@dataclass(frozen=True)
class DemoAccount:
    key: str
    name: str
    place: Place
    currency: str
    industry: str
    employees: int
    payer: Payer
    self_serve: bool = False
    """Signed up on the website first: the billing customer exists before the first deal (and
    lives on a Stripe test clock, so the demo can run its quarter)."""
    vat_id: str | None = None
    """The EU VAT registration the rep records (``VAT_Number__c``), if any."""

    @property
    def entity(self) -> str:
        return "DE" if self.currency == "EUR" else "US"


@dataclass(frozen=True)
class DemoLine:
    code: str
    quantity: int
    discount: Decimal | None = None
    """The rep's Discount % on the line (volume deals get one)."""

    def unit_price(self, currency: str) -> Decimal:
        prices = UNMAPPED_PRICES if self.code == UNMAPPED_CODE else LIST_PRICES[self.code]
        return prices[currency]


@dataclass(frozen=True)
class DemoDeal:
    contract_number: str
    account: DemoAccount
    name: str
    lines: tuple[DemoLine, ...]
    wave: int
    """1: closed before the ERP window, 2: closed during it, 3: after it."""

    @property
    def monthly_value(self) -> Decimal:
        return sum(
            (line.unit_price(self.account.currency) * line.quantity for line in self.lines),
            Decimal(0),
        )

    @property
    def unmapped(self) -> bool:
        return any(line.code == UNMAPPED_CODE for line in self.lines)


@dataclass
class Book:
    accounts: list[DemoAccount] = field(default_factory=list)
    deals: list[DemoDeal] = field(default_factory=list)

    def wave(self, n: int) -> list[DemoDeal]:
        return [d for d in self.deals if d.wave == n]

    @property
    def unmapped_deal(self) -> DemoDeal:
        return next(d for d in self.deals if d.unmapped)


_STEMS = (
    "Northwind", "Bluewater", "Ironbridge", "Summit", "Cedar Ridge", "Harborview", "Redwood",
    "Granite Peak", "Silverline", "Lakeshore", "Brightpath", "Clearview", "Evergreen", "Pioneer",
    "Keystone", "Riverbend", "Sterling", "Oakmont", "Westfield", "Crescent", "Falcon", "Meridian",
    "Beacon", "Horizon", "Copperleaf", "Stonegate", "Maple Grove", "Highland", "Trailhead",
    "Bayside",
)  # fmt: skip
_TRADES = (
    ("Logistics", "Other"), ("Analytics", "Technology"), ("Health Partners", "Healthcare"),
    ("Manufacturing", "Manufacturing"), ("Capital", "Finance"), ("Energy", "Energy"),
    ("Foods", "Retail"), ("Learning", "Education"), ("Software", "Technology"),
    ("Consulting Group", "Consulting"), ("Telecom", "Communications"), ("Outfitters", "Retail"),
)  # fmt: skip
_US_SUFFIX = ("Inc.", "LLC", "Corp.", "Co.")
_US_PLACES = (
    ("Seattle", "WA", "98101"), ("Austin", "TX", "78701"), ("Denver", "CO", "80202"),
    ("Chicago", "IL", "60601"), ("Boston", "MA", "02110"), ("Atlanta", "GA", "30303"),
    ("Portland", "OR", "97204"), ("Raleigh", "NC", "27601"), ("San Diego", "CA", "92101"),
    ("Columbus", "OH", "43215"), ("Minneapolis", "MN", "55402"), ("Nashville", "TN", "37203"),
)  # fmt: skip
_US_STREETS = ("Main St", "Market St", "Commerce Dr", "Pine Ave", "Industrial Pkwy", "Elm St")
_CA_PLACES = (("Toronto", "ON", "M5H 2N2"), ("Vancouver", "BC", "V6B 1A1"))
_DE_NAMES = (
    "Müller Maschinenbau", "Schmidt Präzisionstechnik", "Rheinland Logistik", "Becker Software",
    "Hoffmann Medizintechnik", "Wagner Energie", "Schäfer Lebensmittel", "Koch Analytik",
    "Bauer Verpackung", "Richter Baustoffe", "Klein Elektronik", "Wolf Automotive",
    "Neumann Beratung", "Schwarz Textil",
)  # fmt: skip
_DE_SUFFIX = ("GmbH", "AG", "GmbH & Co. KG")
_DE_PLACES = (
    ("München", "80331", "Leopoldstraße"), ("Hamburg", "20095", "Mönckebergstraße"),
    ("Stuttgart", "70173", "Königstraße"), ("Köln", "50667", "Hohe Straße"),
    ("Frankfurt am Main", "60311", "Zeil"), ("Berlin", "10117", "Friedrichstraße"),
    ("Düsseldorf", "40213", "Königsallee"), ("Leipzig", "04109", "Grimmaische Straße"),
)  # fmt: skip
_EU_OTHERS = (
    ("FR", "France",
     ("Atelier Lumière", "Groupe Bellecour", "Vins de Provence", "Optique Marceau"),
     ("SAS", "SARL"),
     (("Paris", "75002", "Rue de Richelieu"), ("Lyon", "69002", "Rue de la République"))),
    ("NL", "Netherlands", ("Van Dijk Transport", "De Vries Techniek", "Bakker Installatie"),
     ("B.V.",), (("Amsterdam", "1012 AB", "Damrak"), ("Rotterdam", "3011 AD", "Coolsingel"))),
    ("GB", "United Kingdom", ("Thames Valley Instruments", "Pennine Outdoor"),
     ("Ltd",), (("London", "EC2V 7HH", "Gresham Street"), ("Manchester", "M2 4WU", "King Street"))),
)  # fmt: skip


def build_book(
    *, accounts: int, deals: int, self_serve: int, seed: int = 2026, vat_abroad: bool = False
) -> Book:
    """``accounts`` accounts (a little over half in the US entity), ``deals`` deals over them
    (every account has one; the rest go to the larger ones), ``self_serve`` of them signed up on
    the website first. The last deal of wave 3 carries the unmapped product. ``vat_abroad``:
    the German entity's EU customers outside Germany are registered businesses with a VAT id
    (reverse charge), as an ERP that books no B2C customer abroad requires."""
    rng = random.Random(seed)
    book = Book()
    german = accounts * 45 // 100
    us_names = _unique_names(rng, accounts - german)
    de_names = _european_names(rng, german)
    for i in range(accounts):
        if i < accounts - german:
            name, place, currency = us_names[i], _us_place(rng, i), "USD"
        else:
            name, place = de_names[i - (accounts - german)]
            currency = "EUR"
        industry = _industry_of(name)
        book.accounts.append(
            DemoAccount(
                key=f"A{i + 1:03d}",
                name=name,
                place=place,
                currency=currency,
                industry=industry,
                employees=rng.choice((12, 35, 80, 150, 420, 1200, 3500)),
                payer=_payer(rng, currency),
                self_serve=False,
            )
        )
    if vat_abroad:
        book.accounts = [_registered(a, i) for i, a in enumerate(book.accounts)]
    for i in rng.sample(range(1, accounts), self_serve):
        a = book.accounts[i]
        book.accounts[i] = replace(a, self_serve=True, payer=Payer.CARD)
    owners = list(book.accounts)
    extra = deals - 1 - len(owners)
    owners += rng.choices(
        [a for a in book.accounts if a.employees >= 150] or book.accounts, k=max(extra, 0)
    )
    owners = owners[: deals - 1]
    rng.shuffle(owners)
    # the declining card belongs to a wave-1 customer, so its invoice is due during the window
    payer = next(a for a in owners if not a.self_serve)
    declining = replace(payer, payer=Payer.DECLINED)
    book.accounts = [declining if a is payer else a for a in book.accounts]
    owners = [declining if a is payer else a for a in owners]
    for n, account in enumerate(owners):
        seats = rng.choice((5, 8, 10, 12, 15, 20, 25, 40, 60, 100))
        lines = [DemoLine("PLAT-SEAT", seats, VOLUME_DISCOUNTS.get(seats))]
        if rng.random() < 0.4:
            lines.append(DemoLine("SUPPORT-PREM", 1))
        book.deals.append(
            DemoDeal(
                contract_number=f"C-{account.entity}-{n + 1:04d}",
                account=account,
                name=f"{account.name.split(' ')[0]} platform {seats} seats",
                lines=tuple(lines),
                wave=1 + (3 * n) // max(len(owners), 1),
            )
        )
    legacy_owner = _fresh_legacy_owner(book)
    book.deals.append(
        DemoDeal(
            contract_number=f"C-{legacy_owner.entity}-{deals:04d}",
            account=legacy_owner,
            name=f"{legacy_owner.name.split(' ')[0]} legacy analytics",
            lines=(DemoLine("PLAT-SEAT", 10), DemoLine(UNMAPPED_CODE, 1)),
            wave=3,
        )
    )
    return book


def _registered(account: DemoAccount, index: int) -> DemoAccount:
    """A well-formed VAT id for an EU account of the German entity outside Germany."""
    formats = {
        "FR": f"FR{10 + index % 90}{400000000 + index:09d}",
        "NL": f"NL{800000000 + index:09d}B01",
    }
    vat = formats.get(account.place.country) if account.entity == "DE" else None
    return replace(account, vat_id=vat) if vat else account


def _fresh_legacy_owner(book: Book) -> DemoAccount:
    """An account only the unmapped deal belongs to, so no system should ever hear of it."""
    account = DemoAccount(
        key=f"A{len(book.accounts) + 1:03d}",
        name="Lakeview Legacy Systems Inc.",
        place=Place("US", "United States", "Madison", "WI", "53703", "100 State St"),
        currency="USD",
        industry="Technology",
        employees=60,
        payer=Payer.CARD,
    )
    book.accounts.append(account)
    return account


def _unique_names(rng: random.Random, count: int) -> list[str]:
    combos = [(s, t) for s in _STEMS for t in _TRADES]
    rng.shuffle(combos)
    used: set[str] = set()
    out: list[str] = []
    for stem, (trade, _) in combos:
        if stem in used:
            continue
        used.add(stem)
        out.append(f"{stem} {trade} {rng.choice(_US_SUFFIX)}")
        if len(out) == count:
            return out
    raise ValueError(f"the demo book has names for {len(out)} US accounts, not {count}")


def _european_names(rng: random.Random, count: int) -> list[tuple[str, Place]]:
    pool: list[tuple[str, Place]] = []
    for stem in _DE_NAMES:
        city, postal, street = rng.choice(_DE_PLACES)
        place = Place("DE", "Germany", city, None, postal, f"{street} {rng.randint(1, 120)}")
        pool.append((f"{stem} {rng.choice(_DE_SUFFIX)}", place))
    for code, country, stems, suffixes, places in _EU_OTHERS:
        for stem in stems:
            city, postal, street = rng.choice(places)
            place = Place(code, country, city, None, postal, f"{rng.randint(1, 90)} {street}")
            pool.append((f"{stem} {rng.choice(suffixes)}", place))
    if count > len(pool):
        raise ValueError(f"the demo book has names for {len(pool)} European accounts, not {count}")
    head, rest = pool[: count // 2], pool[count // 2 :]
    rng.shuffle(rest)
    return head + rest[: count - len(head)]


def _us_place(rng: random.Random, index: int) -> Place:
    if index % 9 == 8:
        city, state, postal = rng.choice(_CA_PLACES)
        return Place("CA", "Canada", city, state, postal, f"{rng.randint(10, 900)} Bay St")
    city, state, postal = rng.choice(_US_PLACES)
    street = f"{rng.randint(100, 9800)} {rng.choice(_US_STREETS)}"
    return Place("US", "United States", city, state, postal, street)


def _industry_of(name: str) -> str:
    for trade, industry in _TRADES:
        if trade in name:
            return industry
    return "Manufacturing" if "Maschinen" in name or "technik" in name else "Other"


def _payer(rng: random.Random, currency: str) -> Payer:
    roll = rng.random()
    if roll < 0.06:
        return Payer.LATE
    if currency == "EUR" and roll < 0.45:
        return Payer.BANK_TRANSFER
    if roll < 0.15:
        return Payer.BANK_TRANSFER
    return Payer.CARD
