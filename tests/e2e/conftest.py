"""Fixtures for the browser tests: chromium, a fresh context, a cross-site page server.

Playwright's own browser download is not available here: the tests drive
Debian's ``chromium`` (installed by tools/test.sh), and fail, never skip,
when it is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright
from support import ROOT, require_program

from .cross_site import CrossSiteServer

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]

#: Where screenshots go (gitignored); CI can keep the folder as an artifact.
ARTIFACTS = ROOT / "test-artifacts" / "e2e"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian chromium, one per test module."""
    executable = require_program("chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies, no cache) for one scenario."""
    fresh = browser.new_context()
    fresh.set_default_timeout(20_000)
    try:
        yield fresh
    finally:
        fresh.close()


@pytest.fixture
def artifacts() -> Path:
    """The folder for this run's screenshots."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def cross_site() -> Iterator[CrossSiteServer]:
    """A second local web server, another origin than the app under test."""
    with CrossSiteServer() as server:
        yield server
