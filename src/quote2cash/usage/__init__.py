"""Bulk usage ingestion: validate, deduplicate against all history, quarantine, aggregate, post.

Arrow's allocator (mimalloc) hands freed pages back to the system after 10 ms by default, so
each chunk of a million records faulted its working memory in again (a third of intake's CPU
went to the kernel). Intake keeps them (``MIMALLOC_PURGE_DELAY=-1``): its memory stays at the
size one chunk needs (``Q2C_USAGE_CHUNK_ROWS``), as before, without paying for it per chunk.
mimalloc reads the option when it first needs it; a value set in the environment wins.
"""

import os

os.environ.setdefault("MIMALLOC_PURGE_DELAY", "-1")
