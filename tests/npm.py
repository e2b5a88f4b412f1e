"""npm installs for the tests that run Crossmint's own JS SDKs.

Each install lives in a gitignored folder under ``.cache/``, is made by
``npm ci`` from a lockfile in ``tests/js/``, and is redone only when its inputs
change. One install at a time, across processes (pytest-xdist workers).
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from support import require_program

#: Seconds ``npm ci`` or a build may take.
NPM_TIMEOUT = 300


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the lock file ``path``, across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run(command: list[str], cwd: Path) -> None:
    """Run ``command`` in ``cwd``; fail the test with its output when it fails or hangs."""
    shown = f"{' '.join(command)} (in {cwd})"
    try:
        result = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=NPM_TIMEOUT
        )
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(
            f"{shown} took over {NPM_TIMEOUT}s\n"
            f"stdout:\n{timeout.stdout!r}\nstderr:\n{timeout.stderr!r}",
            pytrace=False,
        )
    if result.returncode != 0:
        pytest.fail(
            f"{shown} failed with {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}",
            pytrace=False,
        )


def npm_installed(
    source: Path,
    target: Path,
    *,
    copied: Sequence[str],
    stamped: Sequence[str],
    stamp: str,
    product: Path,
    build: Callable[[], None] | None = None,
) -> None:
    """Make sure ``target`` holds ``npm ci`` of ``source`` (and ``build``'s output).

    :param copied: the files of ``source`` copied into ``target`` before ``npm ci``.
    :param stamped: the files of ``source`` whose bytes, recorded in the file
        ``stamp`` of ``target``, tell whether the install is current.
    :param product: a file the install (or ``build``) makes; missing, it is redone.
    :param build: run in ``target`` after ``npm ci``, when the install is redone.
    """
    inputs = b"".join((source / name).read_bytes() for name in stamped)
    stamp_file = target / stamp
    with locked(target.parent / f"{target.name}.lock"):
        if stamp_file.exists() and stamp_file.read_bytes() == inputs and product.exists():
            return
        target.mkdir(parents=True, exist_ok=True)
        stamp_file.unlink(missing_ok=True)
        for name in copied:
            shutil.copyfile(source / name, target / name)
        npm = require_program("npm")
        run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], target)
        if build is not None:
            build()
        stamp_file.write_bytes(inputs)
