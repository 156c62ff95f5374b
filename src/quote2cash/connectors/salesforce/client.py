"""Salesforce REST API client over aiohttp: OAuth 2.0 login, SOQL, sObjects, sObject Collections.

Guarantees: numbers in responses are parsed as ``Decimal`` (never float) and Decimals are sent as
exact JSON numbers; an expired session is renewed once and the request retried; every failure
leaves as a ``quote2cash.engine.errors`` exception naming the system, never a secret or token;
at most ``max_concurrency`` requests are in flight; ``usage`` follows ``Sforce-Limit-Info``.

Error mapping (message: ``Salesforce <operation>: <errorCode>: <message> (fields: ...)``):

=====================================================  ==========================================
token endpoint 400/401 (invalid_grant, invalid_client)  AuthError naming the login user / app
401 INVALID_SESSION_ID                                  log in again once, retry; then AuthError
403 REQUEST_LIMIT_EXCEEDED                              DailyLimitExceeded (TransientError),
                                                        retry_after = until UTC midnight, capped
403 other                                               AuthError (permissions)
408, 429, 5xx, UNABLE_TO_LOCK_ROW, timeout, no link    TransientError, honouring Retry-After
400 INVALID_FIELD/INVALID_TYPE/MALFORMED_QUERY/...      MappingError (``MAPPING_ERROR_CODES``)
400 other (REQUIRED_FIELD_MISSING, ...)                 DataError
404 (external id field unknown)                         MappingError
404                                                     DataError "not found", object and id
300 (external id matches several records)               ConflictError listing the record ids
409, 412                                                ConflictError
=====================================================  ==========================================

Statuses and transport failures are classified by ``connectors.http``; these rows add what
Salesforce's error codes say.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from jwt.algorithms import RSAAlgorithm

from quote2cash.canonical import Money
from quote2cash.connectors import http
from quote2cash.connectors.salesforce.config import AuthFlow, SalesforceConfig
from quote2cash.engine.errors import (
    AuthError,
    ConflictError,
    DataError,
    IntegrationError,
    MappingError,
    TransientError,
)
from quote2cash.engine.systems import report_usage

__all__ = [
    "COLLECTION_BATCH",
    "MAPPING_ERROR_CODES",
    "ApiUsage",
    "DailyLimitExceeded",
    "QueryPage",
    "SalesforceClient",
    "SaveResult",
    "daily_limit_retry_after",
]

_log = logging.getLogger(__name__)

COLLECTION_BATCH: Final = 200
"""sObject Collections accept at most 200 records per call."""

MAPPING_ERROR_CODES: Final = frozenset(
    {
        "INVALID_FIELD",
        "INVALID_TYPE",
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        "MALFORMED_QUERY",
        "INVALID_QUERY_FILTER_OPERATOR",
        "NOT_AN_EXTERNAL_ID",
    }
)
"""Codes that mean our field/object names or query do not fit the org: a mapping to fix."""

_TRANSIENT_CODES: Final = frozenset(
    {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG", "QUERY_TIMEOUT"}
)
_LIMIT_INFO: Final = re.compile(r"api-usage=(\d+)/(\d+)")
_SF_ID: Final = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_TRANSIENT_STATUS_RETRY: Final = 5.0
_RS256: Final = RSAAlgorithm(RSAAlgorithm.SHA256)
_encoder: Final = msgspec.json.Encoder(decimal_format="number", enc_hook=lambda v: _wire(v))


def _wire(value: Any) -> Any:
    if isinstance(value, Money):
        return value.amount
    raise TypeError(f"cannot send a {type(value).__name__} to Salesforce: {value!r}")


def _to_json(payload: Any) -> bytes:
    """Exact JSON: Decimals as numbers, dates ISO, datetimes UTC with ``Z``."""
    return _encoder.encode(_normalise(payload))


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise DataError(f"datetime {value.isoformat()} has no timezone (UTC expected)")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
            f"{value.astimezone(UTC).microsecond // 1000:03d}Z"
        )
    if isinstance(value, date):
        return value.isoformat()
    return value


def _from_json(text: str) -> Any:
    return json.loads(text, parse_float=Decimal) if text.strip() else None


def is_salesforce_id(value: str) -> bool:
    """A 15- or 18-character record id (letters and digits only): safe to put in SOQL or a URL."""
    return bool(_SF_ID.match(value))


def daily_limit_retry_after(now: datetime, cap: float) -> float:
    """Seconds to wait once the daily API allocation is used up: until UTC midnight, at most cap.

    Salesforce counts the allocation over a rolling 24 hours, so capacity comes back gradually;
    the cap makes the hub look again well before midnight.
    """
    midnight = datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), datetime.min.time())
    remaining = (midnight.replace(tzinfo=UTC) - now).total_seconds()
    return max(1.0, min(remaining, cap))


class DailyLimitExceeded(TransientError):
    """403 REQUEST_LIMIT_EXCEEDED: the org's daily API allocation is used up; try again later."""


@dataclass(frozen=True)
class ApiUsage:
    """Daily API requests used and allowed, as the last response's ``Sforce-Limit-Info`` said."""

    used: int
    limit: int

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)


@dataclass(frozen=True)
class QueryPage:
    """One batch of SOQL results; ``next_records_url`` fetches the next (None: done)."""

    records: list[dict[str, Any]]
    total_size: int
    next_records_url: str | None


@dataclass(frozen=True)
class SaveResult:
    """One record's outcome in an sObject Collections call."""

    id: str | None
    success: bool
    created: bool
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def error_codes(self) -> list[str]:
        return [str(e.get("statusCode") or e.get("errorCode") or "") for e in self.errors]

    def describe_errors(self) -> str:
        """``CODE: message [fields]; ...``, as Salesforce reported them."""
        parts = []
        for error in self.errors:
            code = error.get("statusCode") or error.get("errorCode") or "UNKNOWN"
            fields = error.get("fields") or []
            where = f" (fields: {', '.join(map(str, fields))})" if fields else ""
            parts.append(f"{code}: {error.get('message', '')}{where}")
        return "; ".join(parts)


@dataclass(frozen=True)
class _Response:
    status: int
    body: Any
    headers: Mapping[str, str]


class _SessionExpired(Exception):
    pass


class SalesforceClient:
    """A logged-in connection to one org's REST API; use ``async with SalesforceClient(cfg)``."""

    def __init__(
        self,
        config: SalesforceConfig,
        *,
        system: str = "crm",
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.config = config
        self.system = system
        self.usage: ApiUsage | None = None
        self._http = http
        self._owns_http = http is None
        self._timeout = aiohttp.ClientTimeout(
            total=config.request_timeout, sock_connect=config.connect_timeout
        )
        self._limit = asyncio.Semaphore(config.max_concurrency)
        self._login_lock = asyncio.Lock()
        self._token: str | None = None
        self._generation = 0
        self._instance_url = config.instance_url.rstrip("/")

    def __repr__(self) -> str:
        return f"SalesforceClient({self.config.instance_url!r}, {self.config.login_name})"

    @property
    def api_base(self) -> str:
        """``/services/data/vNN.0``: every REST resource lives below it."""
        return f"/services/data/v{self.config.api_version}"

    async def __aenter__(self) -> SalesforceClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._token = None
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            context = ssl.create_default_context()
            if self.config.ca_file is not None:
                context.load_verify_locations(cafile=str(self.config.ca_file))
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, limit=self.config.max_concurrency),
                timeout=self._timeout,
                trust_env=False,
            )
            self._owns_http = True
        return self._http

    # --- login ---

    async def login(self) -> None:
        """Get an access token; refused credentials raise ``AuthError`` naming the login only."""
        async with self._login_lock:
            await self._login_unlocked()

    async def _renew(self, seen_generation: int) -> None:
        async with self._login_lock:
            if self._generation == seen_generation:
                await self._login_unlocked()

    async def _login_unlocked(self) -> None:
        form = self._token_form()
        who = self.config.login_name
        try:
            async with self._session().post(self.config.token_url, data=form) as response:
                text = await response.text()
                status = response.status
                headers = response.headers
        except http.TRANSPORT_ERRORS as exc:
            raise http.transport_error(
                exc,
                f"Salesforce login as {who}",
                system=self.system,
                retry_after=_TRANSIENT_STATUS_RETRY,
            ) from None
        try:
            body = _from_json(text)
        except ValueError:
            body = None
        if status == 200 and isinstance(body, dict) and body.get("access_token"):
            self._token = str(body["access_token"])
            instance = body.get("instance_url")
            if isinstance(instance, str) and instance.startswith("https://"):
                self._instance_url = instance.rstrip("/")
            self._generation += 1
            return
        error = body.get("error") if isinstance(body, dict) else None
        description = body.get("error_description") if isinstance(body, dict) else None
        if http.classify_status(status) is http.StatusClass.TRANSIENT:
            raise http.status_error(
                status,
                f"Salesforce login as {who} at the token endpoint",
                system=self.system,
                headers=headers,
                default_retry_after=_TRANSIENT_STATUS_RETRY,
            )
        raise AuthError(
            f"Salesforce refused the login as {who} ({self.config.auth_flow.value} flow at "
            f"{self.config.token_url}): {error or 'HTTP ' + str(status)}"
            + (f": {description}" if description else ""),
            system=self.system,
        )

    def _token_form(self) -> dict[str, str]:
        cfg = self.config
        secret = cfg.client_secret.get_secret_value() if cfg.client_secret else ""
        if cfg.auth_flow is AuthFlow.CLIENT_CREDENTIALS:
            return {
                "grant_type": "client_credentials",
                "client_id": cfg.client_id,
                "client_secret": secret,
            }
        if cfg.auth_flow is AuthFlow.PASSWORD:
            return {
                "grant_type": "password",
                "client_id": cfg.client_id,
                "client_secret": secret,
                "username": cfg.username or "",
                "password": cfg.password.get_secret_value() if cfg.password else "",
            }
        return {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": self._jwt_assertion(),
        }

    def _jwt_assertion(self) -> str:
        """An RS256 JWT by PyJWT: iss = consumer key, sub = user, aud = login host, 3 min expiry."""
        cfg = self.config
        assert cfg.private_key is not None
        try:
            key = _RS256.prepare_key(cfg.private_key.get_secret_value())
        except (jwt.InvalidKeyError, ValueError, TypeError):
            raise AuthError(
                f"Salesforce JWT login as {cfg.login_name}: private_key is not a readable PEM "
                "RSA private key",
                system=self.system,
            ) from None
        if not isinstance(key, RSAPrivateKey):
            raise AuthError(
                f"Salesforce JWT login as {cfg.login_name}: private_key must be an RSA private key",
                system=self.system,
            )
        audience = cfg.jwt_audience or (cfg.login_url or cfg.instance_url).rstrip("/")
        claims = {
            "iss": cfg.client_id,
            "sub": cfg.username,
            "aud": audience,
            "exp": int(time.time()) + 180,
        }
        return jwt.encode(claims, key, algorithm="RS256")

    # --- requests ---

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        what: str = "",
    ) -> _Response:
        """One REST call below the instance (``path`` starts with ``/services/``).

        Renews the session once on 401 INVALID_SESSION_ID; maps every error (see module doc).
        """
        body = None if json_body is None else _to_json(json_body)
        described = what or f"{method} {path}"
        for attempt in (1, 2):
            if self._token is None:
                await self.login()
            generation = self._generation
            try:
                return await self._send(method, path, params, body, headers, described)
            except _SessionExpired:
                if attempt == 2:
                    break
                _log.info("salesforce session expired; logging in again", extra={"op": described})
                await self._renew(generation)
        raise AuthError(
            f"Salesforce rejected the session of {self.config.login_name} again right after a "
            f"fresh login ({described}): INVALID_SESSION_ID",
            system=self.system,
        )

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        what: str,
    ) -> _Response:
        all_headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            **(headers or {}),
        }
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        url = self._instance_url + path
        async with self._limit:
            try:
                async with self._session().request(
                    method, url, params=params, data=body, headers=all_headers
                ) as response:
                    text = await response.text()
                    status, response_headers = response.status, response.headers
            except http.TRANSPORT_ERRORS as exc:
                raise http.transport_error(
                    exc,
                    f"Salesforce {what}",
                    system=self.system,
                    retry_after=_TRANSIENT_STATUS_RETRY,
                ) from None
        self._note_usage(response_headers)
        try:
            parsed = _from_json(text)
        except ValueError:
            if status < 400:
                raise MappingError(
                    f"Salesforce {what}: HTTP {status} answer is not JSON", system=self.system
                ) from None
            parsed = None
        if status == 401:
            raise _SessionExpired
        if status < 300:
            return _Response(status, parsed, response_headers)
        raise self._error(status, parsed, response_headers, what)

    def _note_usage(self, headers: Mapping[str, str]) -> None:
        info = headers.get("Sforce-Limit-Info")
        match = _LIMIT_INFO.search(info) if info else None
        if match:
            self.usage = ApiUsage(int(match.group(1)), int(match.group(2)))
            report_usage(self.system, self.usage.used, self.usage.limit)

    def _error(
        self, status: int, body: Any, headers: Mapping[str, str], what: str
    ) -> IntegrationError:
        errors = body if isinstance(body, list) else [body] if isinstance(body, dict) else []
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        code = str(first.get("errorCode") or first.get("statusCode") or "")
        message = str(first.get("message") or "")
        fields = first.get("fields") or []
        detail = f"{code}: {message}" if code else f"HTTP {status}"
        if fields:
            detail += f" (fields: {', '.join(map(str, fields))})"
        text = f"Salesforce {what}: {detail}"
        system = self.system
        if status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
            wait = daily_limit_retry_after(
                datetime.now(UTC), self.config.daily_limit_retry_cap_seconds
            )
            usage = f" (api usage {self.usage.used}/{self.usage.limit})" if self.usage else ""
            return DailyLimitExceeded(
                f"{text}{usage}; daily API allocation used up, retry in {wait:.0f}s",
                system=system,
                retry_after=wait,
                throttled=True,
            )
        kind = http.classify_status(status)
        if kind is http.StatusClass.TRANSIENT or code in _TRANSIENT_CODES:
            asked = http.retry_after_seconds(http.header(headers, "Retry-After"))
            return TransientError(
                text,
                system=system,
                retry_after=_TRANSIENT_STATUS_RETRY if asked is None else asked,
                throttled=http.is_throttled(status, asked),
            )
        if kind is http.StatusClass.AUTH:
            return AuthError(f"{text} ({self.config.login_name} lacks access)", system=system)
        if status == 300:
            matches = body if isinstance(body, list) else []
            ids = [str(m).rsplit("/", 1)[-1] for m in matches]
            return ConflictError(
                f"Salesforce {what}: the external id matches {len(ids)} records "
                f"({', '.join(ids)}); make it unique",
                system=system,
            )
        if kind is http.StatusClass.NOT_FOUND:
            if "external id" in message.lower():
                return MappingError(text, system=system)
            return DataError(f"Salesforce {what}: not found ({detail})", system=system)
        if kind is http.StatusClass.CONFLICT:
            return ConflictError(text, system=system)
        if code in MAPPING_ERROR_CODES or kind is http.StatusClass.UNEXPECTED:
            return MappingError(text, system=system)
        return DataError(text, system=system)

    # --- resources ---

    def _object_path(self, sobject: str, *rest: str) -> str:
        parts = [quote(sobject, safe=""), *(quote(p, safe="") for p in rest)]
        return f"{self.api_base}/sobjects/" + "/".join(parts)

    async def query_page(
        self,
        soql: str | None = None,
        *,
        next_records_url: str | None = None,
        batch_size: int | None = None,
        include_deleted: bool = False,
    ) -> QueryPage:
        """The first batch of ``soql``, or the batch at ``next_records_url``.

        ``batch_size`` is sent as ``Sforce-Query-Options: batchSize`` (Salesforce allows 200-2000
        and may return fewer). ``include_deleted`` asks ``queryAll`` (deleted and merged records
        too, as Salesforce keeps them in the recycle bin).
        """
        headers = {}
        if batch_size is not None:
            headers["Sforce-Query-Options"] = f"batchSize={min(max(batch_size, 200), 2000)}"
        if next_records_url is not None:
            if not next_records_url.startswith(self.api_base + "/query"):  # also /queryAll
                raise DataError(
                    f"Salesforce query cursor {next_records_url[:80]!r} is not a nextRecordsUrl "
                    f"of API {self.api_base}",
                    system=self.system,
                )
            response = await self.request(
                "GET", next_records_url, headers=headers, what="query (next batch)"
            )
        else:
            if not soql:
                raise ValueError("give soql or next_records_url")
            endpoint = "queryAll" if include_deleted else "query"
            response = await self.request(
                "GET",
                f"{self.api_base}/{endpoint}",
                params={"q": soql},
                headers=headers,
                what=f"query {_query_target(soql)}",
            )
        return self._page(response.body)

    def _page(self, body: Any) -> QueryPage:
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise MappingError("Salesforce query answer has no records list", system=self.system)
        next_url = body.get("nextRecordsUrl") if not body.get("done", True) else None
        return QueryPage(body["records"], int(body.get("totalSize") or 0), next_url)

    async def query(self, soql: str) -> AsyncIterator[dict[str, Any]]:
        """Every record of ``soql``, following ``nextRecordsUrl`` batch by batch."""
        page = await self.query_page(soql)
        while True:
            for record in page.records:
                yield record
            if page.next_records_url is None:
                return
            page = await self.query_page(next_records_url=page.next_records_url)

    async def query_all(self, soql: str) -> list[dict[str, Any]]:
        return [record async for record in self.query(soql)]

    async def children(self, relationship: Any) -> list[dict[str, Any]]:
        """All records of a child subquery result, following its own ``nextRecordsUrl``."""
        if relationship is None:
            return []
        page = self._page(relationship)
        records = list(page.records)
        while page.next_records_url is not None:
            page = await self.query_page(next_records_url=page.next_records_url)
            records.extend(page.records)
        return records

    async def get(
        self, sobject: str, record_id: str, fields: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """One record by id; a missing record raises ``DataError`` naming object and id."""
        if not is_salesforce_id(record_id):
            raise DataError(
                f"Salesforce {sobject} id {record_id!r} is malformed: expected 15 or 18 letters "
                "and digits",
                system=self.system,
            )
        params = {"fields": ",".join(fields)} if fields else None
        response = await self.request(
            "GET",
            self._object_path(sobject, record_id),
            params=params,
            what=f"get {sobject} {record_id}",
        )
        if not isinstance(response.body, dict):
            raise MappingError(f"Salesforce get {sobject} {record_id}: not a record")
        return response.body

    async def create(self, sobject: str, values: Mapping[str, Any]) -> str:
        response = await self.request(
            "POST", self._object_path(sobject), json_body=dict(values), what=f"create {sobject}"
        )
        return str(response.body["id"])

    async def update(self, sobject: str, record_id: str, values: Mapping[str, Any]) -> None:
        if not is_salesforce_id(record_id):
            raise DataError(f"Salesforce {sobject} id {record_id!r} is malformed")
        await self.request(
            "PATCH",
            self._object_path(sobject, record_id),
            json_body=dict(values),
            what=f"update {sobject} {record_id}",
        )

    async def upsert(
        self, sobject: str, external_id_field: str, external_id: str, values: Mapping[str, Any]
    ) -> tuple[str | None, bool]:
        """Create or update by external id: ``(record id, created)``; 300 -> ConflictError."""
        response = await self.request(
            "PATCH",
            self._object_path(sobject, external_id_field, external_id),
            json_body=dict(values),
            what=f"upsert {sobject} {external_id_field}={external_id}",
        )
        if response.status == 201 and isinstance(response.body, dict):
            return str(response.body.get("id")), True
        return None, False

    async def upsert_collection(
        self,
        sobject: str,
        external_id_field: str,
        records: Sequence[Mapping[str, Any]],
    ) -> list[SaveResult]:
        """Upsert up to any number of records, 200 per call, ``allOrNone`` false.

        Results come back in input order; a record's failure is in its SaveResult, not raised.
        """
        results: list[SaveResult] = []
        path = f"{self.api_base}/composite/sobjects/{quote(sobject, safe='')}/" + quote(
            external_id_field, safe=""
        )
        for start in range(0, len(records), COLLECTION_BATCH):
            chunk = [
                {"attributes": {"type": sobject}, **record}
                for record in records[start : start + COLLECTION_BATCH]
            ]
            response = await self.request(
                "PATCH",
                path,
                json_body={"allOrNone": False, "records": chunk},
                what=f"upsert {len(chunk)} {sobject} by {external_id_field}",
            )
            results.extend(self._save_results(response.body, len(chunk)))
        return results

    async def update_collection(
        self, sobject: str, records: Sequence[Mapping[str, Any]]
    ) -> list[SaveResult]:
        """Update records by their ``Id``, 200 per call, ``allOrNone`` false, results in order.

        (sObject Collections upsert accepts external id fields only, not record ids.)
        """
        results: list[SaveResult] = []
        for start in range(0, len(records), COLLECTION_BATCH):
            chunk = [
                {"attributes": {"type": sobject}, **record}
                for record in records[start : start + COLLECTION_BATCH]
            ]
            response = await self.request(
                "PATCH",
                f"{self.api_base}/composite/sobjects",
                json_body={"allOrNone": False, "records": chunk},
                what=f"update {len(chunk)} {sobject} by Id",
            )
            results.extend(self._save_results(response.body, len(chunk)))
        return results

    def _save_results(self, body: Any, expected: int) -> list[SaveResult]:
        if not isinstance(body, list) or len(body) != expected:
            raise MappingError(
                f"Salesforce sObject Collections answered {type(body).__name__} "
                f"for {expected} records",
                system=self.system,
            )
        return [
            SaveResult(
                id=item.get("id"),
                success=bool(item.get("success")),
                created=bool(item.get("created")),
                errors=list(item.get("errors") or []),
            )
            for item in body
        ]

    async def limits(self) -> dict[str, Any]:
        response = await self.request("GET", f"{self.api_base}/limits", what="limits")
        if not isinstance(response.body, dict):
            raise MappingError("Salesforce /limits answer is not an object", system=self.system)
        return response.body


def _query_target(soql: str) -> str:
    """The queried object, for messages (child subqueries in parentheses are skipped)."""
    outer = soql
    while True:
        flattened = re.sub(r"\([^()]*\)", "", outer)
        if flattened == outer:
            break
        outer = flattened
    match = re.search(r"\bFROM\s+([A-Za-z0-9_]+)", outer, re.IGNORECASE)
    return match.group(1) if match else "(SOQL)"
