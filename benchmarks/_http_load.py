"""A cheap open-loop HTTP/1.1 load generator: raw asyncio protocols on kept-alive connections.

Why: on a 2-core machine the load generator shares the cores with the server it measures. The
aiohttp client costs several times the server's own CPU per request (its session, request and
response objects, a task per request), so at 1,000 requests/s it takes most of a core away from
the server and its own scheduling delays show up as the server's latency. This one writes a
prebuilt request line per request on a connection that is idle (or, when every connection is
busy, pipelines it on the least loaded one: HTTP/1.1 answers in order) and parses only the
status line and Content-Length of each answer.

Latency counts from each request's planned instant (request i at t0 + i/R), so a slow server or
a late client is never hidden (no coordinated omission). An answer later than ``timeout`` after
its planned instant, or none by then, is an error ``TimeoutError``, as the aiohttp client's total
timeout counted it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

CONNECTIONS = 64
START_S = 0.5
"""The first seconds of a window, reported apart (``start_p99_ms``)."""


class _Connection(asyncio.Protocol):
    """One kept-alive connection; ``waiting`` holds the planned instants of its requests in the
    order they were written, which is the order HTTP/1.1 answers them."""

    def __init__(self, answered: Callable[[_Connection, float, bytes], None]) -> None:
        self.answered = answered
        self.waiting: deque[float] = deque()
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            length = 0
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop > 0 else len(head)])
            total = end + 4 + length
            if len(buffer) < total:
                return
            status = bytes(head[9:12])
            del buffer[:total]
            self.answered(self, self.waiting.popleft(), status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.waiting:
            self.answered(self, self.waiting.popleft(), b"lost")


async def open_loop_raw(
    base: str,
    headers: dict[str, str],
    paths: list[str],
    rate: int,
    seconds: float,
    *,
    connections: int = CONNECTIONS,
    timeout: float = 2.0,  # noqa: ASYNC109 - the answer deadline counted, not a cancel
    seed: int = 11,
) -> dict[str, Any]:
    """Send ``rate`` GET requests/s for ``seconds`` (paths drawn from ``paths``); the figures:
    p50/p99/p99.9/max from each planned instant, errors by status, the client's own CPU."""
    loop = asyncio.get_running_loop()
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    tail = f" HTTP/1.1\r\nHost: {host}:{port}\r\n{lines}\r\n".encode()
    requests = [b"GET " + quote(p, safe="/").encode() + tail for p in paths]
    latencies: list[float] = []
    planned_at: list[float] = []  # each latency's planned instant
    errors: dict[str, int] = {}
    idle: list[_Connection] = []
    busy: list[_Connection] = []
    outstanding = 0
    finished = loop.create_future()

    def answered(conn: _Connection, planned: float, status: bytes) -> None:
        nonlocal outstanding
        latency = time.perf_counter() - planned
        latencies.append(latency * 1000)
        planned_at.append(planned)
        if status != b"200" or latency > timeout:
            name = "TimeoutError" if latency > timeout else status.decode("ascii", "replace")
            errors[name] = errors.get(name, 0) + 1
        outstanding -= 1
        if not conn.waiting and not conn.lost:
            busy.remove(conn)
            idle.append(conn)
        if outstanding == 0 and sending_done and not finished.done():
            finished.set_result(None)

    for _ in range(connections):
        _, conn = await loop.create_connection(lambda: _Connection(answered), host, port)
        idle.append(conn)
    rng = random.Random(seed)
    total = int(rate * seconds)
    chosen = [requests[rng.randrange(len(requests))] for _ in range(total)]
    sending_done = False
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter() + 0.05
    i = 0
    pipelined = 0
    while i < total:
        now = time.perf_counter()
        while i < total and t0 + i / rate <= now:
            if idle:
                conn = idle.pop()
                busy.append(conn)
            else:
                live = [c for c in busy if not c.lost]
                if not live:
                    raise ConnectionError("every connection to the server was lost")
                conn = min(live, key=lambda c: len(c.waiting))
                pipelined += 1
            assert conn.transport is not None
            conn.waiting.append(t0 + i / rate)
            conn.transport.write(chosen[i])
            outstanding += 1
            i += 1
        if i < total:
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
    sent_s = time.perf_counter() - t0
    sending_done = True
    if outstanding:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished, timeout + 0.5)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    unanswered = 0
    now = time.perf_counter()
    for conn in idle + busy:
        for planned in conn.waiting:
            latencies.append((now - planned) * 1000)
            planned_at.append(planned)
            unanswered += 1
        conn.waiting.clear()  # counted here, not again when the closed connection reports
        conn.answered = lambda *_: None
        if conn.transport is not None:
            conn.transport.close()
    if unanswered:
        errors["TimeoutError"] = errors.get("TimeoutError", 0) + unanswered
    cuts = statistics.quantiles(latencies, n=1000)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "requests": total,
        "rate": rate,
        "achieved_rps": round(total / sent_s, 1),
        "ok_rps": round((total - sum(errors.values())) / sent_s, 1),
        "p50_ms": round(cuts[499], 2),
        "p99_ms": round(cuts[989], 2),
        "p999_ms": round(cuts[998], 2),
        "max_ms": round(max(latencies), 2),
        **_start_and_rest(latencies, planned_at, t0),
        "errors": dict(errors),
        "client": "raw",
        "client_connections": connections,
        "client_pipelined": pipelined,
        "client_cpu_ms_per_request": round(cpu * 1000 / total, 3),
    }


def _start_and_rest(latencies: list[float], planned_at: list[float], t0: float) -> dict[str, Any]:
    """p99 of the requests planned in the window's first ``START_S`` seconds and of the rest: a
    freshly started server's (or worker's) start-up tail apart from the steady state's."""
    start = [lat for lat, at in zip(latencies, planned_at, strict=True) if at < t0 + START_S]
    rest = [lat for lat, at in zip(latencies, planned_at, strict=True) if at >= t0 + START_S]

    def p99(values: list[float]) -> float | None:
        return round(statistics.quantiles(values, n=100)[98], 2) if len(values) > 1 else None

    return {"start_p99_ms": p99(start), "rest_p99_ms": p99(rest)}
