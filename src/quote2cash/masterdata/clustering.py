"""Auto-matched pairs into customers: strongest evidence first, conflicts refused, input order
irrelevant (ties break on record ids), and a record moves when another cluster holds it tighter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quote2cash.masterdata.matching import MatchKeys, PairEvidence

Edge = tuple[int, int, "PairEvidence"]


def cluster(
    ids: Sequence[tuple[str, str]], keys: Sequence[MatchKeys], autos: Sequence[Edge]
) -> tuple[list[list[int]], list[PairEvidence], list[PairEvidence]]:
    """Groups of record indexes, the auto pairs kept, and those refused (sent to review)."""
    from quote2cash.masterdata.matching import Agreement, Outcome, conflict

    order = sorted(
        autos,
        key=lambda e: (
            e[2].tax_id is not Agreement.SAME,
            -e[2].score,
            -e[2].name_similarity,
            min(ids[e[0]], ids[e[1]]),
            max(ids[e[0]], ids[e[1]]),
        ),
    )
    root: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    accepted: list[PairEvidence] = []
    refused: list[PairEvidence] = []
    for i, j, evidence in order:
        ri, rj = root.get(i, i), root.get(j, j)
        if ri == rj:
            accepted.append(evidence)
            continue
        left, right = members.get(ri, [ri]), members.get(rj, [rj])
        clash = next(
            (why for x in left for y in right if (why := conflict(keys[x], keys[y])) is not None),
            None,
        )
        if clash is not None:
            refused.append(
                replace(evidence, outcome=Outcome.REVIEW, reason=f"joining would merge: {clash}")
            )
            continue
        accepted.append(evidence)
        if len(left) < len(right):
            ri, rj, left, right = rj, ri, right, left
        for x in right:
            root[x] = ri
        members[ri] = left + right
        members.pop(rj, None)
    _move_loose_records(keys, order, root, members)
    grouped = {x for group in members.values() for x in group}
    groups = [sorted(g, key=lambda x: ids[x]) for g in members.values()]
    groups += [[x] for x in range(len(ids)) if x not in grouped]
    groups.sort(key=lambda g: ids[g[0]])
    return groups, accepted, refused


def _move_loose_records(
    keys: Sequence[MatchKeys],
    edges: Sequence[Edge],
    root: dict[int, int],
    members: dict[int, list[int]],
) -> None:
    """One pass: a record whose auto evidence for another cluster outweighs its own moves there."""
    from quote2cash.masterdata.matching import conflict

    pull: dict[int, dict[int, float]] = {}
    for i, j, evidence in edges:
        pull.setdefault(i, {}).setdefault(root.get(j, j), 0.0)
        pull[i][root.get(j, j)] += evidence.score
        pull.setdefault(j, {}).setdefault(root.get(i, i), 0.0)
        pull[j][root.get(i, i)] += evidence.score
    for record in sorted(pull):
        home = root.get(record, record)
        best = max(pull[record].items(), key=lambda kv: (kv[1], -kv[0]))
        target, strength = best
        if target == home or strength <= pull[record].get(home, 0.0):
            continue
        if record == home and len(members.get(home, [])) > 1:
            continue
        group = members.get(target, [target])
        if any(conflict(keys[record], keys[y]) for y in group):
            continue
        members.setdefault(home, [home]).remove(record)
        if len(members[home]) <= 1:
            for x in members.pop(home):
                root.pop(x, None)
        members.setdefault(target, [target]).append(record)
        root[record] = target
        root[target] = target
