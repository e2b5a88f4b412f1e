"""The reliability matrices: faults, bad input and hostile tokens, as data, with their runners.

One source for two readers: the tests (``test_faults.py``, ``test_bad_input.py``,
``test_hostile_tokens.py``) assert every case, and ``bench/reliability_report.py``
runs the very same cases and writes the table in ``docs/RELIABILITY.md``.

Everything goes through the real middlewares in front of a *probe app* that
checks, on every request it serves, that what the middleware published is
fully decided (a :class:`Session` or ``None``, and an error that agrees with
it) and that a protected path is never reached without a session. The
Crossmint side is the real emulator on loopback, with its fault controls.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hashlib
import hmac
import io
import json
import posixpath
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

import anyio
import anyio.lowlevel
import httpx
from joserfc import jwe
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, RSAKey

from crossmint_wsgi import (
    AsyncCrossmintAuth,
    AuthMaterial,
    CrossmintASGIMiddleware,
    CrossmintAuth,
    CrossmintAuthError,
    CrossmintWSGIMiddleware,
    Session,
)
from crossmint_wsgi.config import Crossmint, build_crossmint
from crossmint_wsgi.flows import FetchKeys
from crossmint_wsgi.testing import CrossmintEmulator
from crossmint_wsgi.tokens import TokenInvalid

JWT_COOKIE = "crossmint-jwt"
REFRESH_COOKIE = "crossmint-refresh-token"
PROTECTED = "/protected"
PUBLIC = "/public"
HOST = "testserver"
#: The timeout the fault cases give the auth objects, in seconds: long enough
#: that a loaded 2-core machine answers a healthy emulator call within it.
TIMEOUT = 1.0
#: How much slower than its timeout a request may finish: a correctness bound
#: (nothing waits for Crossmint past the timeout), below the injected latency,
#: and wide enough for a loaded 2-core CI machine (1.52 s was seen against 1.3).
MARGIN = 1.5
#: The latency injected for "Crossmint slower than the timeout".
SLOW = 3.0

ERROR_CODES = frozenset(
    {
        "MISSING_SESSION",
        "SESSION_EXPIRED",
        "INVALID_TOKEN",
        "UPSTREAM_UNAVAILABLE",
        "INVALID_REQUEST",
        "FORBIDDEN_ORIGIN",
    }
)


# -- auth objects -------------------------------------------------------------------------


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def make_auth(crossmint: Crossmint, **settings: Any) -> CrossmintAuth:
    """A :class:`CrossmintAuth` with fresh caches whose transport reuses one SSL context.

    Each ``httpx.Client`` otherwise loads the CA bundle again (0.3 to 0.6 s
    here): too slow for hundreds of test cases. The transport is the one
    httpx would build, with the same context.
    """
    transport = httpx.HTTPTransport(verify=_ssl_context())
    return CrossmintAuth(crossmint, transport=transport, **settings)


def make_async_auth(crossmint: Crossmint, **settings: Any) -> AsyncCrossmintAuth:
    """As :func:`make_auth`, for :class:`AsyncCrossmintAuth`."""
    transport = httpx.AsyncHTTPTransport(verify=_ssl_context())
    return AsyncCrossmintAuth(crossmint, transport=transport, **settings)


# -- the probe app ------------------------------------------------------------------------


class HalfDecided(AssertionError):
    """The app was handed a session state that is not fully decided, or reached unprotected."""


def is_protected(path: str) -> bool:
    """The app's own idea of its protected area, computed independently of the middleware."""
    normalized = posixpath.normpath("/" + path.lstrip("/"))
    return normalized == PROTECTED or normalized.startswith(PROTECTED + "/")


def check_published(session: object, error: object, path: str) -> None:
    """What every app behind the middleware may rely on; raises :class:`HalfDecided`."""
    if session is not None and not isinstance(session, Session):
        raise HalfDecided(f"the session is a {type(session).__name__}, not a Session")
    if error is not None and not isinstance(error, CrossmintAuthError):
        raise HalfDecided(f"the error is a {type(error).__name__}, not a CrossmintAuthError")
    if session is not None and error is not None:
        raise HalfDecided(f"a session and an error ({error.code}) at once")  # type: ignore[attr-defined]
    if isinstance(session, Session) and (
        not session.user_id or session.claims.get("sub") != session.user_id
    ):
        raise HalfDecided("the session's user id is not its JWT's sub")
    if session is None and is_protected(path):
        raise HalfDecided(f"the app was reached on protected {path!r} without a session")


def _probe_body(session: Session | None, error: CrossmintAuthError | None) -> bytes:
    return json.dumps(
        {
            "user": session.user_id if session else None,
            "error": error.code.value if error else None,
            "message": error.message if error else None,
            "refreshed": bool(session and session.refreshed),
        }
    ).encode()


_PROBE_HEADERS = [
    ("Content-Type", "application/json"),
    ("X-Probe-App", "1"),
    # The app's own cookie: it must survive the middleware's appended ones.
    ("Set-Cookie", "probe=1; Path=/"),
]


def probe_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """A WSGI app that checks the published session and echoes it as JSON."""
    if "crossmint.session" not in environ or "crossmint.error" not in environ:
        raise HalfDecided("the middleware published nothing")
    session, error = environ["crossmint.session"], environ["crossmint.error"]
    check_published(session, error, environ.get("PATH_INFO", ""))
    start_response("200 OK", list(_PROBE_HEADERS))
    return [_probe_body(session, error)]


async def probe_asgi(
    scope: dict[str, Any],
    receive: Callable[[], Any],
    send: Callable[[dict[str, Any]], Any],
) -> None:
    """The ASGI twin of :func:`probe_wsgi`."""
    state = scope.get("state") or {}
    if "crossmint_session" not in state or "crossmint_error" not in state:
        raise HalfDecided("the middleware published nothing")
    session, error = state["crossmint_session"], state["crossmint_error"]
    check_published(session, error, scope.get("path", ""))
    body = _probe_body(session, error)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(k.lower().encode(), v.encode()) for k, v in _PROBE_HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": body})


MIDDLEWARE_SETTINGS: dict[str, Any] = {"protect": [f"{PROTECTED}/:path*"], "login_url": "/login"}


def wsgi_stack(auth: CrossmintAuth, **settings: Any) -> CrossmintWSGIMiddleware:
    """The probe app behind the WSGI middleware, protecting ``/protected``."""
    return CrossmintWSGIMiddleware(probe_wsgi, auth, **{**MIDDLEWARE_SETTINGS, **settings})


def asgi_stack(auth: AsyncCrossmintAuth, **settings: Any) -> CrossmintASGIMiddleware:
    """The probe app behind the ASGI middleware, protecting ``/protected``."""
    return CrossmintASGIMiddleware(
        probe_asgi,  # type: ignore[arg-type]
        auth,
        **{**MIDDLEWARE_SETTINGS, **settings},
    )


# -- requests and replies -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Req:
    """One HTTP request, as bytes on the wire would carry it.

    :param path: the raw request path, percent-encoding included.
    :param cookie: the raw ``Cookie`` header value.
    :param headers: more raw headers.
    :param body: the body; with ``chunked`` it is sent without a length.
    """

    method: str = "GET"
    path: str = PUBLIC
    query: str = ""
    cookie: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    body: bytes | None = None
    chunked: bool = False

    def describe(self) -> str:
        """A short, secret-free description for reports."""
        target = self.path + (f"?{self.query}" if self.query else "")
        extra = []
        if self.cookie is not None:
            extra.append(f"cookie {len(self.cookie)} B")
        if self.body is not None:
            extra.append(f"body {len(self.body)} B" + (" chunked" if self.chunked else ""))
        return f"{self.method} {target}" + (f" ({', '.join(extra)})" if extra else "")


@dataclasses.dataclass
class Reply:
    """What came back, and how long it took."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    seconds: float = 0.0

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    @property
    def set_cookies(self) -> list[str]:
        return [value for key, value in self.headers if key == "set-cookie"]

    @property
    def auth_cookies(self) -> dict[str, str]:
        """Name to value of every ``crossmint-*`` cookie the reply sets."""
        found = {}
        for line in self.set_cookies:
            name, _, rest = line.partition("=")
            if name.startswith("crossmint-"):
                found[name] = rest.split(";", 1)[0].strip('"')
        return found

    @property
    def app_ran(self) -> bool:
        return self.header("x-probe-app") == "1"

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def code(self) -> str | None:
        """The error code: the middleware's ``error``, or the one the app was handed."""
        data = self.json()
        return data.get("error") if isinstance(data, dict) else None

    @property
    def user(self) -> str | None:
        """The user the app was handed (app answers only)."""
        data = self.json()
        return data.get("user") if self.app_ran and isinstance(data, dict) else None

    def summary(self) -> str:
        """``status code``, for reports."""
        code = self.code
        return f"{self.status}" + (f" {code}" if code else "")


def wsgi_environ(req: Req) -> dict[str, Any]:
    body = req.body or b""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": req.method,
        "SCRIPT_NAME": "",
        # PEP 3333: the decoded path, its bytes as latin-1 text.
        "PATH_INFO": unquote_to_bytes(req.path).decode("latin-1"),
        "QUERY_STRING": req.query,
        "SERVER_NAME": HOST,
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": HOST,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if req.body is not None:
        if req.chunked:
            # What servers do for a chunked body: no length, a stream that ends.
            environ["HTTP_TRANSFER_ENCODING"] = "chunked"
            environ["wsgi.input_terminated"] = True
        else:
            environ["CONTENT_LENGTH"] = str(len(body))
        environ["CONTENT_TYPE"] = "application/json"
    if req.cookie is not None:
        environ["HTTP_COOKIE"] = req.cookie.decode("latin-1")
    for name, value in req.headers:
        key = name.upper().replace("-", "_")
        key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"
        environ[key] = value.decode("latin-1")
    return environ


def call_wsgi(app: Callable[..., Iterable[bytes]], req: Req) -> Reply:
    """Call a WSGI app in-process with exactly the bytes of ``req``."""
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"] = int(status.split(" ", 1)[0])
        captured["headers"] = [(name.lower(), value) for name, value in headers]
        return lambda data: None

    started = time.monotonic()
    result = app(wsgi_environ(req), start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return Reply(captured["status"], captured["headers"], body, time.monotonic() - started)


def asgi_scope(req: Req) -> dict[str, Any]:
    """The ASGI scope a server would build for ``req``."""
    headers: list[tuple[bytes, bytes]] = [(b"host", HOST.encode())]
    if req.body is not None:
        if req.chunked:
            headers.append((b"transfer-encoding", b"chunked"))
        elif not any(name.lower() == "content-length" for name, _ in req.headers):
            headers.append((b"content-length", str(len(req.body)).encode()))
        headers.append((b"content-type", b"application/json"))
    if req.cookie is not None:
        headers.append((b"cookie", req.cookie))
    headers.extend((name.lower().encode("latin-1"), value) for name, value in req.headers)
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": req.method,
        "scheme": "http",
        "path": unquote(req.path, errors="replace"),
        "raw_path": req.path.encode("latin-1", "replace"),
        "query_string": req.query.encode("latin-1", "replace"),
        "root_path": "",
        "headers": headers,
        "server": (HOST, 80),
        "client": ("127.0.0.1", 50000),
    }


async def call_asgi(app: Any, req: Req, *, chunk: int = 64 * 1024) -> Reply:
    """Call an ASGI app in-process with exactly the bytes of ``req`` (no HTTP client between)."""
    body = req.body or b""
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    queue = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await anyio.lowlevel.checkpoint()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    started = time.monotonic()
    await app(asgi_scope(req), receive, send)
    seconds = time.monotonic() - started
    start = next(message for message in sent if message["type"] == "http.response.start")
    headers = [
        (bytes(name).decode("latin-1").lower(), bytes(value).decode("latin-1"))
        for name, value in start.get("headers", [])
    ]
    data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Reply(start["status"], headers, data, seconds)


def no_cookie_client(app: Any) -> httpx.AsyncClient:
    """An httpx client on ``httpx.ASGITransport`` that never keeps a cookie between requests."""
    jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=f"http://{HOST}", cookies=jar
    )


async def call_httpx(client: httpx.AsyncClient, req: Req) -> Reply:
    """Send ``req`` through ``httpx.ASGITransport``, as a real client library would."""
    headers: list[tuple[str, bytes]] = list(req.headers)
    if req.cookie is not None:
        headers.append(("cookie", req.cookie))
    content: bytes | AsyncIterator[bytes] | None = req.body
    if req.body is not None:
        headers.append(("content-type", b"application/json"))
        if req.chunked:
            data = req.body

            async def stream() -> AsyncIterator[bytes]:
                for i in range(0, len(data), 64 * 1024):
                    yield data[i : i + 64 * 1024]

            content = stream()
    url = req.path + (f"?{req.query}" if req.query else "")
    started = time.monotonic()
    response = await client.request(req.method, url, headers=headers, content=content)
    seconds = time.monotonic() - started
    pairs = [
        (name.decode("latin-1").lower(), value.decode("latin-1"))
        for name, value in response.headers.raw
    ]
    return Reply(response.status_code, pairs, response.content, seconds)


# -- cookies and sessions ------------------------------------------------------------------


def cookie_header(jwt: str | None = None, refresh: str | None = None, *, extra: str = "") -> bytes:
    """A ``Cookie`` header carrying the two auth cookies."""
    parts = []
    if jwt is not None:
        parts.append(f"{JWT_COOKIE}={jwt}")
    if refresh is not None:
        parts.append(f"{REFRESH_COOKIE}={refresh}")
    if extra:
        parts.append(extra)
    return "; ".join(parts).encode("latin-1")


def material_cookie(material: AuthMaterial, *, jwt: bool = True) -> bytes:
    return cookie_header(material.jwt if jwt else None, material.refresh_token.secret)


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's payload, unverified (to see whose session a cookie holds)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def header_of(token: str) -> dict[str, Any]:
    """A JWT's header, unverified."""
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))  # type: ignore[no-any-return]


# -- expectations -------------------------------------------------------------------------

UNTOUCHED = "untouched"
CLEARED = "cleared"
NEW_SESSION = "session"


@dataclasses.dataclass(frozen=True)
class Expect:
    """What a reply must be.

    :param status: the HTTP status.
    :param code: the error code in the JSON (the middleware's answer, or what
        the app was handed); ``None`` means no error.
    :param app: whether the app ran (``None``: not checked).
    :param user: whether the app was handed the case's user (``True``), no
        user (``False``), or not checked (``None``).
    :param cookies: ``"untouched"`` (no auth Set-Cookie), ``"cleared"`` or
        ``"session"`` (a new JWT and refresh secret for the case's user).
    :param within: seconds the request may take at most (a correctness
        bound: nothing waits for Crossmint past its timeout).
    """

    status: int
    code: str | None = None
    app: bool | None = None
    user: bool | None = None
    cookies: str = UNTOUCHED
    within: float | None = None

    def describe(self) -> str:
        if self.app and self.code:
            text = f"{self.status}, app told {self.code}"
        else:
            text = f"{self.status}" + (f" {self.code}" if self.code else "")
        text += {UNTOUCHED: "", CLEARED: ", cookies cleared", NEW_SESSION: ", new cookies"}[
            self.cookies
        ]
        if self.within is not None:
            text += f", < {self.within:g} s"
        return text


def universal_problems(reply: Reply) -> list[str]:
    """What must hold for every reply, whatever the request."""
    problems = []
    if reply.status >= 500 and reply.status != 503:
        problems.append(f"status {reply.status}")
    if b"Traceback" in reply.body or b'File "' in reply.body:
        problems.append("a traceback in the body")
    if reply.status == 503:
        if not reply.header("retry-after"):
            problems.append("503 without Retry-After")
        if reply.auth_cookies:
            problems.append("503 that touches the auth cookies")
    if reply.app_ran:
        if not any(line.startswith("probe=1") for line in reply.set_cookies):
            problems.append("the app's own cookie was lost")
    elif reply.status != 302:
        content_type = reply.header("content-type") or ""
        data = reply.json()
        if not content_type.startswith("application/json") or not isinstance(data, dict):
            problems.append("a middleware answer that is not a JSON object")
        elif reply.status >= 400 and data.get("error") not in ERROR_CODES:
            problems.append(f"an error answer without a known code: {data.get('error')!r}")
    cookies = reply.auth_cookies
    if cookies:
        values = set(cookies.values())
        cleared = values == {""}
        if cleared:
            if not all(
                "1970" in line for line in reply.set_cookies if line.startswith("crossmint-")
            ):
                problems.append("auth cookies emptied without an expiry in 1970")
        elif "" in values or JWT_COOKIE not in cookies or REFRESH_COOKIE not in cookies:
            problems.append("a half-written session: some auth cookies set, others not")
        if reply.status == 401 and not cleared:
            problems.append("a 401 that sets new session cookies")
    return problems


def problems_with(reply: Reply, expect: Expect, user: str | None = None) -> list[str]:
    """Every way ``reply`` differs from ``expect``, plus :func:`universal_problems`."""
    problems = universal_problems(reply)
    if reply.status != expect.status:
        problems.append(f"status {reply.status}, expected {expect.status}")
    if reply.code != expect.code:
        problems.append(f"code {reply.code}, expected {expect.code}")
    if expect.app is not None and reply.app_ran != expect.app:
        problems.append("the app ran" if reply.app_ran else "the app did not run")
    if expect.user is not None:
        wanted = user if expect.user else None
        if reply.user != wanted:
            problems.append(f"the app was handed user {reply.user!r}, expected {wanted!r}")
    cookies = reply.auth_cookies
    if expect.cookies == UNTOUCHED and cookies:
        problems.append("auth cookies touched")
    elif expect.cookies == CLEARED and (not cookies or set(cookies.values()) != {""}):
        problems.append("auth cookies not cleared")
    elif expect.cookies == NEW_SESSION:
        token = cookies.get(JWT_COOKIE)
        if not token or not cookies.get(REFRESH_COOKIE):
            problems.append("no new session cookies")
        else:
            try:
                subject = claims_of(token).get("sub")
            except (ValueError, IndexError, AttributeError):
                problems.append("the new JWT cookie is not a JWT")
            else:
                if subject != user:
                    problems.append(f"new cookies for {subject!r}, not {user!r}")
    if expect.within is not None and reply.seconds >= expect.within:
        problems.append(f"took {reply.seconds:.2f} s, bound {expect.within:g} s")
    return problems


# -- hostile tokens -----------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: Any) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _claims(emulator: CrossmintEmulator, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": ATTACKER,
        "aud": emulator.project_id,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def _compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{_segment(header)}.{_segment(claims)}.{_b64(signature)}"


@functools.cache
def attacker_rsa_key() -> RSAKey:
    """A signing key Crossmint never published."""
    key = RSAKey.generate_key(2048, {"alg": "RS256", "use": "sig"})
    key.ensure_kid()
    return key


@functools.cache
def attacker_ec_key() -> ECKey:
    key = ECKey.generate_key("P-256", {"alg": "ES256", "use": "sig"})
    key.ensure_kid()
    return key


def _signed_by(key: RSAKey | ECKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    alg = header["alg"]
    return jose_jwt.encode(header, claims, key, algorithms=[alg], default_type=None)


def _current_public_key(emulator: CrossmintEmulator) -> RSAKey:
    entry = next(k for k in emulator.key_set["keys"] if k.get("kid") == emulator.kid)
    return RSAKey.import_key(entry)


def _hs256(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _tamper_payload(emulator: CrossmintEmulator) -> str:
    header, _, signature = emulator.issue_jwt(VICTIM).split(".")
    return f"{header}.{_segment(_claims(emulator, sub='admin'))}.{signature}"


def _tamper_header(emulator: CrossmintEmulator) -> str:
    _, payload, signature = emulator.issue_jwt(VICTIM).split(".")
    header = {"alg": "RS256", "typ": "JWT", "kid": emulator.kid, "x": "tampered"}
    return f"{_segment(header)}.{payload}.{signature}"


def _jwe(emulator: CrossmintEmulator) -> str:
    # The same public key, re-imported without its "use": "sig" so it may encrypt.
    entry = _current_public_key(emulator).as_dict(private=False)
    key = RSAKey.import_key({k: v for k, v in entry.items() if k not in ("use", "alg")})
    protected = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": emulator.kid}
    payload = json.dumps(_claims(emulator)).encode()
    return jwe.encrypt_compact(protected, payload, key, algorithms=["RSA-OAEP-256", "A256GCM"])


ATTACKER = "attacker"
VICTIM = "victim"
#: The user whose genuine refresh cookie rides along with a hostile JWT.
OWNER = "refresh-owner"


@dataclasses.dataclass(frozen=True)
class Hostile:
    """A forged, broken or misdirected JWT, and the code it must earn."""

    id: str
    make: Callable[[CrossmintEmulator], str]
    code: str = "INVALID_TOKEN"
    note: str = ""
    bug: str = ""


def _rsa_header(emulator: CrossmintEmulator, **extra: Any) -> dict[str, Any]:
    return {"alg": "RS256", "typ": "JWT", "kid": emulator.kid, **extra}


HOSTILE_TOKENS: list[Hostile] = [
    Hostile(
        "alg-none",
        lambda e: _compact({"alg": "none", "typ": "JWT"}, _claims(e)),
        note="unsigned",
    ),
    Hostile(
        "alg-none-with-kid",
        lambda e: _compact({"alg": "none", "typ": "JWT", "kid": e.kid}, _claims(e)),
    ),
    Hostile(
        "alg-None-mixed-case",
        lambda e: _compact({"alg": "None", "kid": e.kid}, _claims(e)),
    ),
    Hostile(
        "alg-none-with-signature",
        lambda e: _compact({"alg": "none", "kid": e.kid}, _claims(e), b"x" * 256),
    ),
    Hostile(
        "hs256-public-key-pem-as-secret",
        lambda e: _hs256(
            _current_public_key(e).as_pem(private=False),
            {"alg": "HS256", "typ": "JWT", "kid": e.kid},
            _claims(e),
        ),
        note="algorithm confusion",
    ),
    Hostile(
        "hs256-public-jwk-json-as-secret",
        lambda e: _hs256(
            json.dumps(_current_public_key(e).as_dict(private=False)).encode(),
            {"alg": "HS256", "typ": "JWT", "kid": e.kid},
            _claims(e),
        ),
    ),
    Hostile(
        "unknown-kid",
        lambda e: _signed_by(
            attacker_rsa_key(),
            {"alg": "RS256", "typ": "JWT", "kid": "not-a-crossmint-kid"},
            _claims(e),
        ),
    ),
    Hostile(
        "kid-path-traversal",
        lambda e: _signed_by(
            attacker_rsa_key(),
            {"alg": "RS256", "kid": "../../../../../dev/null"},
            _claims(e),
        ),
    ),
    Hostile(
        "right-kid-other-key",
        lambda e: _signed_by(attacker_rsa_key(), _rsa_header(e), _claims(e)),
        note="Crossmint's kid, the attacker's signature",
    ),
    Hostile(
        "embedded-jwk-header",
        lambda e: _signed_by(
            attacker_rsa_key(),
            _rsa_header(e, jwk=attacker_rsa_key().as_dict(private=False)),
            _claims(e),
        ),
        note="the attacker's public key in the header",
    ),
    Hostile(
        "jku-header",
        lambda e: _signed_by(
            attacker_rsa_key(),
            {"alg": "RS256", "kid": attacker_rsa_key().kid, "jku": "http://127.0.0.1:9/jwks"},
            _claims(e),
        ),
    ),
    Hostile(
        "es256-on-rsa-kid",
        lambda e: _signed_by(
            attacker_ec_key(), {"alg": "ES256", "typ": "JWT", "kid": e.kid}, _claims(e)
        ),
    ),
    Hostile("tampered-payload", _tamper_payload, note="genuine signature, sub changed"),
    Hostile("tampered-header", _tamper_header),
    Hostile(
        "signature-stripped",
        lambda e: e.issue_jwt(VICTIM).rsplit(".", 1)[0] + ".",
    ),
    Hostile(
        "signature-of-another-token",
        lambda e: ".".join(
            [
                *e.issue_jwt(ATTACKER, claims={"role": "admin"}).split(".")[:2],
                e.issue_jwt(VICTIM).split(".")[2],
            ]
        ),
    ),
    Hostile("expired", lambda e: e.issue_jwt(VICTIM, ttl=-60), code="SESSION_EXPIRED"),
    Hostile(
        "expired-and-forged",
        lambda e: _signed_by(
            attacker_rsa_key(),
            _rsa_header(e),
            _claims(e, exp=int(time.time()) - 60),
        ),
        note="forged beats expired",
    ),
    Hostile(
        "nbf-in-the-future",
        lambda e: e.issue_jwt(VICTIM, claims={"nbf": int(time.time()) + 3600}),
    ),
    Hostile(
        "iat-in-the-future",
        lambda e: e.issue_jwt(VICTIM, claims={"iat": int(time.time()) + 3600}),
    ),
    Hostile("wrong-aud", lambda e: e.issue_jwt(VICTIM, claims={"aud": "another-project"})),
    Hostile("wrong-aud-list", lambda e: e.issue_jwt(VICTIM, claims={"aud": ["a-project", "b"]})),
    Hostile("missing-sub", lambda e: e.issue_jwt(VICTIM, claims={"sub": None})),
    Hostile("empty-sub", lambda e: e.issue_jwt(VICTIM, claims={"sub": ""})),
    Hostile("numeric-sub", lambda e: e.issue_jwt(VICTIM, claims={"sub": 12345})),
    Hostile("missing-exp", lambda e: e.issue_jwt(VICTIM, claims={"exp": None})),
    Hostile("string-exp", lambda e: e.issue_jwt(VICTIM, claims={"exp": "9999999999"})),
    Hostile(
        "100-kb-token",
        lambda e: e.issue_jwt(VICTIM, claims={"pad": "x" * 100_000}),
        note="genuinely signed, 100 KB",
    ),
    Hostile("jwe-instead-of-jws", _jwe, note="five-part compact JWE"),
    Hostile(
        "header-not-json",
        lambda e: f"{_b64(b'not json')}.{_segment(_claims(e))}.{_b64(b'sig')}",
    ),
    Hostile(
        "payload-not-json",
        lambda e: f"{_segment(_rsa_header(e))}.{_b64(b'not json')}.{_b64(b'sig')}",
    ),
    Hostile("not-base64", lambda e: "%%%.***.!!!"),
    Hostile("two-segments", lambda e: ".".join(e.issue_jwt(VICTIM).split(".")[:2])),
    Hostile("garbage", lambda e: "garbage"),
]


# -- bad input tables ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CookieCase:
    """A ``Cookie`` header and what a public and a protected request with it must earn.

    :param make: the header, given the emulator (for genuine values).
    :param public_code: the error the app is handed on the public path
        (``None``: none); the status there is always 200.
    :param protected: the status and code on the protected path.
    :param cookies: what happens to the auth cookies.
    """

    id: str
    make: Callable[[CrossmintEmulator], bytes]
    public_code: str | None
    protected: tuple[int, str | None]
    cookies: str = UNTOUCHED
    user: bool = False


_MISSING = (401, "MISSING_SESSION")
_INVALID = (401, "INVALID_TOKEN")
_EXPIRED = (401, "SESSION_EXPIRED")


def _live(emulator: CrossmintEmulator, user: str = VICTIM) -> AuthMaterial:
    return emulator.create_session(user)


COOKIE_CASES: list[CookieCase] = [
    CookieCase("empty-header", lambda e: b"", None, _MISSING),
    CookieCase("only-separators", lambda e: b";;; ;  ;", None, _MISSING),
    CookieCase("name-without-value", lambda e: b"crossmint-jwt", None, _MISSING),
    CookieCase(
        "empty-values", lambda e: b"crossmint-jwt=; crossmint-refresh-token=", None, _MISSING
    ),
    CookieCase("quoted-empty", lambda e: b'crossmint-jwt=""', None, _MISSING),
    CookieCase(
        "quoted-garbage", lambda e: b'crossmint-jwt="a.b.c"', "INVALID_TOKEN", _INVALID, CLEARED
    ),
    CookieCase(
        "quoted-with-escapes",
        lambda e: b'crossmint-jwt="a\\"b\\\\c\\073d"',
        "INVALID_TOKEN",
        _INVALID,
        CLEARED,
    ),
    # RFC 6265 parsers drop a value with an unterminated quote: no auth cookie at all.
    CookieCase("unterminated-quote", lambda e: b'crossmint-jwt="abc', None, _MISSING),
    CookieCase(
        "quoted-genuine-jwt",
        lambda e: f'crossmint-jwt="{_live(e).jwt}"'.encode(),
        None,
        (200, None),
        user=True,
    ),
    CookieCase(
        # Frameworks disagree on which of a repeated name an app reads: no
        # session comes of either value (security round 3, item 1).
        "duplicated-name-genuine-first",
        lambda e: f"crossmint-jwt={_live(e).jwt}; crossmint-jwt=garbage".encode(),
        "INVALID_TOKEN",
        _INVALID,
        CLEARED,
    ),
    CookieCase(
        "duplicated-name-garbage-first",
        lambda e: f"crossmint-jwt=garbage; crossmint-jwt={_live(e).jwt}".encode(),
        "INVALID_TOKEN",
        _INVALID,
        CLEARED,
    ),
    CookieCase(
        "non-latin-1-utf-8",
        lambda e: "crossmint-jwt=é😀.a.b".encode(),
        "INVALID_TOKEN",
        _INVALID,
        CLEARED,
    ),
    # Separators and quotes among the bytes: the parser drops the value.
    CookieCase("every-byte", lambda e: b"crossmint-jwt=" + bytes(range(256)), None, _MISSING),
    CookieCase(
        "high-bytes-not-utf-8",
        lambda e: b"crossmint-jwt=" + bytes(range(0x80, 0x100)),
        "INVALID_TOKEN",
        _INVALID,
        CLEARED,
    ),
    CookieCase(
        "nul-and-controls",
        lambda e: b"crossmint-jwt=a\x00b\x01c.d\x7fe.f",
        "INVALID_TOKEN",
        _INVALID,
        CLEARED,
    ),
    CookieCase(
        "8-kib-jwt", lambda e: b"crossmint-jwt=" + b"a" * 8200, "INVALID_TOKEN", _INVALID, CLEARED
    ),
    CookieCase(
        "64-kib-of-other-cookies",
        lambda e: b"; ".join(b"c%d=%s" % (i, b"v" * 1000) for i in range(64)),
        None,
        _MISSING,
    ),
    CookieCase(
        "genuine-jwt-after-200-cookies",
        lambda e: (
            b"; ".join(b"c%d=v" % i for i in range(200))
            + f"; crossmint-jwt={_live(e).jwt}".encode()
        ),
        None,
        (200, None),
        user=True,
    ),
    CookieCase(
        "jwt-with-spaces",
        lambda e: f"crossmint-jwt= {_live(e).jwt} ".encode(),
        None,
        (200, None),
        user=True,
    ),
    CookieCase(
        "garbage-refresh-only",
        lambda e: b"crossmint-refresh-token=garbage",
        "SESSION_EXPIRED",
        _EXPIRED,
        CLEARED,
    ),
    CookieCase(
        "non-ascii-refresh",
        lambda e: b"crossmint-refresh-token=\xff\xfe\x00\x7f",
        "SESSION_EXPIRED",
        _EXPIRED,
        CLEARED,
    ),
    CookieCase(
        "60-kib-refresh",
        lambda e: b"crossmint-refresh-token=" + b"r" * 60_000,
        "SESSION_EXPIRED",
        _EXPIRED,
        CLEARED,
    ),
    CookieCase(
        "project-scoped-garbage",
        lambda e: f"crossmint-jwt-{e.project_id}=garbage".encode(),
        "INVALID_TOKEN",
        _INVALID,
        CLEARED,
    ),
    CookieCase(
        "project-scoped-genuine",
        lambda e: f"crossmint-jwt-{e.project_id}={_live(e).jwt}".encode(),
        None,
        (200, None),
        user=True,
    ),
    CookieCase("name-case-variant", lambda e: b"Crossmint-JWT=garbage", None, _MISSING),
    CookieCase("jwt-name-as-value", lambda e: b"other=crossmint-jwt=x.y.z", None, _MISSING),
]


@dataclasses.dataclass(frozen=True)
class BodyCase:
    """A body posted to the refresh route (no cookies, same origin) and what it must earn."""

    id: str
    body: bytes
    status: int
    code: str
    chunked: bool = False
    headers: tuple[tuple[str, bytes], ...] = ()


_INVALID_REQUEST = "INVALID_REQUEST"

REFRESH_BODIES: list[BodyCase] = [
    BodyCase("empty", b"", 401, "MISSING_SESSION"),
    BodyCase("whitespace", b"  \n\t ", 401, "MISSING_SESSION"),
    BodyCase("empty-object", b"{}", 401, "MISSING_SESSION"),
    BodyCase("refresh-null", b'{"refresh": null}', 401, "MISSING_SESSION"),
    BodyCase("refresh-empty-string", b'{"refresh": ""}', 401, "MISSING_SESSION"),
    BodyCase("unknown-secret", b'{"refresh": "not-a-secret"}', 401, "SESSION_EXPIRED"),
    BodyCase("utf-16-json", '{"refresh": "x"}'.encode("utf-16"), 401, "SESSION_EXPIRED"),
    BodyCase("not-json", b"hello", 400, _INVALID_REQUEST),
    BodyCase("truncated-json", b'{"refresh": "abc', 400, _INVALID_REQUEST),
    BodyCase("json-array", b'["refresh"]', 400, _INVALID_REQUEST),
    BodyCase("json-string", b'"refresh"', 400, _INVALID_REQUEST),
    BodyCase("json-number", b"1e999", 400, _INVALID_REQUEST),
    BodyCase("json-null", b"null", 400, _INVALID_REQUEST),
    BodyCase("refresh-number", b'{"refresh": 1}', 400, _INVALID_REQUEST),
    BodyCase("refresh-bool", b'{"refresh": true}', 400, _INVALID_REQUEST),
    BodyCase("refresh-list", b'{"refresh": ["a"]}', 400, _INVALID_REQUEST),
    BodyCase("refresh-object", b'{"refresh": {"secret": "a"}}', 400, _INVALID_REQUEST),
    BodyCase("invalid-utf-8", b'{"refresh": "\xff\xfe"}', 400, _INVALID_REQUEST),
    BodyCase("nul-bytes", b"\x00" * 64, 400, _INVALID_REQUEST),
    # Strings that reach hashing, encoding and headers: refused before any of them.
    BodyCase("lone-surrogate-secret", b'{"refresh": "\\ud800"}', 400, _INVALID_REQUEST),
    BodyCase("nul-in-secret", b'{"refresh": "a\\u0000b"}', 400, _INVALID_REQUEST),
    BodyCase("crlf-in-secret", b'{"refresh": "a\\r\\nSet-Cookie: x=1"}', 400, _INVALID_REQUEST),
    BodyCase("non-ascii-secret", '{"refresh": "sécret"}'.encode(), 400, _INVALID_REQUEST),
    BodyCase("nesting-60000-deep", b"[" * 60_000, 400, _INVALID_REQUEST),
    BodyCase("nesting-object-20000-deep", b'{"a":' * 12_000, 400, _INVALID_REQUEST),
    BodyCase("nesting-100000-deep", b"[" * 100_000, 400, _INVALID_REQUEST),
    BodyCase("10-mb", b"{" + b" " * (10 * 1024 * 1024) + b"}", 400, _INVALID_REQUEST),
    BodyCase(
        "10-mb-chunked-no-length",
        b'{"refresh": "' + b"a" * (10 * 1024 * 1024) + b'"}',
        400,
        _INVALID_REQUEST,
        chunked=True,
    ),
    BodyCase("64-kib-plus-1-chunked", b" " * (64 * 1024 + 1), 400, _INVALID_REQUEST, chunked=True),
    BodyCase("small-chunked", b'{"refresh": "nope"}', 401, "SESSION_EXPIRED", chunked=True),
    BodyCase(
        "content-length-not-a-number",
        b"{}",
        401,
        "MISSING_SESSION",
        headers=(("content-length", b"abc"),),
    ),
]


@dataclasses.dataclass(frozen=True)
class RouteCase:
    """A method and raw path (with headers) and what it must earn; no cookies."""

    id: str
    method: str
    path: str
    status: int
    code: str | None
    app: bool
    query: str = ""
    headers: tuple[tuple[str, bytes], ...] = ()
    body: bytes | None = None
    cookies: str = UNTOUCHED
    bug: str = ""


_HTML = (("accept", b"text/html,application/xhtml+xml"),)


ROUTE_CASES: list[RouteCase] = [
    RouteCase("head-refresh", "HEAD", "/refresh", 200, None, app=True),
    RouteCase("options-refresh", "OPTIONS", "/refresh", 200, None, app=True),
    RouteCase("get-refresh", "GET", "/refresh", 200, None, app=True),
    RouteCase("put-refresh", "PUT", "/refresh", 200, None, app=True, body=b"{}"),
    RouteCase("get-logout", "GET", "/logout", 200, None, app=True),
    RouteCase(
        "post-refresh-query", "POST", "/refresh", 401, "MISSING_SESSION", app=False, query="a=1"
    ),
    RouteCase(
        "post-refresh-query-refresh-param",
        "POST",
        "/refresh",
        401,
        "MISSING_SESSION",
        app=False,
        query="refresh=not-read-from-the-url",
    ),
    RouteCase(
        "post-logout-query",
        "POST",
        "/logout",
        200,
        None,
        app=False,
        query="next=/",
        cookies=CLEARED,
    ),
    RouteCase("post-encoded-slash-refresh", "POST", "/%2Frefresh", 200, None, app=True),
    RouteCase("post-refresh-encoded-slash", "POST", "/refresh%2F", 200, None, app=True),
    RouteCase("post-double-slash-refresh", "POST", "//refresh", 200, None, app=True),
    RouteCase("post-refresh-trailing-slash", "POST", "/refresh/", 200, None, app=True),
    RouteCase("post-upper-case-refresh", "POST", "/REFRESH", 200, None, app=True),
    RouteCase(
        "post-percent-encoded-refresh", "POST", "/%72efresh", 401, "MISSING_SESSION", app=False
    ),
    RouteCase(
        "post-refresh-cross-site-origin",
        "POST",
        "/refresh",
        403,
        "FORBIDDEN_ORIGIN",
        app=False,
        headers=(("origin", b"https://evil.example"),),
    ),
    RouteCase(
        "post-refresh-origin-null",
        "POST",
        "/refresh",
        403,
        "FORBIDDEN_ORIGIN",
        app=False,
        headers=(("origin", b"null"),),
    ),
    RouteCase(
        "post-refresh-origin-userinfo-trick",
        "POST",
        "/refresh",
        403,
        "FORBIDDEN_ORIGIN",
        app=False,
        headers=(("origin", f"http://{HOST}@evil.example".encode()),),
    ),
    RouteCase(
        "post-refresh-origin-suffix-trick",
        "POST",
        "/refresh",
        403,
        "FORBIDDEN_ORIGIN",
        app=False,
        headers=(("origin", f"http://{HOST}.evil.example".encode()),),
    ),
    RouteCase(
        "post-logout-sec-fetch-cross-site",
        "POST",
        "/logout",
        403,
        "FORBIDDEN_ORIGIN",
        app=False,
        headers=(("sec-fetch-site", b"cross-site"),),
    ),
    RouteCase(
        "post-refresh-same-origin",
        "POST",
        "/refresh",
        401,
        "MISSING_SESSION",
        app=False,
        headers=(("origin", f"http://{HOST}".encode()), ("sec-fetch-site", b"same-origin")),
    ),
    RouteCase(
        "post-logout-10-mb-declared",
        "POST",
        "/logout",
        400,
        _INVALID_REQUEST,
        app=False,
        body=b" " * (10 * 1024 * 1024),
    ),
    RouteCase("get-protected", "GET", "/protected", 401, "MISSING_SESSION", app=False),
    RouteCase("head-protected-browser", "HEAD", "/protected", 302, None, app=False, headers=_HTML),
    RouteCase("options-protected", "OPTIONS", "/protected", 401, "MISSING_SESSION", app=False),
    RouteCase("post-protected", "POST", "/protected", 401, "MISSING_SESSION", app=False),
    RouteCase(
        "protected-encoded-slash", "GET", "/protected%2Fx", 401, "MISSING_SESSION", app=False
    ),
    RouteCase("protected-double-slash", "GET", "//protected", 401, "MISSING_SESSION", app=False),
    RouteCase("protected-dot-segment", "GET", "/./protected", 401, "MISSING_SESSION", app=False),
    RouteCase(
        "protected-dot-dot", "GET", "/public/../protected/x", 401, "MISSING_SESSION", app=False
    ),
    RouteCase(
        "protected-encoded-dot-dot",
        "GET",
        "/public/%2E%2E/protected",
        401,
        "MISSING_SESSION",
        app=False,
    ),
    RouteCase("protected-trailing-slash", "GET", "/protected/", 401, "MISSING_SESSION", app=False),
    RouteCase(
        "protected-query", "GET", "/protected", 401, "MISSING_SESSION", app=False, query="x=/"
    ),
    RouteCase(
        "protected-browser-redirect", "GET", "/protected/a b", 302, None, app=False, headers=_HTML
    ),
    RouteCase("protected-prefix-lookalike", "GET", "/protectedx", 200, None, app=True),
    # werkzeug's dev server passes "GET protected HTTP/1.1" on as PATH_INFO "protected"
    # (hypercorn likewise), and werkzeug's router serves it as "/protected".
    RouteCase(
        "protected-without-leading-slash",
        "GET",
        "protected",
        401,
        "MISSING_SESSION",
        app=False,
    ),
    RouteCase(
        "protected-subpath-without-leading-slash",
        "GET",
        "protected/x",
        401,
        "MISSING_SESSION",
        app=False,
    ),
]


def route_request(case: RouteCase) -> Req:
    return Req(
        case.method,
        case.path,
        query=case.query,
        headers=case.headers,
        body=case.body,
    )


def body_request(case: BodyCase, path: str = "/refresh") -> Req:
    return Req("POST", path, body=case.body, chunked=case.chunked, headers=case.headers)


@dataclasses.dataclass(frozen=True)
class BadInput:
    """One row of the bad-input matrix: a request and what it must earn, for both middlewares."""

    group: str
    name: str
    build: Callable[[CrossmintEmulator], Req]
    expect: Expect
    user: str | None = None
    bug: str = ""

    @property
    def id(self) -> str:
        return f"{self.group.split()[0].lower()}-{self.name}"


def _cookie_rows(case: CookieCase) -> list[BadInput]:
    user = VICTIM if case.user else None
    status, code = case.protected
    return [
        BadInput(
            "Cookie header",
            f"{case.id}-public",
            lambda e: Req(path=PUBLIC, cookie=case.make(e)),
            Expect(200, case.public_code, app=True, user=case.user, cookies=case.cookies),
            user,
        ),
        BadInput(
            "Cookie header",
            f"{case.id}-protected",
            lambda e: Req(path=PROTECTED, cookie=case.make(e)),
            Expect(
                status,
                code,
                app=status == 200,
                user=True if case.user else None,
                cookies=case.cookies,
            ),
            user,
        ),
    ]


def _body_rows(case: BodyCase) -> list[BadInput]:
    declared = not case.chunked and not case.headers
    logout = (
        Expect(400, _INVALID_REQUEST, app=False)
        if declared and len(case.body) > 64 * 1024
        else Expect(200, None, app=False, cookies=CLEARED)
    )
    cleared = CLEARED if case.code == "SESSION_EXPIRED" else UNTOUCHED
    return [
        BadInput(
            "refresh body",
            case.id,
            lambda e: body_request(case),
            Expect(case.status, case.code, app=False, cookies=cleared),
        ),
        BadInput("logout body", case.id, lambda e: body_request(case, "/logout"), logout),
    ]


def _route_row(case: RouteCase) -> BadInput:
    return BadInput(
        "method and path",
        case.id,
        lambda e: route_request(case),
        Expect(case.status, case.code, app=case.app, cookies=case.cookies),
        bug=case.bug,
    )


BAD_INPUT_ROWS: list[BadInput] = [
    *(row for case in COOKIE_CASES for row in _cookie_rows(case)),
    *(row for case in REFRESH_BODIES for row in _body_rows(case) if row.group == "refresh body"),
    *(row for case in REFRESH_BODIES for row in _body_rows(case) if row.group == "logout body"),
    *(_route_row(case) for case in ROUTE_CASES),
]


def pytest_params(cases: Sequence[Any]) -> list[Any]:
    """``pytest.param`` per case, ids checked unique; a case with a known bug is a strict xfail."""
    import pytest

    all_ids(cases)
    return [
        pytest.param(
            case,
            id=case.id,
            marks=[pytest.mark.xfail(strict=True, reason=f"BUG: {case.bug}")] if case.bug else [],
        )
        for case in cases
    ]


# -- faults -------------------------------------------------------------------------------


@dataclasses.dataclass
class FaultCtx:
    """What one fault case works with: the emulator, one user and their sessions."""

    emulator: CrossmintEmulator
    user: str
    live: AuthMaterial
    expired: AuthMaterial


def fault_ctx(emulator: CrossmintEmulator, user: str = "fault-user") -> FaultCtx:
    return FaultCtx(
        emulator,
        user,
        emulator.create_session(user, email=f"{user}@example.com"),
        emulator.create_session(user, jwt_ttl=-60),
    )


@dataclasses.dataclass(frozen=True)
class Step:
    """Arrange something (``before``), send a request, expect a reply."""

    request: Callable[[FaultCtx], Req]
    expect: Expect
    before: Callable[[FaultCtx], object] | None = None
    label: str = ""


@dataclasses.dataclass(frozen=True)
class FaultCase:
    """A fault of Crossmint's and the steps that show how the middleware copes.

    :param warm: fetch the key set with a genuine request before the fault.
    :param dead_upstream: point the auth at a closed port (connection refused),
        with the emulator's key set given statically.
    :param settings: more settings for the auth objects.
    """

    id: str
    what: str
    steps: tuple[Step, ...]
    warm: bool = True
    dead_upstream: bool = False
    settings: tuple[tuple[str, Any], ...] = ()
    bug: str = ""

    def crossmint(self, emulator: CrossmintEmulator, dead_port: int) -> Crossmint:
        if not self.dead_upstream:
            return emulator.crossmint()
        return build_crossmint(
            emulator.api_key,
            base_url=f"http://127.0.0.1:{dead_port}",
            signing_key=emulator.signing_key,
        )

    def auth_settings(self, emulator: CrossmintEmulator) -> dict[str, Any]:
        settings: dict[str, Any] = {"timeout": TIMEOUT, "leeway": 0}
        if self.dead_upstream:
            settings["jwks"] = emulator.key_set
        settings.update(self.settings)
        return settings


BOUND = TIMEOUT + MARGIN


def _protected_expired(ctx: FaultCtx) -> Req:
    return Req(path=PROTECTED, cookie=material_cookie(ctx.expired))


def _public_expired(ctx: FaultCtx) -> Req:
    return Req(path=PUBLIC, cookie=material_cookie(ctx.expired))


def _protected_live(ctx: FaultCtx) -> Req:
    return Req(path=PROTECTED, cookie=material_cookie(ctx.live))


def _public_live(ctx: FaultCtx) -> Req:
    return Req(path=PUBLIC, cookie=material_cookie(ctx.live))


def _refresh_route(ctx: FaultCtx) -> Req:
    return Req("POST", "/refresh", cookie=material_cookie(ctx.expired, jwt=False), body=b"{}")


def _logout_route(ctx: FaultCtx) -> Req:
    # The refresh secret alone: a logout with the JWT would end that JWT too
    # (tests/test_revocations.py), and later steps still use it.
    return Req("POST", "/logout", cookie=material_cookie(ctx.live, jwt=False))


def _new_token_request(ctx: FaultCtx) -> Req:
    # A JWT the auth object has never verified: only the key set can vouch for it.
    return Req(path=PROTECTED, cookie=cookie_header(ctx.emulator.issue_jwt(ctx.user)))


_UNAVAILABLE = Expect(503, "UPSTREAM_UNAVAILABLE", app=False, within=BOUND)
_UNAVAILABLE_PUBLIC = Expect(200, "UPSTREAM_UNAVAILABLE", app=True, user=False, within=BOUND)
_REFRESHED = Expect(200, None, app=True, user=True, cookies=NEW_SESSION)
_FRESH_OK = Expect(200, None, app=True, user=True)


def _slow(ctx: FaultCtx) -> None:
    ctx.emulator.set_latency(SLOW)


def _down(ctx: FaultCtx) -> None:
    ctx.emulator.set_down(True)


def _up(ctx: FaultCtx) -> None:
    ctx.emulator.set_down(False)


def _fail(n: int, status: int, body: object = None, endpoint: str | None = "refresh") -> Any:
    def arrange(ctx: FaultCtx) -> None:
        ctx.emulator.fail_next(n, status=status, body=body, endpoint=endpoint)

    return arrange


def _clear_faults(ctx: FaultCtx) -> None:
    """Crossmint recovers: the faults still queued go (sessions and keys stay valid)."""
    ctx.emulator.reset()


def _sleep(seconds: float) -> Any:
    def arrange(ctx: FaultCtx) -> None:
        time.sleep(seconds)

    return arrange


def _then(*actions: Callable[[FaultCtx], object]) -> Any:
    def arrange(ctx: FaultCtx) -> None:
        for action in actions:
            action(ctx)

    return arrange


def _bad_refresh_answer(body: object, *, status: int = 200, what: str) -> FaultCase:
    return FaultCase(
        f"refresh-answer-{what}",
        f"the refresh call answers {status} with {what.replace('-', ' ')}",
        (
            Step(_protected_expired, _UNAVAILABLE, before=_fail(1, status, body)),
            Step(_protected_expired, _REFRESHED, label="recovered"),
        ),
    )


_FAR = "2099-01-01T00:00:00.000Z"

#: What a CDN in front of Crossmint answers a blocked region: HTML, never JSON.
CDN_BLOCK_PAGE = (
    b"<!DOCTYPE html><html><head><title>Access denied | used Cloudflare to restrict access"
    b"</title></head><body><h1>Error 1009</h1></body></html>"
)

FAULT_CASES: list[FaultCase] = [
    FaultCase(
        "slow-refresh-protected",
        f"Crossmint answers the refresh after {SLOW} s, timeout {TIMEOUT} s; protected path",
        (Step(_protected_expired, _UNAVAILABLE, before=_slow),),
    ),
    FaultCase(
        "slow-refresh-public",
        "the same on a public path: the app runs, told why there is no session",
        (Step(_public_expired, _UNAVAILABLE_PUBLIC, before=_slow),),
    ),
    FaultCase(
        "slow-refresh-route",
        "the refresh route while Crossmint is slow",
        (
            Step(
                _refresh_route,
                Expect(503, "UPSTREAM_UNAVAILABLE", app=False, within=BOUND),
                before=_slow,
            ),
        ),
    ),
    FaultCase(
        "slow-logout-route",
        "the logout route while Crossmint is slow: cookies cleared, answer within the timeout",
        (
            Step(
                _logout_route,
                Expect(200, None, app=False, cookies=CLEARED, within=BOUND),
                before=_slow,
            ),
        ),
    ),
    FaultCase(
        "slow-key-set-cold",
        "no key set cached yet and Crossmint slow",
        (Step(_protected_live, _UNAVAILABLE, before=_slow),),
        warm=False,
    ),
    FaultCase(
        "5xx-burst-then-recovery",
        "three refresh calls answer 503, the fourth works",
        (
            Step(_protected_expired, _UNAVAILABLE, before=_fail(3, 503), label="1st"),
            Step(_protected_expired, _UNAVAILABLE, label="2nd"),
            Step(_public_expired, _UNAVAILABLE_PUBLIC, label="3rd"),
            Step(_protected_expired, _REFRESHED, label="recovered"),
        ),
    ),
    FaultCase(
        "500-with-html",
        "the refresh call answers 500 with an HTML page",
        (
            Step(_protected_expired, _UNAVAILABLE, before=_fail(1, 500, b"<html>oops</html>")),
            Step(_protected_expired, _REFRESHED, label="recovered"),
        ),
    ),
    FaultCase(
        "connection-reset",
        "Crossmint resets every connection (emulator down), then comes back",
        (
            Step(_protected_expired, _UNAVAILABLE, before=_down),
            Step(_refresh_route, Expect(503, "UPSTREAM_UNAVAILABLE", app=False, within=BOUND)),
            Step(_logout_route, Expect(200, None, app=False, cookies=CLEARED, within=BOUND)),
            Step(_protected_expired, _REFRESHED, before=_up, label="recovered"),
        ),
    ),
    FaultCase(
        "connection-refused",
        "nothing listens at Crossmint's address",
        (
            Step(_protected_expired, _UNAVAILABLE),
            Step(_public_expired, _UNAVAILABLE_PUBLIC),
            Step(_refresh_route, Expect(503, "UPSTREAM_UNAVAILABLE", app=False, within=BOUND)),
            Step(_logout_route, Expect(200, None, app=False, cookies=CLEARED, within=BOUND)),
            Step(_protected_live, _FRESH_OK, label="a valid JWT needs no Crossmint"),
        ),
        warm=False,
        dead_upstream=True,
    ),
    _bad_refresh_answer(b'{"jwt":', what="truncated-json"),
    _bad_refresh_answer(b"", what="an-empty-body"),
    _bad_refresh_answer(b"<html>maintenance</html>", what="html"),
    _bad_refresh_answer([], what="a-json-array"),
    _bad_refresh_answer(
        {"jwt": 1, "refresh": {"secret": "s", "expiresAt": _FAR}}, what="a-numeric-jwt"
    ),
    _bad_refresh_answer({"jwt": "a.b.c"}, what="no-refresh-token"),
    _bad_refresh_answer(
        {"jwt": "not-a-jwt", "refresh": {"secret": "s", "expiresAt": _FAR}}, what="a-non-jwt"
    ),
    _bad_refresh_answer(
        {"jwt": "a.b.c", "refresh": {"secret": "s", "expiresAt": "tomorrow"}},
        what="a-bad-expiry",
    ),
    _bad_refresh_answer({"message": "created"}, status=201, what="an-empty-object"),
    _bad_refresh_answer({"message": "redirect"}, status=302, what="a-redirect"),
    # Not JSON: a WAF or CDN in front of Crossmint (Cloudflare's region block
    # "error 1009"), never Crossmint's verdict on the secret.
    _bad_refresh_answer(CDN_BLOCK_PAGE, status=403, what="a-cdn-block-page"),
    _bad_refresh_answer(b"", status=401, what="an-empty-401"),
    FaultCase(
        "refresh-route-cdn-block-page",
        "the refresh route while a CDN answers the refresh call 403 with an HTML page",
        (
            Step(_refresh_route, _UNAVAILABLE, before=_fail(1, 403, CDN_BLOCK_PAGE)),
            Step(_refresh_route, Expect(200, None, app=False, cookies=NEW_SESSION)),
        ),
    ),
    FaultCase(
        "refresh-rejected-401",
        "Crossmint rejects the refresh token (a real rejection, for contrast)",
        (
            Step(
                _protected_expired,
                Expect(401, "SESSION_EXPIRED", app=False, cookies=CLEARED),
                before=_fail(1, 401),
            ),
        ),
    ),
    FaultCase(
        "refresh-rate-limited-429",
        "Crossmint answers 429 Too Many Requests: busy, not a rejection",
        (
            Step(_protected_expired, _UNAVAILABLE, before=_fail(1, 429)),
            Step(_protected_expired, _REFRESHED, label="recovered"),
        ),
    ),
    FaultCase(
        "refresh-timeout-408",
        "Crossmint answers 408 Request Timeout: busy, not a rejection",
        (
            Step(_protected_expired, _UNAVAILABLE, before=_fail(1, 408)),
            Step(_protected_expired, _REFRESHED, label="recovered"),
        ),
    ),
    FaultCase(
        "refresh-route-answer-a-non-jwt",
        "the refresh route, when Crossmint answers 200 with a JWT that is not one",
        (
            Step(
                _refresh_route,
                Expect(503, "UPSTREAM_UNAVAILABLE", app=False),
                before=_fail(
                    1, 200, {"jwt": "not-a-jwt", "refresh": {"secret": "s", "expiresAt": _FAR}}
                ),
            ),
            Step(
                _refresh_route,
                Expect(200, None, app=False, cookies=NEW_SESSION),
                label="recovered",
            ),
        ),
    ),
    FaultCase(
        "key-set-down-at-start",
        "no key set cached and Crossmint resets connections",
        (
            Step(_protected_live, _UNAVAILABLE, before=_down),
            Step(_public_live, _UNAVAILABLE_PUBLIC),
            Step(_protected_expired, _UNAVAILABLE, label="expired JWT too"),
        ),
        warm=False,
    ),
    FaultCase(
        "key-set-5xx-at-start",
        "no key set cached and the key set answers 503, then recovers",
        (
            # Every key set answer fails until step 2: a stray fetch (a previous
            # case's) cannot take the one fault meant for step 1.
            Step(_protected_live, _UNAVAILABLE, before=_fail(100, 503, endpoint="jwks")),
            Step(
                _protected_live,
                _FRESH_OK,
                before=_then(_clear_faults, _sleep(1.1)),
                label="after the backoff",
            ),
        ),
        warm=False,
    ),
    FaultCase(
        "key-set-garbage-at-start",
        "the first key set answer is not JSON",
        (Step(_protected_live, _UNAVAILABLE, before=_fail(1, 200, b"<html>", endpoint="jwks")),),
        warm=False,
    ),
    FaultCase(
        "key-set-empty-at-start",
        "the first key set holds no key",
        (Step(_protected_live, _UNAVAILABLE, before=_fail(1, 200, {"keys": []}, endpoint="jwks")),),
        warm=False,
    ),
    FaultCase(
        "key-set-symmetric-only",
        "the first key set holds only an HMAC (oct) key",
        (
            Step(
                _protected_live,
                _UNAVAILABLE,
                before=_fail(1, 200, {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, endpoint="jwks"),
            ),
        ),
        warm=False,
    ),
    FaultCase(
        "key-set-down-refresh-only",
        "key set unreachable, but a login's refresh needs no key set",
        (
            Step(
                lambda ctx: Req(path=PROTECTED, cookie=material_cookie(ctx.expired, jwt=False)),
                _REFRESHED,
                before=_fail(5, 503, endpoint="jwks"),
            ),
        ),
        warm=False,
    ),
    FaultCase(
        "key-set-stale-while-down",
        "the key set expired (ttl 0.3 s) and Crossmint is down: the stale keys keep serving",
        (
            Step(
                _new_token_request,
                Expect(200, None, app=True, user=True, within=BOUND),
                before=_then(_sleep(0.4), _down),
            ),
            Step(
                _new_token_request,
                Expect(200, None, app=True, user=True, within=BOUND),
                label="again",
            ),
        ),
        settings=(("jwks_ttl", 0.3),),
    ),
    FaultCase(
        "key-set-stale-while-slow",
        f"the key set expired and Crossmint answers after {SLOW} s: stale keys, within the timeout",
        (
            Step(
                _new_token_request,
                Expect(200, None, app=True, user=True, within=BOUND),
                before=_then(_sleep(0.4), _slow),
            ),
        ),
        settings=(("jwks_ttl", 0.3),),
    ),
    FaultCase(
        "key-set-5xx-later",
        "the key set expired and its refetch answers 500: stale keys serve",
        (
            Step(
                _new_token_request,
                Expect(200, None, app=True, user=True),
                before=_then(_sleep(0.4), _fail(3, 500, endpoint="jwks")),
            ),
        ),
        settings=(("jwks_ttl", 0.3),),
    ),
]


def _warm_request(ctx: FaultCtx) -> Req:
    return Req(path=PUBLIC, cookie=cookie_header(ctx.emulator.issue_jwt(ctx.user)))


@dataclasses.dataclass
class StepResult:
    """One step of a case as it ran."""

    label: str
    request: str
    expect: Expect
    reply: Reply | None
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def _raised(step: Step, index: int, req: Req, error: Exception) -> StepResult:
    label = step.label or f"step {index + 1}"
    return StepResult(label, req.describe(), step.expect, None, [f"raised {error!r}"])


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_fault_case_wsgi(emulator: CrossmintEmulator, case: FaultCase) -> list[StepResult]:
    """Run a fault case through the WSGI middleware; the emulator is reset first and after."""
    emulator.reset()
    ctx = fault_ctx(emulator)
    results = []
    try:
        with make_auth(
            case.crossmint(emulator, _closed_port()), **case.auth_settings(emulator)
        ) as auth:
            app = wsgi_stack(auth)
            if case.warm:
                call_wsgi(app, _warm_request(ctx))
            for index, step in enumerate(case.steps):
                if step.before is not None:
                    step.before(ctx)
                req = step.request(ctx)
                try:
                    reply = call_wsgi(app, req)
                except Exception as error:
                    results.append(_raised(step, index, req, error))
                    continue
                results.append(
                    StepResult(
                        step.label or f"step {index + 1}",
                        req.describe(),
                        step.expect,
                        reply,
                        problems_with(reply, step.expect, ctx.user),
                    )
                )
    finally:
        emulator.reset()
    return results


async def run_fault_case_asgi(emulator: CrossmintEmulator, case: FaultCase) -> list[StepResult]:
    """Run a fault case through the ASGI middleware via ``httpx.ASGITransport``."""
    emulator.reset()
    ctx = fault_ctx(emulator)
    results = []
    try:
        async with (
            make_async_auth(
                case.crossmint(emulator, _closed_port()), **case.auth_settings(emulator)
            ) as auth,
            no_cookie_client(asgi_stack(auth)) as client,
        ):
            if case.warm:
                await call_httpx(client, _warm_request(ctx))
            for index, step in enumerate(case.steps):
                if step.before is not None:
                    # Some arrangements sleep: keep the event loop free meanwhile.
                    await anyio.to_thread.run_sync(step.before, ctx)
                req = step.request(ctx)
                try:
                    reply = await call_httpx(client, req)
                except Exception as error:
                    results.append(_raised(step, index, req, error))
                    continue
                results.append(
                    StepResult(
                        step.label or f"step {index + 1}",
                        req.describe(),
                        step.expect,
                        reply,
                        problems_with(reply, step.expect, ctx.user),
                    )
                )
    finally:
        emulator.reset()
    return results


# -- key rotation under traffic ------------------------------------------------------------


@dataclasses.dataclass
class RotationResult:
    """How a rotation under traffic went."""

    verifications: int
    failures: int
    failure_codes: dict[str, int]
    key_set_fetches: int
    new_kid_verified: int


def traffic_until(
    enough: Callable[[], bool], *, at_least: float = 0.0, limit: float = 30.0
) -> bool:
    """Let traffic flow until ``enough()`` holds and ``at_least`` seconds passed;
    ``False`` when ``enough()`` still does not hold after ``limit`` seconds.

    What a traffic test needs (every thread got through this many requests)
    is waited on, never guessed from time: a loaded machine only takes longer.
    """
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= at_least and enough():
            return True
        if elapsed >= limit:
            return False
        time.sleep(0.01)


def rotation_under_traffic(
    emulator: CrossmintEmulator,
    *,
    threads: int = 8,
    seconds_before: float = 0.5,
    seconds_after: float = 1.5,
    rounds_before: int = 2,
    rounds_after: int = 3,
    **settings: Any,
) -> RotationResult:
    """Threads verify tokens continuously while Crossmint rotates its signing key.

    Every thread verifies freshly issued JWTs (never seen before, so each
    needs the key set) in a loop; once every thread verified ``rounds_before``
    tokens (and ``seconds_before`` passed), :meth:`CrossmintEmulator.rotate_keys`
    runs and from then on tokens carry the new ``kid``; the traffic stops once
    every thread verified ``rounds_after`` tokens of the new ``kid`` (and
    ``seconds_after`` passed), or after 30 s of either wait. Counts
    verifications that did not yield a session.
    """
    auth = make_auth(emulator.crossmint(), leeway=0, **settings)
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"total": 0, "failures": 0, "new_kid": 0}
    codes: dict[str, int] = {}
    errors: list[BaseException] = []
    old_kid = emulator.kid
    # Per thread: tokens verified (with or without a session), and those of the new kid.
    rounds = [0] * threads
    new_rounds = [0] * threads

    def worker(index: int) -> None:
        try:
            while not stop.is_set():
                token = emulator.issue_jwt(f"rotating-{index}")
                kid = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
                try:
                    auth.get_session(jwt=token)
                    failed = None
                except CrossmintAuthError as error:
                    failed = error.code.value
                with lock:
                    counts["total"] += 1
                    rounds[index] += 1
                    if kid != old_kid:
                        new_rounds[index] += 1
                    if failed:
                        counts["failures"] += 1
                        codes[failed] = codes.get(failed, 0) + 1
                    elif kid != old_kid:
                        counts["new_kid"] += 1
        except BaseException as error:
            errors.append(error)

    before = emulator.requests["jwks"]
    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    try:
        for thread in pool:
            thread.start()
        traffic_until(lambda: bool(errors) or min(rounds) >= rounds_before, at_least=seconds_before)
        emulator.rotate_keys(keep_old=True)
        traffic_until(
            lambda: bool(errors) or min(new_rounds) >= rounds_after, at_least=seconds_after
        )
    finally:
        stop.set()
        for thread in pool:
            thread.join(timeout=30)
        auth.close()
    if errors:
        raise errors[0]
    return RotationResult(
        counts["total"],
        counts["failures"],
        codes,
        emulator.requests["jwks"] - before,
        counts["new_kid"],
    )


# -- probes of the key-set cache's bookkeeping ----------------------------------------------


async def key_fetches_after_a_cancelled_fetch(emulator: CrossmintEmulator, tries: int = 10) -> int:
    """Key-set fetches made for ``tries`` unknown-kid tokens after a fetch was abandoned.

    A request is cancelled mid-fetch (a client gone, a server's deadline);
    afterwards the kid-miss rate limit must still hold: at most one fetch.
    """
    unknown_kid = next(h for h in HOSTILE_TOKENS if h.id == "unknown-kid")
    async with make_async_auth(emulator.crossmint(), leeway=0) as auth:
        emulator.set_latency(1.0)
        try:
            with anyio.move_on_after(0.2):
                await auth.get_session(jwt=emulator.issue_jwt("abandoned"))
        finally:
            emulator.set_latency(0)
        await auth.get_session(jwt=emulator.issue_jwt("present"))
        before = emulator.requests["jwks"]
        for _ in range(tries):
            try:
                await auth.get_session(jwt=unknown_kid.make(emulator))
            except CrossmintAuthError as error:
                code = error.code.value
            else:
                code = "a session"
            if code != "INVALID_TOKEN":
                raise AssertionError(f"an unknown kid earned {code}")
        return emulator.requests["jwks"] - before


class InterleavedKeySet(Mapping[str, Any]):
    """A JWK Set whose import runs ``meanwhile`` first: another thread's exact moment."""

    def __init__(self, data: dict[str, Any], meanwhile: Callable[[], None]) -> None:
        self._data = data
        self._meanwhile: Callable[[], None] | None = meanwhile

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        if self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile()
        return self._data.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def new_kid_checked_while_keys_install(emulator: CrossmintEmulator) -> object:
    """What verifying a new-kid token yields at the instant another fetch stores the new keys.

    Steps the sans-IO flows by hand: flow A fetched the key set for a new
    ``kid``; while A stores it, flow B verifies another token with that kid.
    Returns B's first outcome: claims, an effect (B joins a fetch: fine), or
    the :class:`TokenInvalid` that would log its user out.
    """
    with make_auth(emulator.crossmint(), leeway=0) as auth:
        core = auth.core
        auth.get_session(jwt=emulator.issue_jwt("warm"))
        emulator.rotate_keys(keep_old=True)
        first, second = emulator.issue_jwt("a"), emulator.issue_jwt("b")
        flow_a = core.verify(first)
        effect = next(flow_a)
        assert isinstance(effect, FetchKeys), effect
        outcome: list[object] = []

        def flow_b() -> None:
            flow = core.verify(second)
            try:
                outcome.append(next(flow))
            except StopIteration as done:
                outcome.append(done.value)
            except TokenInvalid as error:
                outcome.append(error)

        with contextlib.suppress(StopIteration):
            flow_a.send(InterleavedKeySet(emulator.key_set, flow_b))
    return outcome[0] if outcome else None


def hostile_token(emulator: CrossmintEmulator, hostile: Hostile) -> str:
    return hostile.make(emulator)


def all_ids(cases: Sequence[Any]) -> list[str]:
    """The ids of a table, checked unique."""
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    return ids
