"""Usage files and API bodies as chunks of text columns, streamed so memory stays flat in size.

Every chunk is an Arrow table with the columns of ``FIELDS`` (text, null where absent) and
``line`` (the record's position in its file, from 1). A row that cannot be read as a record
(bad JSON, a CSV row the parser rejects) is kept as a row with ``malformed`` set, never dropped.
"""

from __future__ import annotations

import itertools
import json
import queue
import re
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
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
    none = pa.nulls(table.num_rows, pa.string())  # one array for every absent field
    for name in FIELDS:
        if name in table.column_names:
            column = table.column(name)
            if pa.types.is_timestamp(column.type):
                column = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.string())
            out[name] = column.cast(pa.string())
        else:
            out[name] = none
    out["line"] = pc.add(arange(table.num_rows), first_line)
    out["malformed"] = none
    return pa.table(out)


_SCAN_BYTES: Final = 4 << 20
_ARROW_BLOCK = 4 << 20
_PLAIN_LINE: Final = 1 << 20
"""The longest line of a plain CSV file (DuckDB's reader rejects lines over 2 MiB, Arrow's not)."""
_PLAIN_NAME: Final = re.compile(rb"[A-Za-z0-9_]+")
_NOT_PLAIN: Final = (b'"', b"'", b"\\", b"#", b"\r", b"\0", b"\t", b";", b"|")
"""Bytes whose presence anywhere sends a CSV file to DuckDB's reader: the quotes, escapes and
comment mark DuckDB's sniffer tries (its quoting rules decide them), carriage returns, NUL,
the other delimiters it tries (tab, semicolon, pipe). Both readers skip empty lines."""


def _plain_csv_header(path: Path) -> list[str] | None:
    """The column names of a CSV file that DuckDB's reader and Arrow's read alike, or none.

    Plain: ASCII only, none of ``_NOT_PLAIN``, no line over ``_PLAIN_LINE``, a header of two or more
    distinct names (letters, digits, underscores; case aside). In such a file every line is a
    record, every comma a delimiter and every empty field a null for both readers (DuckDB's
    sniffer finds no candidate delimiter but the comma, and no quote to decide on); a row with
    the wrong number of fields is the only kind either rejects. Scanned in blocks (fast byte
    searches, ~0.02 s per 50 MB) before the first chunk is read."""
    with open(path, "rb") as handle:
        header = handle.readline()
        if not header.endswith(b"\n") or not header.isascii():
            return None
        names = header[:-1].split(b",")
        if len(names) < 2 or not all(_PLAIN_NAME.fullmatch(n) for n in names):
            return None
        if len({n.lower() for n in names}) != len(names):
            return None
        buffer, line = bytearray(_SCAN_BYTES), 0  # the open line's length
        while size := handle.readinto(buffer):
            block = buffer if size == len(buffer) else buffer[:size]
            if not block.isascii() or any(block.find(mark) >= 0 for mark in _NOT_PLAIN):
                return None
            at = 0  # no line longer than _PLAIN_LINE: the last newline of each window
            while True:
                end = at + _PLAIN_LINE - line + 1
                newline = block.rfind(b"\n", at, end)
                if newline < 0:
                    if end < size:
                        return None
                    line += size - at
                    break
                at, line = newline + 1, 0
    return [n.decode("ascii") for n in names]


def _csv_chunks(path: Path, chunk_rows: int) -> Iterator[pa.Table]:
    """Plain files (``_plain_csv_header``) by Arrow's CSV reader, multithreaded; any other by
    DuckDB's. Both give the same chunks: the valid rows in order (``line`` counting them from
    2), then DuckDB's rejected rows with its reasons."""
    names = _plain_csv_header(path)
    if names is None:
        return _duckdb_csv_chunks(path, chunk_rows)
    return _arrow_csv_chunks(path, chunk_rows, names)


def _arrow_csv_chunks(path: Path, chunk_rows: int, names: list[str]) -> Iterator[pa.Table]:
    """A plain file's chunks by Arrow's reader, until a row of the wrong width: DuckDB's
    reader gives the rest (it rejects such a row, or takes it when its extra fields are empty),
    from the first record not yet handed out. Arrow calls ``invalid`` while it parses the
    batch holding such a row, before that batch is handed out, so every record handed out
    before is of the header's width, read alike by both."""
    odd: list[int] = []

    def invalid(row: Any) -> str:
        odd.append(1)
        return "skip"

    reader = pa_csv.open_csv(
        path,
        read_options=pa_csv.ReadOptions(
            column_names=names, skip_rows=1, block_size=_ARROW_BLOCK, use_threads=True
        ),
        parse_options=pa_csv.ParseOptions(
            quote_char=False, double_quote=False, escape_char=False, invalid_row_handler=invalid
        ),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            null_values=[""],
            strings_can_be_null=True,
            check_utf8=False,
        ),
    )
    done = 0  # records handed out
    try:
        # whole chunks until the parsing of a batch meets a row of the wrong width
        for table in _sized(reader, chunk_rows, lambda: bool(odd)):
            yield _normalised(table, 2 + done)
            done += table.num_rows
    finally:
        reader.close()
    if odd:
        yield from _duckdb_csv_chunks(path, chunk_rows, skip=done, names=names)


def _sized(
    batches: Iterator[pa.RecordBatch], chunk_rows: int, stopped: Callable[[], bool] = lambda: False
) -> Iterator[pa.Table]:
    """``batches`` gathered and cut into tables of exactly ``chunk_rows`` rows, the last one
    shorter: the chunks the Arrow and Parquet readers hand out. Once ``stopped()`` (asked as
    each batch arrives and at the end), nothing more is handed out, not even a last part."""
    waiting: list[pa.RecordBatch] = []
    rows = 0
    for batch in itertools.chain(batches, [None]):
        if stopped():
            return
        if batch is not None:
            waiting.append(batch)
            rows += batch.num_rows
        while rows >= chunk_rows or (batch is None and rows):
            table = pa.Table.from_batches(waiting)
            head, rest = table.slice(0, chunk_rows), table.slice(chunk_rows)
            yield head
            waiting, rows = rest.to_batches(), rest.num_rows


def _rejects(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return con.execute(
        "SELECT line, any_value(csv_line), min(error_message) FROM reject_errors "
        "GROUP BY line ORDER BY line"
    ).fetchall()


def _rejects_chunk(rejects: list[tuple[Any, ...]]) -> pa.Table:
    columns = _empty_columns()
    for number, text, message in rejects:
        for name in FIELDS:
            columns[name].append(None)
        columns["line"].append(int(number))
        columns["malformed"].append(f"CSV row not readable ({message}): {str(text)[:200]}")
    return _chunk(columns)


def _duckdb_csv_chunks(
    path: Path, chunk_rows: int, *, skip: int = 0, names: list[str] | None = None
) -> Iterator[pa.Table]:
    """The file's chunks by DuckDB's reader: the valid rows (``line`` counting them from 2),
    then the rejected rows with DuckDB's reasons. ``skip``: the first valid rows are left out
    (handed out already, by ``_arrow_csv_chunks``, read with the columns ``names``)."""
    con = connection()
    try:
        con.execute("SET threads TO 2")
        relation = con.sql(
            "SELECT * FROM read_csv($path, header = true, all_varchar = true, "
            "store_rejects = true, null_padding = false)",
            params={"path": str(path)},
        )
        if names is not None and relation.columns != names:  # not expected: a plain file
            raise UsageFileError(f"{path.name}: CSV columns read as {relation.columns}")
        reader = relation.to_arrow_reader(chunk_rows)
        assert reader is not None
        line = 2 + skip
        waiting: list[pa.RecordBatch] = []
        rows = 0
        for batch in itertools.chain(reader, [None]):
            if batch is not None and skip:
                left_out = min(skip, batch.num_rows)
                batch, skip = batch.slice(left_out), skip - left_out
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
        rejects = _rejects(con)
    finally:
        con.close()
    if rejects:
        yield _rejects_chunk(rejects)


def _dictionary_columns(file: pq.ParquetFile) -> list[str]:
    """The text columns stored dictionary-encoded in every row group: read as dictionaries
    and decoded once to text by ``_normalised``, which touches about half the fresh memory
    of the reader's own decoding (its text builders grow by reallocation; ~0.08 CPU-s less
    per million records, the same text)."""
    meta = file.metadata
    coded = []
    for i, field in enumerate(file.schema_arrow):
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        if meta.schema.column(i).path != field.name:  # not a top-level column
            continue
        groups = range(meta.num_row_groups)
        if groups and all(meta.row_group(g).column(i).has_dictionary_page for g in groups):
            coded.append(field.name)
    return coded


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[pa.Table]:
    file = pq.ParquetFile(path)
    coded = _dictionary_columns(file)
    if not coded:
        line = 1
        for batch in file.iter_batches(batch_size=chunk_rows):
            table = pa.Table.from_batches([batch])
            yield _normalised(table, line)
            line += table.num_rows
        return
    # dictionary batches end at row groups (each has its own dictionary): gathered up to
    # ``chunk_rows`` as before, the dictionaries unified, the indices put end to end
    file = pq.ParquetFile(path, metadata=file.metadata, read_dictionary=coded)
    line = 1
    for table in _sized(file.iter_batches(batch_size=chunk_rows), chunk_rows):
        yield _normalised(_contiguous(table), line)
        line += table.num_rows


def _contiguous(table: pa.Table) -> pa.Table:
    """Each column of ``table`` as one array; a dictionary column over one dictionary."""
    for i, field in enumerate(table.schema):
        column = table.column(i)
        if pa.types.is_dictionary(field.type):
            column = column.unify_dictionaries()
        if column.num_chunks != 1:
            table = table.set_column(i, field.name, column.combine_chunks())
    return table


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
