"""CSV files read by Arrow's reader when plain, by DuckDB's otherwise: the same chunks either way.

DuckDB's reader (``_duckdb_csv_chunks``) is the definition: its sniffer, null, quoting and
reject rules. A plain file (``_plain_csv_header``) goes to Arrow's multithreaded reader, which
must give the same records, nulls, line numbers and rejected rows with DuckDB's reasons."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from quote2cash.usage import reading
from quote2cash.usage.reading import file_chunks
from support.usage_files import RAGGED_CSV

HEADER = "id,subscription,meter,quantity,unit,timestamp"
CASES = 40


def _whole(chunks: list[pa.Table]) -> list[dict[str, object]]:
    return pa.concat_tables(chunks).to_pylist() if chunks else []


def _same_as_duckdb(path: Path, chunk_rows: int) -> list[pa.Table]:
    mine = list(file_chunks(path, chunk_rows))
    theirs = list(reading._duckdb_csv_chunks(path, chunk_rows))
    assert _whole(mine) == _whole(theirs)
    records = [c for c in mine if c.column("malformed").null_count == c.num_rows]
    assert all(c.num_rows <= chunk_rows for c in records)  # the rejected rows come as one
    return mine


def test_a_plain_file_is_read_by_arrow_as_duckdb_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    lines = [HEADER]
    lines += [f"r{i},C-{i % 7},api_calls,{i},call,2026-03-20T10:00:00Z" for i in range(2500)]
    lines[10] = "r9b,, api_calls ,,call ,2026-03-20T10:00:00Z"  # empty fields, spaces
    lines[20] = ""  # an empty line: skipped by both
    path.write_text("\n".join(lines) + "\n")
    assert reading._plain_csv_header(path) == HEADER.split(",")
    chunks = _same_as_duckdb(path, 1000)
    assert [c.num_rows for c in chunks] == [1000, 1000, 499]
    rows = _whole(chunks)
    assert rows[9]["id"] == "r9b" and rows[9]["subscription"] is None
    assert rows[9]["meter"] == " api_calls " and rows[9]["unit"] == "call "
    assert [r["line"] for r in rows] == list(range(2, 2501))
    assert all(r["malformed"] is None for r in rows)


def test_rows_of_the_wrong_width_in_a_plain_file_get_duckdbs_reasons(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text(RAGGED_CSV)
    assert reading._plain_csv_header(path) is not None
    rows = _whole(_same_as_duckdb(path, 2))
    assert [r["id"] for r in rows] == ["a", "d", None, None]
    assert [r["line"] for r in rows] == [2, 3, 3, 4]
    assert "Expected Number of Columns" in rows[2]["malformed"]
    assert "b,C-1,api_calls" in rows[2]["malformed"]


@pytest.mark.parametrize(
    "text",
    [
        HEADER + '\n"a",C-1,api_calls,1,call,2026-03-20T10:00:00Z\n',  # a quote
        HEADER + "\n'a,b',C-1,api_calls,1,call,2026-03-20T10:00:00Z\n",  # a quote DuckDB tries
        HEADER + "\n#a,C-1,api_calls,1,call,2026-03-20T10:00:00Z\n",  # a comment DuckDB tries
        HEADER + "\na,C-1,api_calls,1,call,2026\\-03-20\n",  # an escape
        HEADER + "\r\na,C-1,api_calls,1,call,2026-03-20T10:00:00Z\r\n",  # CRLF
        HEADER + "\na\tb,C-1,api_calls,1,call,x\n",  # a tab (a delimiter DuckDB tries)
        HEADER + "\na;b,C-1,api_calls,1,call,x\n",
        HEADER + "\na|b,C-1,api_calls,1,call,x\n",
        HEADER + "\nä,C-1,api_calls,1,call,x\n",  # not ASCII
        HEADER + "\na,C-1,api_calls,1,call,x\x00\n",
        "id,sub scription,meter\na,b,c\n",  # a header name DuckDB would trim
        "id,ID,meter\na,b,c\n",  # names equal but for case
        "id\na\n",  # one column
        HEADER,  # no line after the header
        HEADER + "\na," + "x" * (reading._PLAIN_LINE + 10) + ",c,1,call,x\n",  # a long line
    ],
)
def test_anything_else_is_read_by_duckdb(tmp_path: Path, text: str) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(text.encode("utf-8"))
    assert reading._plain_csv_header(path) is None
    _same_as_duckdb(path, 3)


def test_a_long_line_split_over_scan_blocks_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reading, "_SCAN_BYTES", 64)
    monkeypatch.setattr(reading, "_PLAIN_LINE", 100)
    path = tmp_path / "long.csv"
    short = "a,C-1,api_calls,1,call,2026-03-20T10:00:00Z"
    path.write_text("\n".join([HEADER, short, short + "x" * 50, short]) + "\n")
    assert reading._plain_csv_header(path) is not None
    path.write_text("\n".join([HEADER, short, short + "x" * 60, short]) + "\n")
    assert reading._plain_csv_header(path) is None


def test_random_plain_files_read_the_same(tmp_path: Path) -> None:
    rng = random.Random(16)
    alphabet = "abcXYZ019 -_:.+/=@!?()[]{}<>~`%&*$^"
    for case in range(CASES):
        columns = rng.randint(2, 6)
        lines = [",".join(f"c{k}" for k in range(columns))]
        for _ in range(rng.randint(0, 300)):
            width = columns if rng.random() < 0.95 else rng.randint(1, columns + 2)
            fields = [
                "".join(rng.choice(alphabet) for _ in range(rng.choice((0, 0, 1, 3, 8))))
                for _ in range(width)
            ]
            lines.append(",".join(fields) if rng.random() < 0.97 else "")
        path = tmp_path / f"r{case}.csv"
        path.write_text("\n".join(lines) + ("\n" if rng.random() < 0.8 else ""))
        assert reading._plain_csv_header(path) is not None
        _same_as_duckdb(path, rng.choice((1, 7, 100, 1000)))


def test_a_wrong_width_far_into_a_file_hands_over_to_duckdb_where_arrow_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reading, "_ARROW_BLOCK", 1 << 16)  # many blocks, read one by one
    duckdb_chunks = reading._duckdb_csv_chunks
    skipped: list[int] = []

    def recorded(path: Path, chunk_rows: int, **kwargs: Any) -> Iterator[pa.Table]:
        skipped.append(kwargs.get("skip", 0))
        return duckdb_chunks(path, chunk_rows, **kwargs)

    monkeypatch.setattr(reading, "_duckdb_csv_chunks", recorded)
    path = tmp_path / "late.csv"
    lines = [HEADER]
    lines += [f"r{i},C-{i % 7},api_calls,{i},call,2026-03-20T10:00:00Z" for i in range(50_000)]
    lines[30_001] = "odd,C-1,api_calls,1,call,2026-03-20T10:00:00Z,extra"
    lines[40_001] = "wide,C-1,api_calls,1,call,2026-03-20T10:00:00Z,,"  # extra fields empty
    path.write_text("\n".join(lines) + "\n")
    assert reading._plain_csv_header(path) is not None
    chunks = _same_as_duckdb(path, 1000)
    assert skipped[0] >= 20_000 and skipped[0] % 1000 == 0  # Arrow's records, then DuckDB's
    assert skipped[1:] == [0]  # the whole file by DuckDB, as the test compares
    rows = _whole(chunks)
    assert len(rows) == 50_000
    assert [r["id"] for r in rows[:3]] == ["r0", "r1", "r2"]
    assert rows[40_000 - 1]["id"] == "wide"  # DuckDB takes it, as it always did
    assert rows[-1]["id"] is None and "Expected Number of Columns" in rows[-1]["malformed"]
    assert [r["line"] for r in rows[:-1]] == list(range(2, 50_001))
