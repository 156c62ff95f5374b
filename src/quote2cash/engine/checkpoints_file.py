"""Checkpoints in an append-only JSON-lines file, mode 0600, each line synced to disk."""

from __future__ import annotations

import os
from pathlib import Path

from quote2cash.engine.checkpoints import Checkpoint, CheckpointError


class FileCheckpoints:
    """Appends with O_APPEND and fsync; ``latest`` is the last well-formed line of the store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    async def prepare(self) -> None:
        return None

    async def append(self, checkpoint: Checkpoint) -> None:
        line = (checkpoint.to_json() + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise CheckpointError(
                f"checkpoint file {self.path}: cannot append ({exc.strerror})"
            ) from None

    async def latest(self, store_id: str) -> Checkpoint | None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise CheckpointError(
                f"checkpoint file {self.path}: cannot read it ({type(exc).__name__})"
            ) from None
        for line in reversed(lines):
            try:
                checkpoint = Checkpoint.from_json(line)
            except CheckpointError:
                continue
            if checkpoint.store_id == store_id:
                return checkpoint
        return None
