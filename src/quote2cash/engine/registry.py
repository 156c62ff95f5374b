"""Which handler runs for which event type, which systems it touches, and how it retries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quote2cash.engine.retry import RetryPolicy

if TYPE_CHECKING:
    from quote2cash.engine.context import HandlerContext
    from quote2cash.engine.events import Event
    from quote2cash.engine.projections import Projection

Handler = Callable[["HandlerContext", "Event"], Awaitable[Any]]


@dataclass(frozen=True)
class HandlerSpec:
    """``systems`` are checked before the handler runs: if one is paused, the event waits."""

    type: str
    fn: Handler
    systems: tuple[str, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class Registry:
    """Exact type first, then the longest ``prefix.*`` pattern, then ``*``."""

    def __init__(self, default_retry: RetryPolicy | None = None) -> None:
        self._specs: dict[str, HandlerSpec] = {}
        self.default_retry = default_retry or RetryPolicy()
        self.projections: list[Projection] = []

    def add_projection(self, projection: Projection) -> None:
        """Keep ``projection`` in step: every step record and completion the worker commits."""
        self.projections.append(projection)

    def on(
        self,
        type: str,
        *,
        systems: tuple[str, ...] | list[str] = (),
        retry: RetryPolicy | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.add(type, fn, systems=systems, retry=retry)
            return fn

        return register

    def add(
        self,
        type: str,
        fn: Handler,
        *,
        systems: tuple[str, ...] | list[str] = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        if type in self._specs:
            raise ValueError(f"a handler for event type {type!r} is already registered")
        self._specs[type] = HandlerSpec(type, fn, tuple(systems), retry or self.default_retry)

    def resolve(self, type: str) -> HandlerSpec | None:
        spec = self._specs.get(type)
        if spec is not None:
            return spec
        parts = type.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            spec = self._specs.get(".".join(parts[:cut]) + ".*")
            if spec is not None:
                return spec
        return self._specs.get("*")

    def types(self) -> list[str]:
        return sorted(self._specs)
