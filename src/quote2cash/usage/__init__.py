"""Bulk usage ingestion: validate, deduplicate against all history, quarantine, aggregate, post."""
