"""Onboarding's incremental match: ``GoldenCustomers.ingest`` of one CRM account against a store
already holding N accounts (block-key lookup, scoring, filing, golden-record refresh and the
audit entry, in one transaction), as a won deal's ``customer.resolved`` step does it.

    python benchmarks/golden_ingest.py --quick     # 2,000 accounts in the store, 200 timed
    python benchmarks/golden_ingest.py             # 20,000 accounts, 500 timed
    python benchmarks/golden_ingest.py --db postgresql://...  (default: a SQLite file)

Accounts are synthetic companies (stem + trade + legal form, a city and postal code); one in ten
timed accounts is another account of a company already filed (an auto match). The store is
filled through the same ``ingest``. The last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from quote2cash.canonical import Address, Customer
from quote2cash.defaults import packaged_config_dir
from quote2cash.engine.runtime import Runtime
from quote2cash.flows.deps import golden_customers
from quote2cash.masterdata import CustomerCandidate, IngestOutcome

STEMS = [
    "Northwind", "Bluewater", "Ironbridge", "Summit", "Cedar", "Harbor", "Redwood", "Granite",
    "Silverline", "Lakeshore", "Brightpath", "Evergreen", "Keystone", "Falcon", "Meridian",
    "Beacon", "Horizon", "Copperleaf", "Stonegate", "Highland", "Trailhead", "Bayside", "Oakmont",
]  # fmt: skip
TRADES = [
    "Logistics", "Analytics", "Foods", "Energy", "Software", "Capital", "Outfitters", "Telecom",
    "Learning", "Health", "Consulting", "Foundry", "Textiles", "Robotics",
]  # fmt: skip
FORMS = ["Inc", "LLC", "Corp", "Co"]
CITIES = [
    ("Austin", "787"), ("Denver", "802"), ("Boston", "021"), ("Seattle", "981"),
    ("Chicago", "606"), ("Atlanta", "303"), ("Portland", "972"), ("Columbus", "432"),
]  # fmt: skip
AT = datetime(2026, 12, 6, tzinfo=UTC)


def company(rng: random.Random, n: int) -> tuple[str, str, str, str]:
    """A distinct company: a made-up word keeps names apart as real ones are."""
    word = "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3))
    name = f"{word.title()} {rng.choice(STEMS)} {rng.choice(TRADES)} {rng.choice(FORMS)}"
    city, prefix = rng.choice(CITIES)
    return name, city, f"{prefix}{n % 100:02d}", f"{rng.randint(1, 9800)} Main St"


def candidate(local_id: str, name: str, city: str, postal: str, street: str) -> CustomerCandidate:
    address = Address(line1=street, city=city, postal_code=postal, country="US")
    return CustomerCandidate("crm", local_id, Customer(name=name, address=address), AT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--store", type=int, help="accounts filed before timing")
    parser.add_argument("--timed", type=int)
    parser.add_argument("--db", help="store URL (default: a SQLite file in a temp folder)")
    args = parser.parse_args()
    size = args.store or (2_000 if args.quick else 20_000)
    timed = args.timed or (200 if args.quick else 500)
    rng = random.Random(15)
    with tempfile.TemporaryDirectory(prefix="q2c-golden-") as folder:
        url = args.db or f"sqlite:///{Path(folder) / 'hub.sqlite'}"
        runtime = Runtime.open(url, sqlite_synchronous="NORMAL")
        golden = golden_customers(runtime, packaged_config_dir())
        assert golden is not None
        companies = [company(rng, n) for n in range(size)]
        started = time.perf_counter()
        for n, (name, city, postal, street) in enumerate(companies):
            golden.ingest(candidate(f"S{n}", name, city, postal, street))
        fill = time.perf_counter() - started
        latencies: list[float] = []
        outcomes: dict[str, int] = {}
        for n in range(timed):
            if n % 10 == 0:
                name, city, postal, street = rng.choice(companies)
                name = name.rsplit(" ", 1)[0]  # the same company without its legal form
            else:
                name, city, postal, street = company(rng, size + n)
            one = candidate(f"T{n}", name, city, postal, street)
            began = time.perf_counter()
            result = golden.ingest(one)
            latencies.append((time.perf_counter() - began) * 1000)
            outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
        runtime.close()
    latencies.sort()
    figures = {
        "backend": url.split(":", 1)[0],
        "store_accounts": size,
        "timed_ingests": timed,
        "fill_per_second": round(size / fill, 1),
        "ingest_ms_p50": round(statistics.median(latencies), 2),
        "ingest_ms_p99": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 2),
        "ingest_ms_max": round(latencies[-1], 2),
        "outcomes": outcomes,
        "auto_matched_expected": timed // 10 + (timed % 10 > 0),
    }
    print(
        f"{size} accounts filed ({figures['fill_per_second']}/s); one more: "
        f"p50 {figures['ingest_ms_p50']} ms, p99 {figures['ingest_ms_p99']} ms; {outcomes}"
    )
    assert outcomes.get(IngestOutcome.AUTO_MATCH.value, 0) >= 1
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
