"""The incremental path (one new account against the filed ones) agrees with the batch run."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

from quote2cash.masterdata.account_export import match_accounts
from quote2cash.masterdata.match_index import MatchIndex
from quote2cash.masterdata.matching import Outcome, load_matching
from unit.masterdata.accounts_data import CONFIG
from unit.masterdata.hard_accounts import HARD, load


def test_a_new_account_finds_what_the_batch_run_clusters_it_with(tmp_path: Path) -> None:
    matcher = load_matching(CONFIG / "matching.yaml")
    accounts, labels = load(HARD, matcher)
    cluster_of = match_accounts(matcher, accounts).cluster_of()
    members: dict[int, set[tuple[str, str]]] = {}
    for key, number in cluster_of.items():
        members.setdefault(number, set()).add(key)
    newcomers = set(random.Random(5).sample(range(len(accounts.ids)), 60))
    filed = [i for i in range(len(accounts.ids)) if i not in newcomers]
    index = MatchIndex(matcher, tmp_path / "index.sqlite")
    index.add([accounts.ids[i] for i in filed], [accounts.keys[i] for i in filed])
    assert len(index) == len(filed)
    assert stat.S_IMODE(os.stat(tmp_path / "index.sqlite").st_mode) == 0o600
    found_some = 0
    for i in sorted(newcomers):
        record = accounts.ids[i]
        evidence = index.match(record, accounts.keys[i])
        autos = {e.right for e in evidence if e.outcome is Outcome.AUTO_MATCH}
        siblings = members[cluster_of[record]] - {record} - {accounts.ids[j] for j in newcomers}
        assert {labels[r[1]][0] for r in autos} <= {labels[record[1]][0]}, record
        if siblings:
            assert autos & siblings, (record, siblings)
            found_some += 1
    assert found_some >= 20
    index.close()
