"""The whole check, one nox session per concern: ``bash tools/test.sh`` runs them all.

- ``lint``: ruff and mypy --strict, once, in the development environment (``.venv``).
- ``tests-3.11``: the whole suite, browser tests included, in ``.venv`` (Python 3.11).
- ``tests-3.10``, ``tests-3.12``, ``tests-3.13``: the suite without the browser tests, each in
  its own virtual environment under ``.nox/``.

The ``.venv`` sessions run in the interpreter that runs nox (``.venv/bin/nox``), so the
development environment that ``tools/demo.sh`` and ``bench/`` use is the one tested. Arguments
after ``--`` go to pytest. Interpreters are taken from pyenv's installed versions when it has
them, else from ``PATH``; nox never downloads one, and a missing one is an error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

#: The development environment's Python: ``.venv``, the browser tests, lint.
DEV_PYTHON = "3.11"
#: Every other supported Python (setup.cfg's classifiers name the same four).
OTHER_PYTHONS = ["3.10", "3.12", "3.13"]
#: One browser run is enough: what the browser sees does not depend on the server's Python.
BROWSER_TESTS = "tests/e2e"

nox.options.sessions = ["lint", f"tests-{DEV_PYTHON}", "tests"]
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "never"
nox.options.reuse_venv = "yes"
nox.options.default_venv_backend = "virtualenv"


def _pyenv_versions() -> list[Path]:
    """The ``bin`` folders of pyenv's installed interpreters, newest patch release first."""
    # What `pyenv root` prints: $PYENV_ROOT, else ~/.pyenv.
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    if not versions.is_dir():
        return []

    def release(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in path.name.split(".") if part.isdigit())

    found = [path for path in versions.iterdir() if (path / "bin").is_dir()]
    return [path / "bin" for path in sorted(found, key=release, reverse=True)]


def _find_interpreters() -> None:
    """Put pyenv's installed interpreters first on ``PATH``.

    pyenv's shims answer to every ``python3.X`` name but run only the versions
    selected in pyenv, so finding a name on ``PATH`` proves nothing.
    """
    extra: list[str] = []
    for wanted in OTHER_PYTHONS:
        for bin_dir in _pyenv_versions():
            if (bin_dir / f"python{wanted}").is_file():
                extra.append(str(bin_dir))
                break
    if extra:
        os.environ["PATH"] = os.pathsep.join([*extra, os.environ.get("PATH", "")])


_find_interpreters()


def _pytest(session: nox.Session, python: str, *args: str) -> None:
    # Any exit code but 0 fails the session: pytest's 5 (no test ran) too.
    session.run(python, "-m", "pytest", *args, external=True)


def _in_dev_venv(session: nox.Session) -> None:
    if f"{sys.version_info.major}.{sys.version_info.minor}" != DEV_PYTHON:
        session.error(f"run nox from the {DEV_PYTHON} development environment: .venv/bin/nox")


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy --strict, once."""
    _in_dev_venv(session)
    session.run(sys.executable, "-m", "ruff", "check", ".", external=True)
    session.run(sys.executable, "-m", "ruff", "format", "--check", ".", external=True)
    session.run(sys.executable, "-m", "mypy", "--strict", "crossmint_wsgi", external=True)


@nox.session(name=f"tests-{DEV_PYTHON}", venv_backend="none")
def tests_dev(session: nox.Session) -> None:
    """The whole suite in ``.venv``, browser tests included; ``-- ARGS`` go to pytest."""
    _in_dev_venv(session)
    _pytest(session, sys.executable, *session.posargs)


@nox.session(python=OTHER_PYTHONS)
def tests(session: nox.Session) -> None:
    """The suite on each other supported Python, without the browser tests."""
    session.install("-e", ".[test]")
    _pytest(session, "python", f"--ignore={BROWSER_TESTS}", *session.posargs)
