"""What a handler sees: its event, durable steps with idempotency keys, and an outbox.

A step's result is committed (group-committed with other handlers' steps, engine.recorder) before
``step`` returns, so a re-run after a crash skips it. A crash between the side effect and that
commit re-runs the side effect with the SAME idempotency key, which the target system (Stripe's
Idempotency-Key, an upsert by external id, a reference looked up before create) turns into a
no-op: effectively once.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeGuard, TypeVar, cast, overload

import msgspec

from quote2cash.engine.errors import Category
from quote2cash.engine.events import Event, encode_json
from quote2cash.engine.outbox import Outgoing, outgoing_data
from quote2cash.engine.parking import Parked, is_released
from quote2cash.engine.projections import Projection
from quote2cash.engine.recorder import StepRecord, StepRecorder, commit_steps
from quote2cash.engine.systems import call_in_progress, reset_call
from quote2cash.observability import metrics, tracing

if TYPE_CHECKING:
    from quote2cash.engine.runtime import Runtime

T = TypeVar("T")
TARGET_SYSTEMS: Final = ("crm", "billing", "erp")
"""The systems a step's name may start with (``erp.post_invoice``): the step is gated by that
system, derived from its name, never named apart from it (DESIGN 4.6: derived, never optional)."""
STEP_NAMESPACE = uuid.UUID("5f0c7d2e-9a4b-4f7e-8d51-2b6a9c3e1f00")
log = logging.getLogger("quote2cash.engine")


_NAMESPACE_BYTES = STEP_NAMESPACE.bytes
_VARIANT: Final = {d: f"{int(d, 16) & 0x3 | 0x8:x}" for d in "0123456789abcdef"}


def step_uuid(name: str) -> str:
    """``str(uuid.uuid5(STEP_NAMESPACE, name))`` without building a UUID object: the same text
    (a step's key must never change), computed once per step on the worker's hot path."""
    h = hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).hexdigest()
    # version 5 in the 13th digit, the RFC 4122 variant in the top bits of the 17th
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def idempotency_key(event: Event, step: str) -> str:
    """Stable across re-runs and workers: derived only from (source, event id, step name)."""
    return step_uuid(f"{event.source}\x1f{event.id}\x1f{step}")


_decoder = msgspec.json.Decoder()
_NO_STEP_SPAN = contextlib.nullcontext()


class HandlerContext:
    """Created by the worker for one event; not shared between events."""

    def __init__(
        self,
        runtime: Runtime,
        event: Event,
        completed: dict[str, str],
        actor: str = "engine",
        projections: Sequence[Projection] = (),
        recorder: StepRecorder | None = None,
    ) -> None:
        self.runtime = runtime
        self.projections = projections
        self.recorder = recorder
        self.event = event
        self._completed = completed
        self._emitted: list[Event] = []
        self._released: list[str] = []
        self._published: dict[str, Outgoing] = {}
        self.actor = actor
        self._log: logging.LoggerAdapter[logging.Logger] | None = None
        self._step_spans = tracing.traced_here()  # once per event: steps of a dropped trace skip it

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger naming the event; made when a handler first logs (most never do)."""
        if self._log is None:
            self._log = logging.LoggerAdapter(log, {"event_id": self.event.id})
        return self._log

    @property
    def now(self) -> datetime:
        return self.runtime.clock.now()

    def idempotency_key(self, step: str) -> str:
        return idempotency_key(self.event, step)

    def completed(self, step: str) -> bool:
        return step in self._completed

    @overload
    def step(self, name: str, action: Callable[[str], Awaitable[T]]) -> Coroutine[Any, Any, T]: ...

    @overload
    def step(self, name: str, action: Callable[[str], T]) -> Coroutine[Any, Any, T]: ...

    def step(self, name: str, action: Callable[[str], Awaitable[T] | T]) -> Coroutine[Any, Any, T]:
        """Run ``action(idempotency_key)`` once per (event, step); its result must be JSON-able.

        The call goes through the gate (pause, breaker, rate) of the target system the name
        starts with (``crm.get_deal`` -> crm). A name that starts with none is a ``ValueError``
        before anything runs, so no system call goes ungated; a step that calls no system is a
        ``local_step``. Await it: it returns the step's coroutine (one frame per step, not two).
        """
        system = step_system(name)
        if system is None:
            raise ValueError(
                f"step {name!r} names no target system: expected '<system>.<operation>' with "
                f"<system> one of {', '.join(TARGET_SYSTEMS)} (use local_step for one that "
                "calls no system)"
            )
        return self._run(name, action, system)

    @overload
    def local_step(
        self, name: str, action: Callable[[str], Awaitable[T]]
    ) -> Coroutine[Any, Any, T]: ...

    @overload
    def local_step(self, name: str, action: Callable[[str], T]) -> Coroutine[Any, Any, T]: ...

    def local_step(
        self, name: str, action: Callable[[str], Awaitable[T] | T]
    ) -> Coroutine[Any, Any, T]:
        """A recorded step that calls no system (a decision, a reading of the hub's own state):
        like ``step``, ungated; a name that starts with a target system is a ``ValueError``."""
        system = step_system(name)
        if system is not None:
            raise ValueError(f"step {name!r} calls {system}: it is a gated step (use step)")
        return self._run(name, action, None)

    async def _run(
        self, name: str, action: Callable[[str], Awaitable[T] | T], system: str | None
    ) -> T:
        if name in self._completed:
            return _decoder.decode(self._completed[name])  # type: ignore[no-any-return]
        key = self.idempotency_key(name)
        spans = tracing.step_span(self.event, name, system) if self._step_spans else _NO_STEP_SPAN
        with spans:
            if system is not None:
                gates = self.runtime.gates
                gate = gates.enter(system, name) or await gates.enter_waiting(system, name)
                started = metrics.now()
                call = call_in_progress(gates, gate)
                try:
                    result = action(key)
                    if _is_awaitable(result):
                        result = await result
                except BaseException as exc:
                    gates.leave(gate, exc, started)
                    raise
                finally:
                    reset_call(call)
                gates.leave(gate, None, started)
            else:
                result = action(key)
                if _is_awaitable(result):
                    result = await result
        encoded = encode_json(result)
        # Returns once the step is committed: by the worker's group commit, else on its own.
        assert self.event.pos is not None
        record = StepRecord(
            self.event, name, key, system, encoded, self.now, self.actor, self.projections
        )
        if self.recorder is not None:
            await self.recorder.record(record)
        else:
            commit_steps(self.runtime.engine, [record], record.completed_at)
        self._completed[name] = encoded
        return cast(T, result)

    def emit(
        self,
        type: str,
        subject: str,
        data: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        correlation_id: str | None = None,
    ) -> Event:
        """Queue a follow-up event, committed with this event's completion (transactional outbox).

        Its id is derived from this event and ``key``, so a re-run emits the same id (deduplicated).
        It carries this event's correlation id unless ``correlation_id`` names the trace it joins
        (an event routed to its contract joins the deal's); ``causation_id`` always names this one.
        Its ``traceparent`` is the span in hand's, so its handling continues this trace.
        """
        n = len(self._emitted)
        ident = step_uuid(f"{self.event.source}\x1f{self.event.id}\x1femit\x1f{key or n}")
        follow = Event(
            id=ident,
            source="q2c",
            type=type,
            subject=subject,
            time=self.now,
            correlation_id=correlation_id or self.event.correlation_id,
            causation_id=self.event.id,
            data=data or {},
            traceparent=tracing.current_traceparent() or self.event.traceparent,
        )
        self._emitted.append(follow)
        return follow

    @property
    def emitted(self) -> list[Event]:
        return list(self._emitted)

    def publish(
        self,
        type: str,
        data: dict[str, Any],
        *,
        subject: str | None = None,
        key: str = "",
    ) -> Outgoing:
        """Tell the business-event stream that ``type`` became true (call it after the step that
        made it so): written to the outbox in the commit of this event's outcome, whatever it is.

        Its message id is derived from (this event, ``type``, ``key``): the same on a re-run, so
        the outbox and JetStream keep it once. ``subject`` (default: this event's) is its
        business key; it carries this event's correlation id and names it as its cause. A type
        that is not ``<entity>.<verb>`` or data that is not JSON-able is a ``ValueError`` here.
        """
        ident = step_uuid(f"{self.event.source}\x1f{self.event.id}\x1fpublish\x1f{type}\x1f{key}")
        message = Outgoing(
            message_id=ident,
            type=type,
            subject=subject or self.event.subject,
            correlation_id=self.event.correlation_id,
            causation_id=self.event.id,
            time=self.now,
            data=outgoing_data(type, data),
        )
        self._published.setdefault(ident, message)
        return self._published[ident]

    @property
    def published(self) -> list[Outgoing]:
        return list(self._published.values())

    def park(
        self,
        key: str,
        reason: str,
        *,
        deadline: datetime | timedelta,
        category: Category | str = Category.DATA,
    ) -> NoReturn:
        """Wait for ``key`` out of the subject's queue (later events run); the event runs again
        when another event releases the key, or goes to the exception queue at ``deadline``."""
        until = self.now + deadline if isinstance(deadline, timedelta) else deadline
        raise Parked(key, reason, deadline=until, category=category, released=self.released(key))

    def release(self, key: str) -> None:
        """Release ``key`` when this event completes (same commit): every event parked on it,
        of any subject, is pending again; a later park on it does not wait."""
        self._released.append(key)

    @property
    def releases(self) -> list[str]:
        return list(self._released)

    def released(self, key: str) -> bool:
        """Whether a completed event has released ``key``."""
        return is_released(self.runtime.engine, key)


def step_system(name: str) -> str | None:
    """The target system a step named ``<system>.<operation>`` calls, else None."""
    prefix = name.partition(".")[0]
    return prefix if prefix in TARGET_SYSTEMS else None


_NEVER_AWAITABLE: Final = frozenset({str, dict, list, int, bool, type(None)})
"""Results a step's action returns most (exact types): no ``isawaitable`` look-up for them."""


def _is_awaitable(value: object) -> TypeGuard[Awaitable[Any]]:
    """``inspect.isawaitable``, with its answer for a coroutine and plain results taken first
    (the step's hot path, once per step)."""
    kind = type(value)
    if kind is CoroutineType:
        return True
    return kind not in _NEVER_AWAITABLE and inspect.isawaitable(value)
