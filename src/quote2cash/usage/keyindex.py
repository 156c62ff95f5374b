"""The history of accepted usage record keys, on disk, for deduplication against all history.

Each key is a 64-bit hash of (source, record id) paired with a 64-bit hash of the record's
values. Keys live in sorted runs (raw little-endian uint64 files, memory-mapped, probed with
Arrow's vectorised ``search_sorted``), each with a blocked Bloom filter in front (one 64-bit
word per key, four bits set), so a new key costs one memory read per run. Beside each run a
small fence file holds every ``FENCE_STEP``-th key (written with the run), so a lookup reads
one page of the keys per probe and opening a run touches none of them; a run without a
readable fence (an index written before it, a fence of another format) still works: its
fence is built from the keys on first use and written for the next open. A newer run's value
for a key wins (a correction). Small runs are merged, so lookups touch few runs.

Guarantees: the index is derived from the ledger (the store's committed batches): its manifest
names the last batch it holds (``watermark``) and the caller replays later batches into it, so
a crash between the ledger's commit and the index update loses nothing. The manifest is
replaced atomically (write, fsync, rename); files are 0600 in a 0700 folder.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from quote2cash.usage.duck import connection

HASH_PROBE: Final = "q2c-usage-key-probe"
"""Hashed at open: if DuckDB's ``hash`` changed (an upgrade), the index is rebuilt from the
ledger."""
BITS_PER_KEY: Final = 10
FENCE_STEP: Final = 512
"""Keys per block of a run's fence: one page of 4 KiB."""
FENCE_MAGIC: Final = b"q2cfence"
FENCE_VERSION: Final = 1
_FENCE_HEADER: Final = 32
"""A fence file: magic, then version, step and run key count as little-endian uint64, then
the fence keys as little-endian uint64."""
RUN_FILES: Final = ("keys", "vals", "bloom", "fence")
MAX_RUNS: Final = 6
_U64 = pa.uint64()


def _u(value: int) -> pa.Scalar:
    return pa.scalar(value, _U64)


def arange(count: int) -> pa.Array:
    """0, 1, ... count - 1 as int64, without a Python loop."""
    if count == 0:
        return pa.array([], pa.int64())
    return pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), count)), 1)


def hash_check() -> int:
    con = connection()
    try:
        return int(con.execute(f"SELECT hash('{HASH_PROBE}')").fetchall()[0][0])
    finally:
        con.close()


def bloom_words(count: int) -> int:
    """Words (a power of two) giving about ``BITS_PER_KEY`` bits per key."""
    words = 64
    while words * 64 < count * BITS_PER_KEY:
        words *= 2
    return words


def bloom_probe(keys: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Per key: its high bits (the word, once masked to a filter's size) and four-bit mask."""
    mask: Any = None
    for i in range(4):
        bit = pc.shift_left(_u(1), pc.bit_wise_and(pc.shift_right(keys, _u(6 * i)), _u(63)))
        mask = bit if mask is None else pc.bit_wise_or(mask, bit)
    return pc.shift_right(keys, _u(24)), mask


def _write_private(path: Path, data: bytes | memoryview | pa.Buffer) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def fence_of(keys: pa.Array) -> pa.Array:
    """Every ``FENCE_STEP``-th key of a sorted run (from the first)."""
    return pc.take(keys, pc.multiply(arange(-(-len(keys) // FENCE_STEP)), FENCE_STEP))


def _fence_header(count: int) -> bytes:
    return FENCE_MAGIC + b"".join(
        n.to_bytes(8, "little") for n in (FENCE_VERSION, FENCE_STEP, count)
    )


def _fence_bytes(fence: pa.Array, count: int) -> bytes:
    body: pa.Buffer = fence.buffers()[1][fence.offset * 8 : (fence.offset + len(fence)) * 8]
    return _fence_header(count) + bytes(memoryview(body))


def _read_fence(path: Path, count: int) -> pa.Array | None:
    """The fence stored at ``path`` for a run of ``count`` keys, or none when it is absent
    or not of this format, step and run."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    blocks = -(-count // FENCE_STEP)
    if data[:_FENCE_HEADER] != _fence_header(count) or len(data) != _FENCE_HEADER + blocks * 8:
        return None
    return pa.Array.from_buffers(_U64, blocks, [None, pa.py_buffer(data)[_FENCE_HEADER:]])


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _build_bloom(keys: pa.Array) -> pa.Array:
    """A dense uint64 word array with each key's four bits set (built by DuckDB's bit_or)."""
    words = bloom_words(len(keys))
    high, mask = bloom_probe(keys)
    index = pc.bit_wise_and(high, _u(words - 1))
    con = connection()
    try:
        slots = pa.table({"i": index, "m": mask})
        con.register("slots", slots)
        table = con.sql(
            f"SELECT coalesce(w.m, 0::UBIGINT) AS w FROM range({words}) r(i) "
            "LEFT JOIN (SELECT i, bit_or(m) AS m FROM slots GROUP BY i) w ON w.i = r.i "
            "ORDER BY r.i"
        ).to_arrow_table()
    finally:
        con.close()
    return table.column("w").combine_chunks().cast(_U64)


@dataclass
class Run:
    """One sorted run: keys, values and its Bloom filter, memory-mapped read-only; its fence
    (every ``FENCE_STEP``-th key) in memory, read from the run's fence file, or built from the
    keys on the first lookup (and then written) when that file is absent or unreadable."""

    name: str
    count: int
    keys: pa.Array
    values: pa.Array
    bloom: pa.Array
    _maps: tuple[mmap.mmap, ...]
    _fence: pa.Array | None = None
    fence_path: Path | None = None

    def close(self) -> None:
        for m in self._maps:
            with contextlib.suppress(BufferError):  # an Arrow view still holds it
                m.close()

    def lookup(self, keys: pa.Array, high: pa.Array, mask: pa.Array) -> tuple[pa.Array, pa.Array]:
        """(positions in ``keys`` found in this run, their values); see ``bloom_probe``."""
        index = pc.bit_wise_and(high, _u(len(self.bloom) - 1))
        hit = pc.equal(pc.bit_wise_and(pc.take(self.bloom, index), mask), mask)
        candidates = pc.indices_nonzero(hit)
        if len(candidates) == 0:
            return candidates, pa.array([], _U64)
        probe = pc.take(keys, candidates)
        at = self._position(probe)
        same = pc.equal(pc.take(self.keys, at), probe)
        found = pc.indices_nonzero(same)
        return pc.take(candidates, found), pc.take(self.values, pc.take(at, found))

    def _position(self, probe: pa.Array) -> pa.Array:
        """Per probe, the position of the last key at or before it (0 when none is): the
        fence, in memory, names its block of ``FENCE_STEP`` keys, searched step by step, so
        a probe reads one page of the memory-mapped keys instead of one per halving."""
        if self._fence is None:
            self._fence = fence_of(self.keys)
            if self.fence_path is not None:
                _write_fence(self.fence_path, self._fence, self.count)
        block = pc.subtract(
            pc.cast(pc.search_sorted(self._fence, probe, side="right"), pa.int64()), 1
        )
        low = pc.multiply(pc.max_element_wise(block, 0), FENCE_STEP)
        high = pc.min_element_wise(pc.add(low, FENCE_STEP), self.count)
        # invariant: keys[low] <= probe (or low is the block's start), probe < keys[high]
        while True:
            width = pc.subtract(high, low)
            if pc.max(width).as_py() <= 1:
                return low
            middle = pc.add(low, pc.divide(width, 2))
            right = pc.less_equal(
                pc.take(self.keys, pc.min_element_wise(middle, self.count - 1)), probe
            )
            low = pc.if_else(right, middle, low)
            high = pc.if_else(right, high, middle)


def _write_fence(path: Path, fence: pa.Array, count: int) -> None:
    """Write a run's fence file (atomically: its content is a function of the run's keys,
    so a concurrent writer of the same file writes the same bytes); best effort for a run
    built before fence files, as the fence can always be rebuilt from the keys."""
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        _write_private(tmp, _fence_bytes(fence, count))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def _map_array(path: Path, count: int) -> tuple[pa.Array, mmap.mmap]:
    with open(path, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    buffer = pa.py_buffer(mapped)
    return pa.Array.from_buffers(_U64, count, [None, buffer]), mapped


class KeyIndex:
    """Sorted runs of (key hash, value hash) with Bloom filters; one writer at a time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        self.manifest_path = folder / "manifest.json"
        self.runs: list[Run] = []
        self.watermark = 0
        self._load()

    # --- manifest ------------------------------------------------------------------------

    def _load(self) -> None:
        if not self.manifest_path.exists():
            self._save([], 0)
        manifest = json.loads(self.manifest_path.read_text())
        if manifest.get("hash_check") != hash_check():
            self._save([], 0)
            manifest = json.loads(self.manifest_path.read_text())
        self.watermark = int(manifest["watermark"])
        self.runs = [self._open_run(r["name"], int(r["count"])) for r in manifest["runs"]]

    def _save(self, runs: list[dict[str, Any]], watermark: int) -> None:
        body = {"hash_check": hash_check(), "watermark": watermark, "runs": runs}
        tmp = self.folder / f"manifest.{uuid.uuid4().hex}.tmp"
        _write_private(tmp, json.dumps(body).encode())
        os.replace(tmp, self.manifest_path)
        _fsync_dir(self.folder)

    def _open_run(self, name: str, count: int) -> Run:
        keys, m1 = _map_array(self.folder / f"{name}.keys", count)
        values, m2 = _map_array(self.folder / f"{name}.vals", count)
        words = (self.folder / f"{name}.bloom").stat().st_size // 8
        bloom, m3 = _map_array(self.folder / f"{name}.bloom", words)
        fence_path = self.folder / f"{name}.fence"
        fence = _read_fence(fence_path, count)
        return Run(name, count, keys, values, bloom, (m1, m2, m3), fence, fence_path)

    def close(self) -> None:
        for run in self.runs:
            run.close()
        self.runs = []

    @property
    def size(self) -> int:
        return sum(r.count for r in self.runs)

    # --- reads ---------------------------------------------------------------------------

    def lookup(self, keys: pa.Array) -> pa.Array:
        """The stored value hash of each key, or null where the key was never accepted."""
        keys = keys.cast(_U64)
        if not self.runs or len(keys) == 0:
            return pa.nulls(len(keys), _U64)
        high, mask = bloom_probe(keys)
        result = None  # the newest run's value wins
        for run in reversed(self.runs):
            positions, values = run.lookup(keys, high, mask)
            if len(positions):
                found = pc.scatter(values, positions.cast(pa.int64()), max_index=len(keys) - 1)
                result = found if result is None else pc.coalesce(result, found)
        return result if result is not None else pa.nulls(len(keys), _U64)

    # --- writes --------------------------------------------------------------------------

    def add(self, keys: pa.Array, values: pa.Array, watermark: int) -> None:
        """Add a run of (key, value) pairs (a key twice: the last wins), up to ``watermark``."""
        if watermark <= self.watermark and len(keys) == 0:
            return
        runs = [{"name": r.name, "count": r.count} for r in self.runs]
        if len(keys):
            run = self._write_run(keys.cast(_U64), values.cast(_U64), newest_last=True)
            runs.append(run)
        self._save(runs, max(watermark, self.watermark))
        self.close()
        self._load()
        if len(self.runs) > MAX_RUNS:
            self.compact()

    def add_sorted(self, keys: pa.Array, values: pa.Array, watermark: int) -> None:
        """Add a run already sorted by key with unique keys (a bulk load; nothing re-sorted)."""
        runs = [{"name": r.name, "count": r.count} for r in self.runs]
        runs.append(self._write_files(keys.cast(_U64), values.cast(_U64)))
        self._save(runs, max(watermark, self.watermark))
        self.close()
        self._load()

    def _write_run(self, keys: pa.Array, values: pa.Array, *, newest_last: bool) -> dict[str, Any]:
        """Sort, keep one value per key (the last given when ``newest_last``), write the files."""
        order_col = arange(len(keys))
        table = pa.table({"k": keys, "v": values, "o": order_col})
        direction = "descending" if newest_last else "ascending"
        table = table.sort_by([("k", "ascending"), ("o", direction)])
        k = table.column("k").combine_chunks()
        if len(k) > 1:
            first = pc.not_equal(k.slice(1), k.slice(0, len(k) - 1))
            keep = pa.concat_arrays([pa.array([True]), first])
            table = table.filter(keep)
        k = table.column("k").combine_chunks().cast(_U64)
        v = table.column("v").combine_chunks().cast(_U64)
        return self._write_files(k, v)

    def _write_files(self, k: pa.Array, v: pa.Array) -> dict[str, Any]:
        name = f"run-{uuid.uuid4().hex}"
        _write_private(
            self.folder / f"{name}.keys", k.buffers()[1][k.offset * 8 : (k.offset + len(k)) * 8]
        )
        _write_private(
            self.folder / f"{name}.vals", v.buffers()[1][v.offset * 8 : (v.offset + len(v)) * 8]
        )
        bloom = _build_bloom(k)
        _write_private(self.folder / f"{name}.bloom", bloom.buffers()[1][: len(bloom) * 8])
        _write_private(self.folder / f"{name}.fence", _fence_bytes(fence_of(k), len(k)))
        _fsync_dir(self.folder)
        return {"name": name, "count": len(k)}

    def compact(self) -> None:
        """Merge the newest runs while a run is at most four times the size of those after it."""
        if len(self.runs) < 2:
            return
        take = [self.runs[-1]]
        total = self.runs[-1].count
        for run in reversed(self.runs[:-1]):
            if run.count > 4 * total and len(self.runs) - len(take) <= MAX_RUNS // 2:
                break
            take.insert(0, run)
            total += run.count
        if len(take) < 2:
            return
        keys = pa.concat_arrays([r.keys for r in take])
        values = pa.concat_arrays([r.values for r in take])
        merged = self._write_run(keys, values, newest_last=True)
        kept = [{"name": r.name, "count": r.count} for r in self.runs[: len(self.runs) - len(take)]]
        old = [r.name for r in take]
        self._save([*kept, merged], self.watermark)
        self.close()
        for name in old:
            for ext in RUN_FILES:
                (self.folder / f"{name}.{ext}").unlink(missing_ok=True)
        self._load()

    def reset(self) -> None:
        """Forget everything (the caller replays the ledger into it)."""
        names = [r.name for r in self.runs]
        self._save([], 0)
        self.close()
        for name in names:
            for ext in RUN_FILES:
                (self.folder / f"{name}.{ext}").unlink(missing_ok=True)
        self._load()
