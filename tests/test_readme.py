"""The README's two 20-line examples run as written, against the emulator."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from werkzeug.test import Client

from crossmint_wsgi.testing import CrossmintEmulator

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, re.DOTALL)


def _snippet(marker: str) -> str:
    (found,) = [code for code in SNIPPETS if marker in code]
    return found


def _run(code: str, emulator: CrossmintEmulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Execute a README snippet; create_crossmint answers with the emulator's config.

    The snippets call create_crossmint with a real key from the environment;
    the emulator's key is signed by the emulator, so it stands in for that call.
    """
    monkeypatch.setenv("SERVER_CROSSMINT_API_KEY", emulator.api_key)
    monkeypatch.setattr("crossmint_wsgi.create_crossmint", lambda key: emulator.crossmint())
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("marker", ["from flask import", "async def hello"])
def test_readme_has_each_example_once_and_short(marker: str) -> None:
    code = _snippet(marker)
    assert len(code.strip().splitlines()) <= 22


def test_flask_example(
    crossmint_emulator: CrossmintEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _run(_snippet("from flask import"), crossmint_emulator, monkeypatch)["app"]
    client = Client(app)
    assert client.get("/").text == "Hello, stranger"
    assert client.get("/api/me").status_code == 401
    assert client.get("/account").status_code == 401
    material = crossmint_emulator.create_session("ada", email="ada@example.com")
    client.set_cookie("crossmint-jwt", material.jwt)
    assert client.get("/").text == "Hello ada"
    assert client.get("/api/me").json == {"user_id": "ada", "email": None}


@pytest.mark.anyio
async def test_asgi_example(
    crossmint_emulator: CrossmintEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _run(_snippet("async def hello"), crossmint_emulator, monkeypatch)["app"]
    material = crossmint_emulator.create_session("grace")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/")).text == "Hello, stranger"
        assert (await client.get("/account")).status_code == 401
        answer = await client.get("/", headers={"cookie": f"crossmint-jwt={material.jwt}"})
        assert answer.text == "Hello grace"
