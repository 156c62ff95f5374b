"""JSON-RPC client for a Tryton 8.x server: only the wire protocol, never importing trytond.

Guarantees: money travels as ``Decimal`` both ways (never float), datetimes come back aware UTC,
every failure leaves as a ``quote2cash.engine.errors`` exception naming ``system`` and never the
password, an expired session is renewed once per call, and at most ``max_concurrency`` calls are in
flight (1 suits SQLite, which cannot take parallel writes).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, Final

import aiohttp

from quote2cash.connectors import http
from quote2cash.engine.errors import (
    AuthError,
    ConflictError,
    DataError,
    MappingError,
    PermanentError,
    TransientError,
)

__all__ = [
    "Domain",
    "TrytonClient",
    "TrytonModel",
    "TrytonStateConflict",
    "TrytonUserError",
    "TrytonWarning",
    "TrytonWizard",
    "WizardStep",
    "decode_json",
    "encode_json",
]

Domain = Sequence[Any]
"""A Tryton search domain, e.g. ``[("code", "=", "PLAT-SEAT")]``."""

_SESSION_RENEWAL_STATUSES: Final = frozenset({401, 403})
_TRANSIENT_SERVER_MESSAGES: Final = re.compile(
    r"database is locked|could not serialize|deadlock detected|could not obtain lock"
    r"|canceling statement due to|connection (?:reset|refused)|server closed the connection",
    re.IGNORECASE,
)
_WARNING_KEY: Final = re.compile(r"^[0-9a-f]{32}\.")
_STATE_CONFLICT_MESSAGES: Final = re.compile(
    # Tryton's wording when a record's state forbids the action ("You can not call "post" on
    # <posted invoice>", "To delete invoice X you must cancel it", "... already ...")
    r"\b(?:already|cancel|posted|paid|state|must be draft|cannot modify|can not modify"
    r"|cannot delete|can not delete|cannot change|can not change|cannot call|can not call)\b",
    re.IGNORECASE,
)


# --- JSON wire format -------------------------------------------------------------------------


def _encode_value(value: Any) -> Any:
    """Tryton's JSON extension for types plain JSON lacks; floats are never produced for money."""
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": format(value, "f")}
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return {
            "__class__": "datetime",
            "year": value.year,
            "month": value.month,
            "day": value.day,
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, dt.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, dt.time):
        return {
            "__class__": "time",
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, dt.timedelta):
        return {"__class__": "timedelta", "seconds": value.total_seconds()}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"__class__": "bytes", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"cannot send a {type(value).__name__} to Tryton: {value!r}")


def _decode_object(obj: dict[str, Any]) -> Any:
    kind = obj.get("__class__")
    if kind is None:
        return obj
    if kind == "Decimal":
        return Decimal(obj["decimal"])
    if kind == "date":
        return dt.date(obj["year"], obj["month"], obj["day"])
    if kind == "datetime":
        return dt.datetime(
            obj["year"],
            obj["month"],
            obj["day"],
            obj["hour"],
            obj["minute"],
            obj["second"],
            obj["microsecond"],
            tzinfo=dt.UTC,
        )
    if kind == "time":
        return dt.time(obj["hour"], obj["minute"], obj["second"], obj["microsecond"])
    if kind == "timedelta":
        return dt.timedelta(seconds=obj["seconds"])
    if kind == "bytes":
        return base64.b64decode(obj["base64"])
    return obj


def encode_json(payload: Any) -> bytes:
    """Serialise a JSON-RPC payload with Tryton's extensions (Decimal, date, datetime, bytes...)."""
    return json.dumps(payload, default=_encode_value, separators=(",", ":")).encode("utf-8")


def decode_json(body: bytes | str) -> Any:
    """Parse a Tryton JSON-RPC body; Decimal/date/datetime (aware UTC)/bytes come back typed."""
    return json.loads(body, object_hook=_decode_object)


# --- Errors ----------------------------------------------------------------------------------


class TrytonUserError(DataError):
    """Tryton refused the request for a business reason (``UserError``); the message is Tryton's."""

    def __init__(self, message: str, *, description: str = "", system: str | None = None) -> None:
        text = f"{message} - {description}" if description else message
        super().__init__(text, system=system)
        self.tryton_message = message
        self.description = description


class TrytonStateConflict(ConflictError):
    """A ``UserError`` about a record's state (posted, paid, cancelled...): a retry won't help."""

    def __init__(self, message: str, *, description: str = "", system: str | None = None) -> None:
        text = f"{message} - {description}" if description else message
        super().__init__(text, system=system)
        self.tryton_message = message
        self.description = description


class TrytonWarning(PermanentError):
    """Tryton stopped on a ``UserWarning`` the caller did not allow; ``name`` is its key."""

    def __init__(self, name: str, message: str, *, system: str | None = None) -> None:
        super().__init__(
            f"{message} (warning {_warning_kind(name)!r} not allowed)",
            category="data",
            system=system,
        )
        self.name = name
        self.kind = _warning_kind(name)
        self.tryton_message = message


def _warning_kind(name: str) -> str:
    """Tryton names warnings ``<md5 of records>.<kind>``; the kind is what callers allow."""
    return _WARNING_KEY.sub("", name, count=1)


# --- Client ----------------------------------------------------------------------------------


class TrytonClient:
    """A logged-in JSON-RPC session to one Tryton database.

    Use as ``async with TrytonClient(...) as erp:``; ``erp.context`` is the user's context (fetched
    once at login) and is appended to every model/wizard call as Tryton requires.
    """

    def __init__(
        self,
        base_url: str,
        database: str,
        username: str,
        password: str,
        *,
        max_concurrency: int = 1,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        language: str = "en",
        system: str = "erp",
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.database = database
        self.username = username
        self._password = password
        self.language = language
        self.system = system
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._limit = asyncio.Semaphore(max_concurrency)
        self._http = http
        self._owns_http = http is None
        self._authorization: str | None = None
        self._session_generation = 0
        self._login_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self.user_id: int | None = None
        self.context: dict[str, Any] = {}
        self.warned: set[str] = set()
        """The warning kinds a call of this session was allowed and acknowledged (a caller may
        acknowledge the next one before its call, ``acknowledge_for``)."""

    def __repr__(self) -> str:
        return (
            f"TrytonClient({self.base_url!r}, database={self.database!r}, user={self.username!r})"
        )

    @property
    def rpc_url(self) -> str:
        return f"{self.base_url}/{self.database}/rpc/"

    async def __aenter__(self) -> TrytonClient:
        try:
            await self.login()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Log out (best effort) and release the HTTP connection pool if this client owns it."""
        if self._authorization is not None and self._http is not None and not self._http.closed:
            with contextlib.suppress(TransientError, PermanentError):
                await self._post(self.rpc_url, "common.db.logout", [], authorized=True)
        self._authorization = None
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None

    # --- session ---

    async def login(self) -> None:
        """Open a session and fetch the user's context; a wrong password raises ``AuthError``."""
        async with self._login_lock:
            await self._login_unlocked()

    async def _login_unlocked(self) -> None:
        result = await self._post(
            self.rpc_url,
            "common.db.login",
            [self.username, {"password": self._password}, self.language],
            authorized=False,
        )
        if not isinstance(result, list) or len(result) < 2:
            raise MappingError(f"unexpected login answer from Tryton: {type(result).__name__}")
        user_id, token = int(result[0]), str(result[1])
        raw = f"{self.username}:{user_id}:{token}".encode()
        self._authorization = "Session " + base64.b64encode(raw).decode("ascii")
        self.user_id = user_id
        self._session_generation += 1
        preferences = await self._post(
            self.rpc_url, "model.res.user.get_preferences", [True, {}], authorized=True
        )
        self.context = dict(preferences) if isinstance(preferences, dict) else {}

    async def _renew_session(self, seen_generation: int) -> None:
        async with self._login_lock:
            if self._session_generation == seen_generation:
                await self._login_unlocked()

    # --- calls ---

    def context_for(self, **overrides: Any) -> dict[str, Any]:
        """The session context with some keys replaced, e.g. ``context_for(company=2)``."""
        return {**self.context, **overrides}

    async def call(
        self,
        method: str,
        *params: Any,
        context: Mapping[str, Any] | None = None,
        allow_warnings: Iterable[str] = (),
    ) -> Any:
        """Call ``model.*``/``wizard.*`` with the context appended as the last positional param.

        ``allow_warnings`` lists warning kinds (e.g. ``"invoice_similar"``) the caller accepts:
        such a warning is acknowledged for this user and the call retried; any other raises
        ``TrytonWarning``. Acknowledging uses ``res.user.warning.skip``, which a non-admin user
        may call (creating ``res.user.warning`` directly is refused to them), for good
        (``always``): a kind accepted once is accepted every time, and a warning keyed by a
        record that recurs (the GmbH's unvalidated VAT number, on every one of its invoices)
        no longer costs each later call a failed attempt whose work Tryton rolls back.
        """
        ctx = dict(self.context if context is None else context)
        allowed = frozenset(allow_warnings)
        acknowledged: set[str] = set()
        while True:
            try:
                return await self.call_without_context(method, *params, ctx)
            except TrytonWarning as warning:
                if warning.kind not in allowed or warning.name in acknowledged:
                    raise
                acknowledged.add(warning.name)
                self.warned.add(warning.kind)
                await self.call_without_context(
                    "model.res.user.warning.skip", warning.name, True, self.context
                )

    async def acknowledge_for(self, kind: str, model: str, ids: Sequence[int]) -> None:
        """Acknowledge, before the call that would raise it, the warning ``kind`` Tryton keys by
        each of these records alone (its ``res.user.warning.format``): that call then does its
        work once, instead of failing on the warning of each record in turn and running again."""
        for record in ids:
            digest = hashlib.md5(f"{model},{record}".encode(), usedforsecurity=False).hexdigest()
            await self.call_without_context(
                "model.res.user.warning.skip", f"{digest}.{kind}", True, self.context
            )

    async def call_without_context(self, method: str, *params: Any) -> Any:
        """Call exactly with ``params`` (server-level methods, or a caller-built context)."""
        if self._authorization is None:
            await self.login()
        generation = self._session_generation
        try:
            return await self._post(self.rpc_url, method, list(params), authorized=True)
        except _SessionRejected:
            await self._renew_session(generation)
        try:
            return await self._post(self.rpc_url, method, list(params), authorized=True)
        except _SessionRejected as rejected:
            if rejected.status == 403:
                raise MappingError(
                    f"Tryton refused {method!r}: unknown method or no access for "
                    f"user {self.username!r}",
                    system=self.system,
                ) from None
            raise AuthError(
                f"Tryton rejected the session of user {self.username!r} for {method!r}",
                system=self.system,
            ) from None

    def model(self, name: str) -> TrytonModel:
        return TrytonModel(self, name)

    def wizard(
        self,
        name: str,
        *,
        active_model: str | None = None,
        active_ids: Sequence[int] = (),
        context: Mapping[str, Any] | None = None,
    ) -> TrytonWizard:
        """A wizard session; records it acts on are given as ``active_model``/``active_ids``."""
        ctx = dict(self.context if context is None else context)
        if active_model is not None:
            ctx.update(
                active_model=active_model,
                active_id=active_ids[0] if active_ids else None,
                active_ids=list(active_ids),
            )
        return TrytonWizard(self, name, ctx)

    async def run_wizard(
        self,
        name: str,
        steps: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        active_model: str | None = None,
        active_ids: Sequence[int] = (),
        context: Mapping[str, Any] | None = None,
        allow_warnings: Iterable[str] = (),
    ) -> WizardStep | None:
        """Run a wizard: start it, press each ``(button, values)`` in order, always delete it.

        Returns the last form shown, or ``None`` when the wizard ended.
        """
        async with self.wizard(
            name, active_model=active_model, active_ids=active_ids, context=context
        ) as wizard:
            step = await wizard.start()
            for button, values in steps:
                step = await wizard.press(button, values, allow_warnings=allow_warnings)
            return step

    # --- transport ---

    async def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=self.timeout)
            self._owns_http = True
        return self._http

    async def _post(self, url: str, method: str, params: list[Any], *, authorized: bool) -> Any:
        session = await self._session()
        headers = {"Content-Type": "application/json"}
        if authorized and self._authorization is not None:
            headers["Authorization"] = self._authorization
        body = encode_json({"id": next(self._ids), "method": method, "params": params})
        async with self._limit:
            try:
                async with session.post(
                    url, data=body, headers=headers, timeout=self.timeout
                ) as response:
                    status, response_headers = response.status, response.headers
                    payload = await response.read()
            except http.TRANSPORT_ERRORS as exc:
                raise http.transport_error(
                    exc, f"Tryton at {self.base_url}, {method!r}", system=self.system
                ) from None
        return self._result(method, status, response_headers, payload, login=not authorized)

    def _result(
        self,
        method: str,
        status: int,
        headers: Mapping[str, str],
        payload: bytes,
        *,
        login: bool,
    ) -> Any:
        """Statuses as ``connectors.http`` classifies them; JSON-RPC reports its own errors in 200s,
        so any other status means a wrong URL or a proxy in the way: a mapping to fix."""
        if login and status in (401, 403):
            raise AuthError(
                f"Tryton refused the login of user {self.username!r} on database "
                f"{self.database!r} (wrong user or password)",
                system=self.system,
            )
        if status in _SESSION_RENEWAL_STATUSES:
            raise _SessionRejected(status)
        if http.classify_status(status) is http.StatusClass.TRANSIENT:
            raise http.status_error(
                status, f"Tryton answering {method!r}", system=self.system, headers=headers
            )
        if status == 404 and login:
            raise MappingError(f"Tryton database {self.database!r} not found", system=self.system)
        if status != 200:
            raise MappingError(f"Tryton answered HTTP {status} to {method!r}", system=self.system)
        try:
            answer = decode_json(payload)
        except ValueError:
            raise MappingError(
                f"Tryton answered {method!r} with a body that is not JSON", system=self.system
            ) from None
        if not isinstance(answer, dict):
            raise MappingError(f"unexpected JSON-RPC answer to {method!r}", system=self.system)
        if "error" in answer and answer["error"] is not None:
            raise self._error(method, answer["error"])
        return answer.get("result")

    def _error(self, method: str, error: Any) -> Exception:
        """Map Tryton's ``[kind, args]`` error onto the engine's taxonomy."""
        kind = error[0] if isinstance(error, list) and error else str(error)
        args = error[1] if isinstance(error, list) and len(error) > 1 else None
        if kind == "UserError" and isinstance(args, list) and args:
            message = str(args[0])
            description = str(args[1] or "") if len(args) > 1 else ""
            if _STATE_CONFLICT_MESSAGES.search(message):
                return TrytonStateConflict(message, description=description, system=self.system)
            return TrytonUserError(message, description=description, system=self.system)
        if kind == "UserWarning" and isinstance(args, list) and len(args) >= 2:
            return TrytonWarning(str(args[0]), str(args[1]), system=self.system)
        if kind == "ConcurrencyException":
            return ConflictError(
                f"record changed concurrently in Tryton: {args}", system=self.system
            )
        if kind == "LoginException":
            return AuthError(
                f"Tryton asks for more login parameters for user {self.username!r}",
                system=self.system,
            )
        message = str(kind)
        if _TRANSIENT_SERVER_MESSAGES.search(message):
            return TransientError(f"Tryton database busy: {message}", system=self.system)
        model_name = _model_of(method)
        if model_name is not None and message.strip("'\"") == model_name:
            return MappingError(f"Tryton has no model {model_name!r}", system=self.system)
        return MappingError(f"Tryton failed on {method!r}: {message}", system=self.system)


class _SessionRejected(Exception):
    """Internal: the server refused the session (expired or no access); renew once, then map."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _model_of(method: str) -> str | None:
    parts = method.split(".")
    if len(parts) < 3 or parts[0] not in ("model", "wizard"):
        return None
    return ".".join(parts[1:-1])


# --- Models and wizards ----------------------------------------------------------------------


class TrytonModel:
    """The RPC methods of one Tryton model, e.g. ``erp.model("party.party")``."""

    def __init__(self, client: TrytonClient, name: str) -> None:
        self.client = client
        self.name = name

    def __repr__(self) -> str:
        return f"TrytonModel({self.name!r})"

    async def call(
        self,
        method: str,
        *params: Any,
        context: Mapping[str, Any] | None = None,
        allow_warnings: Iterable[str] = (),
    ) -> Any:
        return await self.client.call(
            f"model.{self.name}.{method}",
            *params,
            context=context,
            allow_warnings=allow_warnings,
        )

    async def search(
        self,
        domain: Domain,
        *,
        offset: int = 0,
        limit: int | None = None,
        order: Sequence[tuple[str, str]] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[int]:
        ids = await self.call("search", list(domain), offset, limit, _order(order), context=context)
        return [int(i) for i in ids]

    async def search_count(
        self, domain: Domain, *, context: Mapping[str, Any] | None = None
    ) -> int:
        return int(await self.call("search_count", list(domain), context=context))

    async def read(
        self,
        ids: Sequence[int],
        fields: Sequence[str],
        *,
        context: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Rows in the order of ``ids``; dotted fields come back nested as ``{"party.": {...}}``."""
        rows = await self.call("read", list(ids), list(fields), context=context)
        by_id = {row["id"]: row for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    async def search_read(
        self,
        domain: Domain,
        fields: Sequence[str],
        *,
        offset: int = 0,
        limit: int | None = None,
        order: Sequence[tuple[str, str]] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        rows = await self.call(
            "search_read",
            list(domain),
            offset,
            limit,
            _order(order),
            list(fields),
            context=context,
        )
        return list(rows)

    async def find_one(
        self,
        domain: Domain,
        fields: Sequence[str] = ("id",),
        *,
        context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """The single match of ``domain`` or ``None``; more than one match is a data error."""
        rows = await self.search_read(domain, fields, limit=2, context=context)
        if len(rows) > 1:
            raise DataError(
                f"{self.name}: more than one record matches {list(domain)!r}",
                system=self.client.system,
            )
        return rows[0] if rows else None

    async def create(
        self,
        values: Sequence[Mapping[str, Any]],
        *,
        context: Mapping[str, Any] | None = None,
        allow_warnings: Iterable[str] = (),
    ) -> list[int]:
        ids = await self.call(
            "create", [dict(v) for v in values], context=context, allow_warnings=allow_warnings
        )
        return [int(i) for i in ids]

    async def create_one(
        self,
        values: Mapping[str, Any],
        *,
        context: Mapping[str, Any] | None = None,
        allow_warnings: Iterable[str] = (),
    ) -> int:
        return (await self.create([values], context=context, allow_warnings=allow_warnings))[0]

    async def write(
        self,
        ids: Sequence[int],
        values: Mapping[str, Any],
        *,
        context: Mapping[str, Any] | None = None,
        allow_warnings: Iterable[str] = (),
    ) -> None:
        await self.call(
            "write", list(ids), dict(values), context=context, allow_warnings=allow_warnings
        )

    async def delete(
        self,
        ids: Sequence[int],
        *,
        context: Mapping[str, Any] | None = None,
        allow_warnings: Iterable[str] = (),
    ) -> None:
        await self.call("delete", list(ids), context=context, allow_warnings=allow_warnings)

    async def execute_button(
        self,
        button: str,
        ids: Sequence[int],
        *,
        context: Mapping[str, Any] | None = None,
        allow_warnings: Iterable[str] = (),
    ) -> Any:
        """Press a workflow button (``post``, ``quote``, ``run``...) on records."""
        return await self.call(button, list(ids), context=context, allow_warnings=allow_warnings)


def _order(order: Sequence[tuple[str, str]] | None) -> list[list[str]] | None:
    return None if order is None else [[field, direction] for field, direction in order]


class WizardStep:
    """A form a wizard shows: its state name, the defaults it proposes and the buttons it offers."""

    def __init__(self, state: str, defaults: dict[str, Any], buttons: list[str]) -> None:
        self.state = state
        self.defaults = defaults
        self.buttons = buttons

    def __repr__(self) -> str:
        return f"WizardStep(state={self.state!r}, buttons={self.buttons!r})"


class TrytonWizard:
    """One wizard session: ``start()``, then ``press(button, values)`` until it ends; then deleted.

    ``press`` sends the current form's defaults overlaid with ``values``, which is what the Tryton
    client does; raw JSON-RPC runs no on_change, so pass derived values yourself.
    """

    def __init__(self, client: TrytonClient, name: str, context: dict[str, Any]) -> None:
        self.client = client
        self.name = name
        self.context = context
        self.session_id: int | None = None
        self.start_state = ""
        self.end_state = ""
        self.current: WizardStep | None = None
        self.actions: list[Any] = []

    async def __aenter__(self) -> TrytonWizard:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> WizardStep | None:
        created = await self.client.call(f"wizard.{self.name}.create", context=self.context)
        self.session_id, self.start_state, self.end_state = (
            int(created[0]),
            str(created[1]),
            str(created[2]),
        )
        return await self._execute({}, self.start_state, ())

    async def press(
        self,
        button: str,
        values: Mapping[str, Any] | None = None,
        *,
        allow_warnings: Iterable[str] = (),
    ) -> WizardStep | None:
        if self.session_id is None:
            raise RuntimeError(f"wizard {self.name} not started")
        data: dict[str, Any] = {}
        if self.current is not None:
            form = {k: v for k, v in self.current.defaults.items() if "." not in k}
            form.update(values or {})
            data[self.current.state] = form
        elif values:
            raise DataError(
                f"wizard {self.name}: values given for button {button!r} but no form is open",
                system=self.client.system,
            )
        return await self._execute(data, button, allow_warnings)

    async def _execute(
        self, data: dict[str, Any], state: str, allow_warnings: Iterable[str]
    ) -> WizardStep | None:
        result = await self.client.call(
            f"wizard.{self.name}.execute",
            self.session_id,
            data,
            state,
            context=self.context,
            allow_warnings=allow_warnings,
        )
        result = result or {}
        self.actions.extend(result.get("actions", []))
        view = result.get("view")
        if view:
            buttons = [str(b.get("state")) for b in view.get("buttons", []) if isinstance(b, dict)]
            defaults = dict(view.get("defaults") or {})
            defaults.update(view.get("values") or {})
            self.current = WizardStep(str(view["state"]), defaults, buttons)
        else:
            self.current = None
        return self.current

    async def close(self) -> None:
        if self.session_id is None:
            return
        session_id, self.session_id = self.session_id, None
        with contextlib.suppress(TransientError, PermanentError):
            await self.client.call(f"wizard.{self.name}.delete", session_id, context=self.context)
