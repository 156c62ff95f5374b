"""``q2c demo``: quote to cash end to end on the local sandbox (``quote_to_cash``).

The earlier engine-only demo (simulated systems, replay with maker-checker) is kept in
``engine_demo``.
"""

from quote2cash.demo.quote_to_cash import run_demo

__all__ = ["run_demo"]
