"""Bulk usage ingestion: validate, deduplicate against all history, quarantine, aggregate, post.

Two settings of Arrow's allocator (mimalloc), for the large short-lived arrays intake makes:

- ``MIMALLOC_PURGE_DELAY=-1``: freed pages are kept, not handed back to the system after
  10 ms, so each chunk of a million records does not fault its working memory in again
  (measured: ~0.3 CPU-s per million records in the kernel). Memory stays at what one chunk
  needs (``Q2C_USAGE_CHUNK_ROWS``), as before.
- ``MIMALLOC_ALLOW_THP=0``: no transparent huge pages for its arenas; on a busy machine the
  kernel compacted memory to make them (measured: ~0.75 CPU-s in the kernel for the first
  million records of a process, against ~0.2 s of page faults without).

mimalloc reads them when Arrow first allocates, so they are set here, before ``pyarrow`` is
used; a value already in the environment wins.
"""

import os

os.environ.setdefault("MIMALLOC_PURGE_DELAY", "-1")
os.environ.setdefault("MIMALLOC_ALLOW_THP", "0")
