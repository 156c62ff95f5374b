"""Retention: processed events older than their class's period move to Parquet files (with the
hashes of their audit entries) and leave the store; a file can be put back for replay."""
