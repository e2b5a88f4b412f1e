"""The frameworks stay optional: ``import crossmint_wsgi`` imports none of them, and each
``crossmint_wsgi.contrib`` module imports its own framework only. Checked in a fresh
interpreter, since this test process has imported them all.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FRAMEWORKS = ("django", "fastapi", "flask", "bottle", "quart", "starlette")


def frameworks_imported_by(*modules: str) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m in {list(FRAMEWORKS)!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return list(json.loads(done.stdout))


@pytest.mark.parametrize(
    ("modules", "frameworks"),
    [
        pytest.param(["crossmint_wsgi", "crossmint_wsgi.contrib"], [], id="the-package"),
        # FastAPI is built on Starlette.
        pytest.param(["crossmint_wsgi.contrib.fastapi"], ["fastapi", "starlette"], id="fastapi"),
        pytest.param(["crossmint_wsgi.contrib.starlette"], ["starlette"], id="starlette"),
        # Importing the Django module needs no settings: they are read by the middleware.
        pytest.param(["crossmint_wsgi.contrib.django"], ["django"], id="django"),
        pytest.param(["crossmint_wsgi.contrib.quart"], ["flask", "quart"], id="quart"),
    ],
)
def test_each_module_imports_its_framework_only(modules: list[str], frameworks: list[str]) -> None:
    assert frameworks_imported_by(*modules) == frameworks
