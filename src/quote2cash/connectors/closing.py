"""The ``async with`` shape every connector shares: it yields itself and closes on the way out."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class ClosesOnExit:
    """``async with connector:`` yields the connector and awaits its ``close()`` when left."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
