"""Shared fixtures: async backends, auth objects bound to the emulator."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from crossmint_wsgi import AsyncCrossmintAuth, CrossmintAuth
from crossmint_wsgi.testing import CrossmintEmulator


@pytest.fixture(scope="session", autouse=True)
def _host_store_of_this_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Servers this run starts keep their host store apart from other runs'."""
    saved = os.environ.get("CROSSMINT_HOST_STORE")
    os.environ["CROSSMINT_HOST_STORE"] = str(tmp_path_factory.mktemp("host-store"))
    yield
    if saved is None:
        del os.environ["CROSSMINT_HOST_STORE"]
    else:
        os.environ["CROSSMINT_HOST_STORE"] = saved


@pytest.fixture(autouse=True)
def _host_store_of_this_test(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test's auths share a host store with each other, never with another test's:
    one host per test, as a fresh deployment would be."""
    monkeypatch.setenv("CROSSMINT_HOST_STORE", str(tmp_path_factory.mktemp("host")))


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on asyncio and on trio."""
    return str(request.param)


@pytest.fixture
def auth(crossmint_emulator: CrossmintEmulator) -> Iterator[CrossmintAuth]:
    """A blocking auth object on the emulator, with no clock leeway so expiry is exact."""
    with CrossmintAuth(crossmint_emulator.crossmint(), leeway=0) as instance:
        yield instance


@pytest.fixture
async def async_auth(crossmint_emulator: CrossmintEmulator) -> AsyncIterator[AsyncCrossmintAuth]:
    """An async auth object on the emulator, with no clock leeway so expiry is exact."""
    async with AsyncCrossmintAuth(crossmint_emulator.crossmint(), leeway=0) as instance:
        yield instance
