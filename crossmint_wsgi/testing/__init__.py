"""Test tools: a local Crossmint emulator, its pytest fixture and its command line.

Run it on its own with ``python -m crossmint_wsgi.testing``; in pytest, use
the ``crossmint_emulator`` fixture.
"""

from __future__ import annotations

from .emulator import CrossmintEmulator, connect_emulator

__all__ = ["CrossmintEmulator", "connect_emulator"]
