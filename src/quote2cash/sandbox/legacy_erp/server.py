"""The legacy ERP process: the SOAP service behind HTTP Basic auth, and the batch scheduler.

A wrong or missing credential is a plain 401 before SOAP is reached, so no fault ever echoes it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from quote2cash.sandbox.legacy_erp.batch import BatchScheduler, prepare, run_batch
from quote2cash.sandbox.legacy_erp.books import Books
from quote2cash.sandbox.legacy_erp.soap import soap_application

log = logging.getLogger(__name__)

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def basic_auth(app: Wsgi, username: str, password: str) -> Wsgi:
    """``app`` behind HTTP Basic auth (constant-time comparison; 401 names no credential)."""
    expected = f"{username}:{password}".encode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        header = environ.get("HTTP_AUTHORIZATION", "")
        given = b""
        if header.startswith("Basic "):
            try:
                given = base64.b64decode(header[6:], validate=True)
            except (binascii.Error, ValueError):
                given = b""
        if not hmac.compare_digest(given, expected):
            body = b"authentication required\n"
            start_response(
                "401 Unauthorized",
                [
                    ("WWW-Authenticate", 'Basic realm="legacy-erp"'),
                    ("Content-Type", "text/plain"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        return app(environ, start_response)

    return guarded


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


@dataclass(frozen=True)
class ServerOptions:
    data: Path
    drop: Path
    host: str
    port: int
    username: str
    password: str
    batch_seconds: float


def serve(options: ServerOptions) -> None:
    """Run until interrupted; prints ``listening on <url>`` once ready."""
    books = Books(options.data)
    prepare(options.drop)
    scheduler = BatchScheduler(lambda: run_batch(books, options.drop), options.batch_seconds)
    app = basic_auth(soap_application(books), options.username, options.password)
    httpd = make_server(
        options.host, options.port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    scheduler.start()
    port = httpd.server_address[1]
    print(f"legacy ERP listening on http://{options.host}:{port}/", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        scheduler.stop()
        httpd.server_close()
        books.close()
