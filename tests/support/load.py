"""How loaded this machine is, for the few tests whose bounds are wall-clock time."""

from __future__ import annotations

import os


def load_factor() -> float:
    """How much slower than a quiet machine this one runs now (load average per core, at least
    1): a test's time bounds stretch by it, so a machine shared with other work slows a run
    down instead of failing it, while a hub that is truly stuck still fails."""
    return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
