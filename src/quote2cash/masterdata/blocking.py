"""Which pairs of records are worth comparing: those sharing a block key.

Comparing every record with every other grows with the square of the data; records of one
company almost always share a tax id, a domain, a rare name word, a sound-alike first word, the
start or end of the name, or a postal code. Blocks larger than ``max_block_size`` are common words
that identify nobody and are skipped, so the cost grows near-linearly with the number of records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from jellyfish import metaphone

if TYPE_CHECKING:
    from quote2cash.masterdata.matching import BlockingRules, MatchKeys

_AFFIX = 5


def block_keys(keys: MatchKeys, rules: BlockingRules) -> set[str]:
    """Every block a record belongs to, prefixed by kind (t: tax id, d: domain, n: name word...)."""
    found = {f"t:{tax}" for tax in keys.tax_keys}
    if keys.domain:
        found.add(f"d:{keys.domain}")
    words = keys.name_key.split()
    found.update(f"n:{w}" for w in words if len(w) >= rules.min_token_length)
    if words:
        found.add(f"m:{metaphone(words[0])}")
        joined = "".join(words)
        found.add(f"a:{joined[:_AFFIX]}")
        found.add(f"z:{joined[-_AFFIX:]}")
    if keys.postal_code:
        found.add(f"p:{'/'.join(sorted(keys.countries))}:{keys.postal_code}")
    return found


def candidate_pairs(
    rules: BlockingRules,
    keys: Sequence[MatchKeys],
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[int, int]]:
    """Each pair (i < j) sharing at least one block of a useful size, exactly once."""
    blocks: dict[str, list[int]] = {}
    of_record: list[list[str]] = []
    for index, key in enumerate(keys):
        mine = sorted(block_keys(key, rules))
        of_record.append(mine)
        for block in mine:
            blocks.setdefault(block, []).append(index)
    useful = {b: m for b, m in blocks.items() if 1 < len(m) <= rules.max_block_size}
    del blocks
    total = len(keys)
    for i in range(total):
        partners: set[int] = set()
        for block in of_record[i]:
            members = useful.get(block)
            if members is not None:
                partners.update(j for j in members if j > i)
        yield from ((i, j) for j in sorted(partners))
        if progress is not None and (i % 10_000 == 0 or i == total - 1):
            progress(i + 1, total)
