"""Reading the next chunk of a usage file in a thread while the current one is checked."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from quote2cash.usage.reading import file_chunks, prefetched


def _numbers(
    count: int, fail_at: int | None = None, log: list[int] | None = None
) -> Iterator[pa.Table]:
    for i in range(count):
        if i == fail_at:
            raise ValueError(f"unreadable chunk {i}")
        if log is not None:
            log.append(i)
        yield pa.table({"n": [i]})


def test_prefetched_gives_every_chunk_in_order() -> None:
    assert [t.column("n")[0].as_py() for t in prefetched(_numbers(50))] == list(range(50))


def test_a_read_error_is_raised_after_the_chunks_before_it() -> None:
    seen: list[int] = []
    with pytest.raises(ValueError, match="unreadable chunk 3"):
        for table in prefetched(_numbers(10, fail_at=3)):
            seen.append(table.column("n")[0].as_py())
    assert seen == [0, 1, 2]


def test_stopping_early_stops_the_reader() -> None:
    read: list[int] = []
    before = threading.active_count()
    chunks = prefetched(_numbers(1000, log=read))
    assert next(chunks).column("n")[0].as_py() == 0
    chunks.close()
    assert threading.active_count() == before
    assert len(read) <= 3  # at most one chunk waited ahead and one was being read


def test_a_csv_file_reads_the_same_prefetched(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    lines = ["id,subscription,meter,quantity,unit,timestamp"]
    lines += [f"r{i},C-1,api_calls,{i},call,2026-03-20T10:00:00Z" for i in range(5000)]
    path.write_text("\n".join(lines) + "\n")
    plain = pa.concat_tables(file_chunks(path, 1000))
    ahead = pa.concat_tables(prefetched(file_chunks(path, 1000)))
    assert ahead.equals(plain)
    assert ahead.num_rows == 5000
