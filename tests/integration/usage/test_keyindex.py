"""The on-disk key index: a key's newest value wins across runs, merging keeps it, a reset
forgets everything, and files are private."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa

from quote2cash.usage.keyindex import FENCE_MAGIC, FENCE_STEP, MAX_RUNS, KeyIndex


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


def test_every_stored_key_is_found_through_the_fence_at_block_edges(tmp_path: Path) -> None:
    """Runs of one key, one block of the fence, a block and one key, many blocks: every
    key found with its value, keys between and beyond them not (the search within a block
    ends on the block's first and last key alike)."""
    rng = random.Random(16)
    for count in (1, FENCE_STEP - 1, FENCE_STEP, FENCE_STEP + 1, 7 * FENCE_STEP + 3):
        keys = sorted({rng.getrandbits(64) | 2 for _ in range(count)})
        index = KeyIndex(tmp_path / f"ix{count}")
        index.add_sorted(u64(keys), u64([k ^ 1 for k in keys]), 0)
        assert index.lookup(u64(keys)).to_pylist() == [k ^ 1 for k in keys]
        stored = set(keys)
        misses = [k - 1 for k in keys if k - 1 not in stored] + [0, 1, 2**64 - 1]
        misses = [k for k in misses if k not in stored]
        assert index.lookup(u64(misses)).null_count == len(misses)
        index.close()


def test_fence_file_is_written_with_a_run_and_an_index_without_it_still_works(
    tmp_path: Path,
) -> None:
    """A run's fence file is written with the run and read at open; a missing fence file (an
    index built before them) or one of another format or step is ignored: the fence is built
    from the keys on the first lookup and written again, and every key is still found."""
    rng = random.Random(17)
    keys = sorted({rng.getrandbits(64) for _ in range(5 * FENCE_STEP + 11)})
    folder = tmp_path / "ix"
    index = KeyIndex(folder)
    index.add_sorted(u64(keys), u64([k ^ 5 for k in keys]), 0)
    (fence,) = folder.glob("*.fence")
    written = fence.read_bytes()
    blocks = -(-len(keys) // FENCE_STEP)
    assert written.startswith(FENCE_MAGIC) and len(written) == 32 + 8 * blocks
    stored = [int.from_bytes(written[32 + 8 * i : 40 + 8 * i], "little") for i in range(blocks)]
    assert stored == keys[::FENCE_STEP]
    index.close()
    for damage in (None, b"q2cfence" + (99).to_bytes(8, "little"), b"x" * 40):
        if damage is None:
            fence.unlink()
        else:
            fence.write_bytes(damage + written[len(damage) :])
        reopened = KeyIndex(folder)
        assert reopened.lookup(u64(keys)).to_pylist() == [k ^ 5 for k in keys]
        assert reopened.lookup(u64([keys[0] - 1, keys[-1] + 1])).null_count == 2
        assert fence.read_bytes() == written  # written again for the next open
        assert fence.stat().st_mode & 0o777 == 0o600
        reopened.close()
    assert sorted(p.suffix for p in folder.iterdir()) == [
        ".bloom",
        ".fence",
        ".json",
        ".keys",
        ".vals",
    ]
