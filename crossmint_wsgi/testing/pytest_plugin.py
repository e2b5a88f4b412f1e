"""The ``crossmint_emulator`` pytest fixture, registered as the ``crossmint_emulator`` plugin.

One emulator serves the whole test session (generating its keys and
starting its server once); each test gets it freshly :meth:`reset
<crossmint_wsgi.testing.CrossmintEmulator.reset>`: no sessions, counters,
faults, latency or downtime left over, and the constructor's lifetimes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .emulator import CrossmintEmulator

__all__ = ["crossmint_emulator"]


@pytest.fixture(scope="session")
def _crossmint_emulator_server() -> Iterator[CrossmintEmulator]:
    # Imported here so that merely having the plugin installed costs nothing.
    from .emulator import CrossmintEmulator

    with CrossmintEmulator() as emulator:
        yield emulator


@pytest.fixture
def crossmint_emulator(
    _crossmint_emulator_server: CrossmintEmulator,
) -> Iterator[CrossmintEmulator]:
    """A started :class:`~crossmint_wsgi.testing.CrossmintEmulator`, reset for this test.

    Its URL, API key and signing keys are shared by the whole session;
    keys rotated by one test stay rotated for the next.
    """
    _crossmint_emulator_server.reset()
    yield _crossmint_emulator_server
    _crossmint_emulator_server.reset()
