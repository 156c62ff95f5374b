"""quote2cash: the quote-to-cash integration hub."""

__version__ = "0.1.0.dev0"
