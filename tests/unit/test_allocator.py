"""Arrow's allocator settings are made by the ``q2c`` entry point before pyarrow loads, and
importing the library changes no environment variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

PROBE = """
import json, os, sys
from quote2cash.usage import intake, validation  # the library: no settings on import
imported = {k: os.environ.get(k) for k in ("MIMALLOC_PURGE_DELAY", "MIMALLOC_ALLOW_THP")}
del intake, validation
for name in [m for m in sys.modules if m == "pyarrow" or m.startswith(("pyarrow.", "quote2cash"))]:
    del sys.modules[name]
import quote2cash.cli
loaded_before_main = "pyarrow" in sys.modules
try:
    quote2cash.cli.main(["--help"])
except SystemExit:
    pass
after = {k: os.environ.get(k) for k in ("MIMALLOC_PURGE_DELAY", "MIMALLOC_ALLOW_THP")}
print(json.dumps({"imported": imported, "cli_loads_pyarrow": loaded_before_main, "after": after}))
"""


def _probe(**preset: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_")}
    env.update(preset, PYTHONPATH=str(SRC))
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_entry_point_sets_the_allocator_defaults_and_the_library_does_not() -> None:
    found = _probe()
    assert found["imported"] == {"MIMALLOC_PURGE_DELAY": None, "MIMALLOC_ALLOW_THP": None}
    assert found["cli_loads_pyarrow"] is False  # so main() sets them before Arrow loads
    assert found["after"] == {"MIMALLOC_PURGE_DELAY": "-1", "MIMALLOC_ALLOW_THP": "0"}


def test_a_value_in_the_environment_wins() -> None:
    found = _probe(MIMALLOC_PURGE_DELAY="10")
    assert found["imported"] == {"MIMALLOC_PURGE_DELAY": "10", "MIMALLOC_ALLOW_THP": None}
    assert found["after"] == {"MIMALLOC_PURGE_DELAY": "10", "MIMALLOC_ALLOW_THP": "0"}
