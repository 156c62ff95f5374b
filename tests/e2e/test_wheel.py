"""Installed as users install it: the built wheel, with its ``sandbox`` extra, in a fresh
virtualenv, runs ``q2c demo --quick`` from an empty folder (no repository, no ``config/``); what
it prints and leaves in its store is checked in full (``support.demo_checks``): this is CI's one
run of the quick demo on Tryton."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from support.demo_checks import check_quick_demo

ROOT = Path(__file__).resolve().parents[2]


def run(
    args: list[str | Path], *, timeout: float, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs
    )  # type: ignore[call-overload]
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def build_wheel(tmp_path: Path) -> Path:
    """Build from a copy of the sources, so the worktree gets no build/ or egg-info."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source], timeout=300)
    (wheel,) = dist.glob("quote2cash-*.whl")
    return wheel


def test_the_wheel_runs_the_quick_demo_from_an_empty_folder(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "quote2cash/defaults/config/catalog.yaml" in names
    assert "quote2cash/defaults/observability/alerts.yml" in names
    assert "quote2cash/store/migrations/alembic.ini" in names or any(
        n.startswith("quote2cash/store/migrations/versions/") for n in names
    )
    assert not any(n.startswith(("config/", "tests/")) for n in names)

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=120)
    python = venv / "bin" / "python"
    install = ["install", "-q", "--no-compile", f"{wheel}[sandbox]"]
    run([sys.executable, "-m", "pip", "--python", python, *install], timeout=600)

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("Q2C_", "PYTHON", "VIRTUAL_ENV")) or k == "Q2C_CACHE_DIR"
    }
    env["COLUMNS"] = "140"  # the width the summary's checks read it at (rich reads COLUMNS)
    done = subprocess.run(
        [str(venv / "bin" / "q2c"), "demo", "--quick"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "Traceback" not in output
    assert any(line.startswith("reconciled: ") for line in done.stdout.splitlines()), output[-3000:]
    check_quick_demo(done.stdout, empty / ".q2c" / "demo")
