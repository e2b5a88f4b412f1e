"""Shared fixtures: async backends, auth objects bound to the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from crossmint_wsgi import AsyncCrossmintAuth, CrossmintAuth
from crossmint_wsgi.testing import CrossmintEmulator


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
