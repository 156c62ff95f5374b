"""Bulk usage ingestion: validate, deduplicate against all history, quarantine, aggregate, post.

Arrow's allocator settings that make intake cheaper are set by the process entry points, not
on import (``quote2cash.allocator``).
"""
