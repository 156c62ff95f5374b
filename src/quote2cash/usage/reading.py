"""Usage files and API bodies as chunks of text columns, streamed so memory stays flat in size.

Every chunk is an Arrow table with the columns of ``FIELDS`` (text, null where absent) and
``line`` (the record's position in its file, from 1). A row that cannot be read as a record
(bad JSON, a CSV row the parser rejects) is kept as a row with ``malformed`` set, never dropped.
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quote2cash.usage.duck import connection
from quote2cash.usage.keyindex import arange

FIELDS: Final = (
    "id",
    "subscription",
    "customer",
    "meter",
    "quantity",
    "unit",
    "timestamp",
    "properties",
    "correction",
)
FORMATS: Final = ("csv", "jsonl", "parquet")
_ALIASES: Final = {
    "record_id": "id",
    "subscription_id": "subscription",
    "contract": "subscription",
    "customer_id": "customer",
    "value": "quantity",
    "time": "timestamp",
}


class UsageFileError(ValueError):
    """A usage file that cannot be read at all (missing, unknown format, no id column)."""


def format_of(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("csv", "txt"):
        return "csv"
    if suffix in ("jsonl", "ndjson", "json"):
        return "jsonl"
    if suffix in ("parquet", "pq"):
        return "parquet"
    raise UsageFileError(f"{path.name}: unknown usage file format {suffix!r}: expected {FORMATS}")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _empty_columns() -> dict[str, list[Any]]:
    return {name: [] for name in (*FIELDS, "line", "malformed")}


def _strings(values: list[Any]) -> pa.Array:
    """Text as Arrow strings; a lone surrogate (valid JSON, not UTF-8) becomes U+FFFD."""
    try:
        return pa.array(values, pa.string())
    except UnicodeEncodeError:
        return pa.array(
            [None if v is None else v.encode("utf-8", "replace").decode("utf-8") for v in values],
            pa.string(),
        )


def _chunk(columns: Mapping[str, list[Any]]) -> pa.Table:
    arrays = {name: _strings(columns[name]) for name in FIELDS}
    arrays["line"] = pa.array(columns["line"], pa.int64())
    arrays["malformed"] = _strings(columns["malformed"])
    return pa.table(arrays)


def rows_chunk(rows: Sequence[Any], first_line: int = 1) -> pa.Table:
    """API records (JSON objects) as one chunk; a non-object row is a malformed row."""
    columns = _empty_columns()
    for offset, row in enumerate(rows):
        columns["line"].append(first_line + offset)
        if not isinstance(row, Mapping):
            for name in FIELDS:
                columns[name].append(None)
            columns["malformed"].append(f"expected a JSON object, got {type(row).__name__}")
            continue
        row = {_ALIASES.get(k, k): v for k, v in row.items()}
        for name in FIELDS:
            columns[name].append(_text(row.get(name)))
        columns["malformed"].append(None)
    return _chunk(columns)


def _jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[pa.Table]:
    columns = _empty_columns()
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                row: Any = json.loads(text)
                bad = None if isinstance(row, Mapping) else "expected a JSON object per line"
            except json.JSONDecodeError as exc:
                row, bad = {}, f"not JSON ({exc.msg} at column {exc.colno})"
            if bad is not None or not isinstance(row, Mapping):
                row = {}
            row = {_ALIASES.get(k, k): v for k, v in row.items()}
            for name in FIELDS:
                columns[name].append(_text(row.get(name)))
            columns["line"].append(number)
            columns["malformed"].append(bad)
            if len(columns["line"]) >= chunk_rows:
                yield _chunk(columns)
                columns = _empty_columns()
    if columns["line"]:
        yield _chunk(columns)


def _normalised(table: pa.Table, first_line: int) -> pa.Table:
    """Rename known aliases, add absent fields as nulls, make every field text."""
    names = [_ALIASES.get(n.lower(), n.lower()) for n in table.column_names]
    table = table.rename_columns(names)
    out: dict[str, pa.Array] = {}
    for name in FIELDS:
        if name in table.column_names:
            column = table.column(name)
            if pa.types.is_timestamp(column.type):
                column = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.string())
            out[name] = column.cast(pa.string())
        else:
            out[name] = pa.nulls(table.num_rows, pa.string())
    out["line"] = pc.add(arange(table.num_rows), first_line)
    out["malformed"] = pa.nulls(table.num_rows, pa.string())
    return pa.table(out)


def _csv_chunks(path: Path, chunk_rows: int) -> Iterator[pa.Table]:
    con = connection()
    try:
        con.execute("SET threads TO 2")
        reader = con.sql(
            "SELECT * FROM read_csv($path, header = true, all_varchar = true, "
            "store_rejects = true, null_padding = false)",
            params={"path": str(path)},
        ).to_arrow_reader(chunk_rows)
        assert reader is not None
        line = 2
        waiting: list[pa.RecordBatch] = []
        rows = 0
        for batch in itertools.chain(reader, [None]):
            if batch is not None and batch.num_rows == 0:
                continue
            # DuckDB hands out batches smaller than asked for: gathered up to ``chunk_rows``
            if waiting and (batch is None or rows + batch.num_rows > chunk_rows):
                table = pa.Table.from_batches(waiting)
                yield _normalised(table, line)
                line += table.num_rows
                waiting, rows = [], 0
            if batch is not None:
                waiting.append(batch)
                rows += batch.num_rows
        rejects = con.execute(
            "SELECT line, any_value(csv_line), min(error_message) FROM reject_errors "
            "GROUP BY line ORDER BY line"
        ).fetchall()
    finally:
        con.close()
    if rejects:
        columns = _empty_columns()
        for number, text, message in rejects:
            for name in FIELDS:
                columns[name].append(None)
            columns["line"].append(int(number))
            columns["malformed"].append(f"CSV row not readable ({message}): {str(text)[:200]}")
        yield _chunk(columns)


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[pa.Table]:
    line = 1
    for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
        table = pa.Table.from_batches([batch])
        yield _normalised(table, line)
        line += table.num_rows


def file_chunks(path: Path, chunk_rows: int, fmt: str | None = None) -> Iterator[pa.Table]:
    """The file's records in chunks of at most ``chunk_rows``."""
    if not path.is_file():
        raise UsageFileError(f"{path}: no such file")
    kind = fmt or format_of(path)
    if kind == "csv":
        return _csv_chunks(path, chunk_rows)
    if kind == "jsonl":
        return _jsonl_chunks(path, chunk_rows)
    if kind == "parquet":
        return _parquet_chunks(path, chunk_rows)
    raise UsageFileError(f"{path.name}: unknown format {kind!r}: expected one of {FORMATS}")


_DONE: Final = object()


def prefetched(chunks: Iterator[pa.Table]) -> Generator[pa.Table, None, None]:
    """The same chunks, the next one read in a thread while the caller works on the current
    one (reading a file chunk is Arrow and DuckDB work that releases the GIL, so the two run
    on two cores). At most one chunk waits ahead; an error while reading is raised here, at
    the chunk where it happened; stopping early stops the reader."""
    ahead: queue.Queue[object] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for chunk in chunks:
                if not offer(chunk):
                    break
        except BaseException as exc:  # handed to the consumer, raised there
            offer(exc)
            return
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        offer(_DONE)

    reader = threading.Thread(target=read, name="q2c-usage-read", daemon=True)
    reader.start()
    try:
        while True:
            item = ahead.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, pa.Table)
            yield item
    finally:
        stop.set()
        reader.join()
