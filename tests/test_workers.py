"""crossmint_wsgi.workers: the worker count a server declares, and the one warning about it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.workers.base import Worker

from crossmint_wsgi.workers import Workers, warn_without_shared_coordinator, workers


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        pytest.param(["python", "app.py"], {}, None, id="no-server"),
        pytest.param(
            ["python", "app.py"], {"WEB_CONCURRENCY": "4"}, None, id="no-server-with-concurrency"
        ),
        pytest.param(["/venv/bin/uvicorn", "app:app"], {}, 1, id="uvicorn-default"),
        pytest.param(["/venv/bin/uvicorn", "app:app", "--workers", "4"], {}, 4, id="workers"),
        pytest.param(["/venv/bin/uvicorn", "app:app", "--workers=3"], {}, 3, id="workers="),
        pytest.param(
            ["/usr/lib/python3/site-packages/uvicorn/__main__.py", "app:app", "--workers", "2"],
            {},
            2,
            id="python-m-uvicorn",
        ),
        pytest.param(
            ["/venv/bin/uvicorn", "app:app"], {"WEB_CONCURRENCY": "5"}, 5, id="web-concurrency"
        ),
        pytest.param(
            ["/venv/bin/uvicorn", "app:app", "--workers", "2"],
            {"WEB_CONCURRENCY": "5"},
            2,
            id="flag-over-environment",
        ),
    ],
)
def test_uvicorn_worker_count(
    argv: list[str], environ: dict[str, str], expected: int | None
) -> None:
    found = workers(argv, environ)
    if expected is None:
        assert found is None
    else:
        assert found == Workers("uvicorn", expected, reporter=True)


class BootingWorker(Worker):  # type: ignore[misc]
    """A gunicorn worker, as far as loading the app goes: its config and its age."""

    def __init__(self, count: int, age: int) -> None:  # gunicorn's needs sockets and a master
        self.cfg = Config()
        self.cfg.set("workers", count)
        self.age = age

    def load_wsgi(self) -> Any:
        # Where gunicorn imports the app, and so where the app builds its auth.
        return workers(["python"], {})


@pytest.mark.parametrize(
    ("count", "age", "expected"),
    [
        pytest.param(4, 1, Workers("gunicorn", 4, reporter=True), id="first-of-four"),
        pytest.param(4, 3, Workers("gunicorn", 4, reporter=False), id="third-of-four"),
        pytest.param(1, 1, Workers("gunicorn", 1, reporter=True), id="alone"),
    ],
)
def test_gunicorn_worker_count_comes_from_its_config(
    count: int, age: int, expected: Workers
) -> None:
    assert BootingWorker(count, age).load_wsgi() == expected


@pytest.mark.parametrize(
    ("found", "warned"),
    [
        pytest.param(None, False, id="no-server"),
        pytest.param(Workers("gunicorn", 1, reporter=True), False, id="one-worker"),
        pytest.param(Workers("gunicorn", 4, reporter=False), False, id="not-the-reporter"),
        pytest.param(Workers("gunicorn", 4, reporter=True), True, id="gunicorn"),
        pytest.param(Workers("uvicorn", 2, reporter=True), True, id="uvicorn"),
    ],
)
def test_one_warning_naming_the_fix(
    found: Workers | None, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "crossmint_wsgi"):
        assert warn_without_shared_coordinator(found) is warned
    assert len(caplog.records) == int(warned)
    if warned:
        assert found is not None
        message = caplog.records[0].getMessage()
        assert f"{found.server} runs {found.count} workers" in message
        assert "CROSSMINT_REDIS_URL" in message
        assert "\n" not in message
