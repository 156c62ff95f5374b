"""The on-disk key index: a key's newest value wins across runs, merging keeps it, a reset
forgets everything, and files are private."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from quote2cash.usage.keyindex import MAX_RUNS, KeyIndex


def u64(values: list[int]) -> pa.Array:
    return pa.array(values, pa.uint64())


def test_newest_value_wins_across_runs_and_merges(tmp_path: Path) -> None:
    index = KeyIndex(tmp_path / "ix")
    index.add(u64(list(range(0, 20_000, 2))), u64([1] * 10_000), 1)
    index.add(u64([4, 5, 2**64 - 1]), u64([7, 8, 9]), 2)
    probe = u64([0, 4, 5, 6, 7, 2**64 - 1, 19_998, 19_999])
    assert index.lookup(probe).to_pylist() == [1, 7, 8, 1, None, 9, 1, None]
    for n in range(MAX_RUNS + 2):  # enough runs to force merges
        index.add(u64([100_000 + n]), u64([n]), 3 + n)
    assert len(index.runs) <= MAX_RUNS
    assert index.lookup(probe).to_pylist() == [1, 7, 8, 1, None, 9, 1, None]
    assert index.lookup(u64([100_000 + MAX_RUNS + 1])).to_pylist() == [MAX_RUNS + 1]
    watermark = index.watermark
    index.close()
    reopened = KeyIndex(tmp_path / "ix")
    assert reopened.watermark == watermark
    assert reopened.lookup(probe).to_pylist() == [1, 7, 8, 1, None, 9, 1, None]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (tmp_path / "ix").iterdir())
    assert (tmp_path / "ix").stat().st_mode & 0o777 == 0o700
    reopened.reset()
    assert reopened.lookup(probe).null_count == len(probe)
    assert reopened.watermark == 0
    reopened.close()


def test_no_false_negatives_and_no_false_hits(tmp_path: Path) -> None:
    index = KeyIndex(tmp_path / "ix")
    keys = u64([(i * 0x9E3779B97F4A7C15) % 2**64 for i in range(1, 200_001)])
    index.add(keys, keys, 1)
    found = index.lookup(keys)
    assert found.null_count == 0 and found.equals(keys)
    others = u64([(i * 0x9E3779B97F4A7C15 + 1) % 2**64 for i in range(1, 200_001)])
    assert index.lookup(others).null_count == len(others)
    index.close()
