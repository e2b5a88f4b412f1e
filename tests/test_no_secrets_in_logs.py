"""No secret ever reaches a log line, an exception message or an error answer.

One run captures *all* logging (the root logger at DEBUG, with ``httpx``,
``httpcore``, ``werkzeug``, ``uvicorn`` and ``crossmint_wsgi`` propagating to
it) while many scenarios go through the API and both middlewares,
in-process and behind real servers (werkzeug's and uvicorn, in threads):
logins, refreshes, logouts, hostile tokens, every fault of the fault table,
the bad-input table, Crossmint down and slow. Every secret the emulator
issues is recorded as it is minted (its API key, each JWT, each refresh
secret, each one-time secret); then the captured log, every exception
message and every error body are searched for each of them, whole and by a
telling fragment (a JWT's signature, a secret's first 16 characters).

The test's own client for the real servers is ``http.client``, which logs
nothing: the answers it reads carry Set-Cookie headers full of secrets, and
what must be proven clean is the library's logging, not a test client's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import uvicorn
from reliability_cases import (
    BAD_INPUT_ROWS,
    FAULT_CASES,
    HOSTILE_TOKENS,
    PROTECTED,
    Reply,
    Req,
    asgi_stack,
    call_asgi,
    call_httpx,
    call_wsgi,
    cookie_header,
    make_async_auth,
    make_auth,
    material_cookie,
    no_cookie_client,
    run_fault_case_asgi,
    run_fault_case_wsgi,
    wsgi_stack,
)
from werkzeug.serving import make_server

from crossmint_wsgi import CrossmintAuthError
from crossmint_wsgi.testing import CrossmintEmulator

LOGGERS = (
    "crossmint_wsgi",
    "httpx",
    "httpcore",
    "werkzeug",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "asyncio",
)


class Capture(logging.Handler):
    """Keeps every record, formatted with its traceback if any."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []
        self.names: set[str] = set()
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        with self._guard:
            self.lines.append(text)
            self.names.add(record.name)


@contextlib.contextmanager
def capture_all_logging() -> Iterator[Capture]:
    """The root logger at DEBUG with a capturing handler; every named logger propagating."""
    handler = Capture()
    root = logging.getLogger()
    saved = [(root, root.level, root.propagate, root.disabled)]
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate, logger.disabled))
        logger.setLevel(logging.DEBUG)
        logger.propagate = True
        logger.disabled = False
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for logger, level, propagate, disabled in saved:
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled


def record_issued_secrets(emulator: CrossmintEmulator) -> dict[str, str]:
    """Every secret the emulator mints from now on, labelled, as it is minted.

    Wraps the emulator state's two minting points: ``_grant`` (refresh and
    one-time secrets) and ``_sign`` (every JWT).
    """
    secrets = {"api-key 0": emulator.api_key}
    numbers = itertools.count(1)
    state: Any = emulator._state
    grant, sign = state._grant, state._sign

    def recording_grant(user_id: str, *, one_time: bool, now: float) -> tuple[str, float]:
        secret, expires_at = grant(user_id, one_time=one_time, now=now)
        kind = "one-time secret" if one_time else "refresh secret"
        secrets[f"{kind} {next(numbers)}"] = secret
        return secret, expires_at  # type: ignore[no-any-return]

    def recording_sign(*args: Any, **kwargs: Any) -> str:
        token = sign(*args, **kwargs)
        secrets[f"jwt {next(numbers)}"] = token
        return token  # type: ignore[no-any-return]

    state._grant = recording_grant
    state._sign = recording_sign
    return secrets


def fragments(label: str, secret: str) -> list[str]:
    """The whole secret, and the part of it that alone would give it away."""
    found = [secret]
    if label.startswith("jwt") and secret.count(".") == 2:
        signature = secret.rsplit(".", 1)[1]
        if len(signature) >= 16:
            found.append(signature)
    elif len(secret) >= 24:
        found.append(secret[:16])
    return found


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    """The labels of the secrets that ``text`` gives away."""
    return [
        label
        for label, secret in secrets.items()
        if any(fragment in text for fragment in fragments(label, secret))
    ]


@dataclasses.dataclass
class Run:
    """What one run of every scenario produced."""

    log: Capture
    secrets: dict[str, str]
    errors: list[str] = dataclasses.field(default_factory=list)
    bodies: list[str] = dataclasses.field(default_factory=list)

    def error(self, error: BaseException) -> None:
        self.errors.extend((str(error), repr(error)))

    def reply(self, reply: Reply | None) -> None:
        """Keep what must be secret-free: error bodies, and what the app was told."""
        if reply is None:
            return
        data = reply.json()
        if reply.status >= 400:
            self.bodies.append(reply.body.decode("latin-1"))
        elif reply.app_ran and isinstance(data, dict) and data.get("message"):
            self.bodies.append(str(data["message"]))


# -- the scenarios ------------------------------------------------------------------------


def api_scenarios(emulator: CrossmintEmulator, run: Run) -> None:
    """The blocking API: login, refresh, reuse, hostile tokens, users, logout, faults."""
    with make_auth(emulator.crossmint(), leeway=0, timeout=0.5) as auth:
        material = auth.refresh(emulator.one_time_secret("api-user", email="a@example.com"))
        auth.get_session(jwt=material.jwt)
        expired = emulator.create_session("api-user", jwt_ttl=-60)
        auth.get_session(jwt=expired.jwt, refresh_token=expired.refresh_token.secret)
        attempts: list[Callable[[], object]] = [
            # The secret was just used: with reuse_window 0 it is refused now.
            lambda: auth.get_session(jwt=expired.jwt, refresh_token=expired.refresh_token.secret),
            lambda: auth.refresh(expired.refresh_token.secret),
            lambda: auth.get_user("nobody"),
            lambda: auth.verify_crossmint_jwt(expired.jwt),
        ]
        owner = emulator.create_session("api-owner")
        for hostile in HOSTILE_TOKENS:
            token = hostile.make(emulator)
            attempts.append(lambda token=token: auth.get_session(jwt=token))
            attempts.append(lambda token=token: auth.verify_crossmint_jwt(token))
        for attempt in attempts:
            try:
                attempt()
            except CrossmintAuthError as error:
                run.error(error)
        auth.get_session(
            jwt=HOSTILE_TOKENS[0].make(emulator), refresh_token=owner.refresh_token.secret
        )
        auth.get_user("api-user")
        answer = auth.handle_custom_refresh(body={"refresh": "not-a-secret"})
        run.bodies.append(answer.body.decode())
        answer = auth.handle_custom_refresh(body=b"{not json")
        run.bodies.append(answer.body.decode())
        for fault in ("down", "slow", "garbage"):
            session = emulator.create_session("api-user", jwt_ttl=-60)
            if fault == "down":
                emulator.set_down(True)
            elif fault == "slow":
                emulator.set_latency(1.0)
            else:
                emulator.fail_next(3, status=200, body=b'{"jwt": "a.b", "refresh":')
            jwt, secret = session.jwt, session.refresh_token.secret
            for attempt in (
                lambda: auth.get_session(jwt=jwt, refresh_token=secret),  # noqa: B023
                lambda: auth.refresh(secret),  # noqa: B023
                lambda: auth.get_user("api-user"),
            ):
                try:
                    attempt()
                except CrossmintAuthError as error:
                    run.error(error)
            auth.logout(refresh_token=session.refresh_token.secret)
            emulator.reset()
        auth.logout(refresh_token=material.refresh_token.secret)


def wsgi_scenarios(emulator: CrossmintEmulator, run: Run) -> None:
    for case in FAULT_CASES:
        for result in run_fault_case_wsgi(emulator, case):
            run.reply(result.reply)
    with make_auth(emulator.crossmint(), leeway=0) as auth:
        app = wsgi_stack(auth)
        for row in BAD_INPUT_ROWS:
            run.reply(call_wsgi(app, row.build(emulator)))
        owner = emulator.create_session("wsgi-owner")
        for hostile in HOSTILE_TOKENS:
            token = hostile.make(emulator)
            run.reply(call_wsgi(app, Req(path=PROTECTED, cookie=cookie_header(token))))
            with_refresh = cookie_header(token, owner.refresh_token.secret)
            run.reply(call_wsgi(app, Req(path=PROTECTED, cookie=with_refresh)))


async def asgi_scenarios(emulator: CrossmintEmulator, run: Run) -> None:
    for case in FAULT_CASES:
        if any(word in case.id for word in ("down", "refused", "reset", "answer", "5xx")):
            for result in await run_fault_case_asgi(emulator, case):
                run.reply(result.reply)
    async with make_async_auth(emulator.crossmint(), leeway=0) as auth:
        app = asgi_stack(auth)
        for row in BAD_INPUT_ROWS:
            run.reply(await call_asgi(app, row.build(emulator)))
        async with no_cookie_client(app) as client:
            for hostile in HOSTILE_TOKENS:
                req = Req(path=PROTECTED, cookie=cookie_header(hostile.make(emulator)))
                run.reply(await call_httpx(client, req))
        for fault in ("valid", "rejected", "down"):
            session = emulator.create_session("asgi-user", jwt_ttl=-60)
            if fault == "rejected":
                emulator.fail_next(1, status=401, endpoint="refresh")
            elif fault == "down":
                emulator.set_down(True)
            try:
                await auth.get_session(jwt=session.jwt, refresh_token=session.refresh_token.secret)
            except CrossmintAuthError as error:
                run.error(error)
            await auth.logout(refresh_token=session.refresh_token.secret)
            emulator.reset()


def _http(
    port: int, method: str, path: str, *, cookie: bytes | None = None, body: bytes | None = None
) -> tuple[int, list[str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if cookie is not None:
        headers["Cookie"] = cookie.decode("latin-1")
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers.get_all("Set-Cookie") or [], response.read()
    finally:
        connection.close()


def _cookies_from(set_cookies: list[str]) -> bytes:
    pairs = [line.split(";", 1)[0] for line in set_cookies if line.startswith("crossmint-")]
    return "; ".join(pairs).encode()


def browse(emulator: CrossmintEmulator, port: int, run: Run) -> None:
    """A browser's life against a real server: login, pages, silent refresh, logout, outage."""
    secret = emulator.one_time_secret("browser-user", email="b@example.com")
    status, set_cookies, body = _http(
        port, "POST", "/refresh", body=json.dumps({"refresh": secret}).encode()
    )
    assert status == 200, body
    jar = _cookies_from(set_cookies)
    for path in (PROTECTED, "/public"):
        _http(port, "GET", path, cookie=jar)
    expired = emulator.create_session("browser-user", jwt_ttl=-60)
    status, set_cookies, _ = _http(port, "GET", PROTECTED, cookie=material_cookie(expired))
    assert status == 200
    status, _, body = _http(port, "GET", PROTECTED, cookie=material_cookie(expired))
    run.bodies.append(body.decode("latin-1"))  # reused secret: the grace cache answers
    for hostile in HOSTILE_TOKENS[:6]:
        _, _, body = _http(port, "GET", PROTECTED, cookie=cookie_header(hostile.make(emulator)))
        run.bodies.append(body.decode("latin-1"))
    _, _, body = _http(port, "POST", "/refresh", body=b"{broken")
    run.bodies.append(body.decode("latin-1"))
    stale = emulator.create_session("browser-user", jwt_ttl=-60)
    emulator.set_down(True)
    _, _, body = _http(port, "GET", PROTECTED, cookie=material_cookie(stale))
    run.bodies.append(body.decode("latin-1"))
    _, _, body = _http(port, "POST", "/logout", cookie=material_cookie(stale))
    emulator.set_down(False)
    _http(port, "POST", "/logout", cookie=jar)


def werkzeug_server_scenarios(emulator: CrossmintEmulator, run: Run) -> None:
    with make_auth(emulator.crossmint(), leeway=0, timeout=0.5) as auth:
        server = make_server("127.0.0.1", 0, wsgi_stack(auth), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            browse(emulator, server.port, run)
        finally:
            server.shutdown()
            thread.join()
            server.server_close()


def uvicorn_server_scenarios(emulator: CrossmintEmulator, run: Run) -> None:
    auth = make_async_auth(emulator.crossmint(), leeway=0, timeout=0.5)
    config = uvicorn.Config(
        asgi_stack(auth),
        host="127.0.0.1",
        port=0,
        log_config=None,
        log_level="debug",
        lifespan="off",
        access_log=True,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        browse(emulator, port, run)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    """Every scenario once, with all logging captured and every issued secret recorded."""
    with CrossmintEmulator() as emulator, capture_all_logging() as log:
        result = Run(log, record_issued_secrets(emulator))
        api_scenarios(emulator, result)
        wsgi_scenarios(emulator, result)
        anyio.run(asgi_scenarios, emulator, result, backend="asyncio")
        anyio.run(asgi_scenarios, emulator, result, backend="trio")
        werkzeug_server_scenarios(emulator, result)
        uvicorn_server_scenarios(emulator, result)
        yield result


# -- the checks ---------------------------------------------------------------------------


def test_the_run_minted_many_secrets(run: Run) -> None:
    kinds = {label.rsplit(" ", 1)[0] for label in run.secrets}
    assert kinds == {"api-key", "jwt", "refresh secret", "one-time secret"}
    assert len(run.secrets) > 300


def test_every_logger_family_was_heard(run: Run) -> None:
    """The capture really saw the library, the HTTP client and both servers."""
    families = {name.split(".")[0] for name in run.log.names}
    assert {"crossmint_wsgi", "httpx", "httpcore", "werkzeug", "uvicorn"} <= families
    text = "\n".join(run.log.lines)
    assert "HTTP Request: POST" in text  # httpx's request line, URL included
    assert "/refresh" in text
    assert len(run.log.lines) > 500


def test_no_secret_in_any_log_line(run: Run) -> None:
    text = "\n".join(run.log.lines)
    found = {
        label: next(line[:300] for line in run.log.lines if leaks(line, {label: secret}))
        for label, secret in run.secrets.items()
        if leaks(text, {label: secret})
    }
    assert found == {}


def test_no_secret_in_exception_messages(run: Run) -> None:
    assert len(run.errors) > 50
    assert {label for text in run.errors for label in leaks(text, run.secrets)} == set()


def test_no_secret_in_error_answers(run: Run) -> None:
    assert len(run.bodies) > 100
    assert {label for text in run.bodies for label in leaks(text, run.secrets)} == set()


def test_the_search_finds_a_planted_secret(run: Run) -> None:
    """The detector works: a JWT, its signature alone, a secret's prefix are all found."""
    label, token = next((k, v) for k, v in run.secrets.items() if k.startswith("jwt"))
    # Identical claims signed in the same second give identical JWTs: "in", not "==".
    assert label in leaks(f"got {token}", run.secrets)
    assert label in leaks(f"sig={token.rsplit('.', 1)[1]}", run.secrets)
    label, secret = next((k, v) for k, v in run.secrets.items() if k.startswith("refresh"))
    assert leaks(f"secret {secret[:16]}...", run.secrets) == [label]
    assert leaks(f"key {run.secrets['api-key 0']}", run.secrets) == ["api-key 0"]
    assert leaks("nothing here", run.secrets) == []
