"""Parquet text columns stored as dictionaries are read as dictionaries and decoded once: the
chunks hold the same text as the reader's own decoding gives."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from quote2cash.usage import reading
from quote2cash.usage.reading import file_chunks


def _dense(path: Path, chunk_rows: int) -> list[dict[str, object]]:
    line, rows = 1, []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
        table = reading._normalised(pa.Table.from_batches([batch]), line)
        line += table.num_rows
        rows += table.to_pylist()
    return rows


def test_dictionary_columns_read_as_the_same_text(tmp_path: Path) -> None:
    n = 5000
    table = pa.table(
        {
            "record_id": [f"r{i}" for i in range(n)],  # unique: stored plain
            "subscription": [None if i % 97 == 0 else f"C-{i % 13}" for i in range(n)],
            "meter": pa.array(["api_calls" if i < n // 2 else "seats" for i in range(n)]),
            "quantity": pa.array([str(i % 10) for i in range(n)], pa.large_string()),
            "value_int": pa.array([i % 5 for i in range(n)], pa.int64()),
            "timestamp": ["2026-03-20T10:00:00Z"] * n,
            "raw": pa.array([b"x"] * n, pa.binary()),
        }
    )
    path = tmp_path / "u.parquet"
    # row groups with dictionaries of their own (the meter changes halfway)
    pq.write_table(table, path, row_group_size=1000, use_dictionary=True)
    coded = reading._dictionary_columns(pq.ParquetFile(path))
    assert {"subscription", "meter", "quantity", "timestamp"} <= set(coded)
    assert "value_int" not in coded and "raw" not in coded
    for chunk_rows in (700, 1000, 2500, n):
        chunks = list(file_chunks(path, chunk_rows))
        assert all(c.num_rows <= chunk_rows for c in chunks)
        assert all(c.schema == chunks[0].schema for c in chunks)
        assert pa.concat_tables(chunks).to_pylist() == _dense(path, chunk_rows)


def test_a_file_written_without_dictionaries_reads_as_before(tmp_path: Path) -> None:
    table = pa.table({"id": ["a", "b", None], "meter": ["m", "m", "m"]})
    path = tmp_path / "plain.parquet"
    pq.write_table(table, path, use_dictionary=False)
    assert reading._dictionary_columns(pq.ParquetFile(path)) == []
    assert pa.concat_tables(file_chunks(path, 2)).to_pylist() == _dense(path, 2)
