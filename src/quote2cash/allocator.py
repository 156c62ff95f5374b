"""Settings of Arrow's memory allocator (mimalloc) for the hub's processes.

Usage intake makes large short-lived Arrow arrays, chunk after chunk. Two mimalloc settings
make that cheaper (figures in docs/benchmarks.md, usage intake):

- ``MIMALLOC_PURGE_DELAY=-1``: freed pages are kept, not handed back to the system after
  10 ms, so each chunk of a million records does not fault its working memory in again
  (measured: ~0.3 CPU-s per million records in the kernel). Memory stays at what one chunk
  needs (``Q2C_USAGE_CHUNK_ROWS``).
- ``MIMALLOC_ALLOW_THP=0``: no transparent huge pages for its arenas; on a busy machine the
  kernel compacted memory to make them (measured: ~0.75 CPU-s in the kernel for the first
  million records of a process, against ~0.2 s of page faults without).

mimalloc reads its options when Arrow's library loads, so a process entry point (the ``q2c``
command, which ``q2c serve`` and ``q2c worker`` are) sets them first, before ``pyarrow`` is
imported; a value already in the environment wins. A program that embeds the library decides
for itself (importing ``quote2cash`` changes no environment variable).
"""

from __future__ import annotations

import os
from typing import Final

ALLOCATOR_DEFAULTS: Final = {"MIMALLOC_PURGE_DELAY": "-1", "MIMALLOC_ALLOW_THP": "0"}


def configure_allocator() -> None:
    """Set the allocator defaults in this process's environment unless already set."""
    for name, value in ALLOCATOR_DEFAULTS.items():
        os.environ.setdefault(name, value)
