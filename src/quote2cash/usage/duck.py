"""DuckDB connections for usage work: in memory, two threads, UTC, and never a progress bar
(it would write to stdout, into a command's JSON)."""

from __future__ import annotations

import duckdb


def connection() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute("SET threads TO 2")
    con.execute("SET TimeZone = 'UTC'")
    return con
