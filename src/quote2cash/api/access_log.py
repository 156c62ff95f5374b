"""The API's access log: a token sent as ``?token=`` or in a header never reaches the log."""

from __future__ import annotations

from typing import Any

from aiohttp.web_log import AccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from quote2cash.observability.redact import redact


class RedactingAccessLogger(AccessLogger):
    """aiohttp's access log line with every secret in the request line or headers masked."""

    def _format_line(self, request: BaseRequest, response: StreamResponse, time: float) -> Any:
        return [
            (key, redact(value) if isinstance(value, str) else value)
            for key, value in super()._format_line(request, response, time)
        ]
