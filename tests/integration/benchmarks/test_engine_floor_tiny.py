"""The engine benchmark's floor (``benchmarks/engine_peers.py`` ``floor_rows``) at tiny scale on
both stores: it writes exactly the rows the guarantees write (a step row and an audit entry per
step, every event done, no subject left pending; it checks its own counts and raises otherwise),
in one commit per round that per-key order allows, so a schema change that breaks it shows here
rather than in a benchmark run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[3] / "benchmarks"))

from engine_history import make_events
from engine_peers import floor_rows


@pytest.mark.parametrize("steps", [1, 3])
def test_the_floor_writes_the_guarantees_rows_in_ordered_rounds(db_url: str, steps: int) -> None:
    evs = make_events(60, 6)  # ten events per subject
    got = floor_rows(db_url, evs, steps)
    assert got["events"] == 60
    assert got["rounds"] == 10 * steps  # a subject's steps commit one after another
    assert got["end_to_end_per_s"] > 0
    assert got["append_per_s"] > got["end_to_end_per_s"]
