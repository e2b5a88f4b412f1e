"""Load and soak: many users, JWTs expiring every few seconds, a key rotation, real servers.

Run: ``.venv/bin/python bench/soak.py [--seconds 60] [--users 200] [--servers gunicorn,uvicorn]``
(``--help`` for the rest). Bounded in time; CI does not run it. Everything
listens on 127.0.0.1 only.

It starts, as real processes:

- the Crossmint emulator (``python -m crossmint_wsgi.testing``) with a JWT
  lifetime of a few seconds and single-use refresh tokens (``reuse_window=0``);
- a ``redis-server`` (``tests/redis_server.py``);
- the Flask example under gunicorn with 4 workers and ``CROSSMINT_REDIS_URL``
  (``examples/gunicorn.conf.py``), then the raw ASGI example under uvicorn.

Each example is served through a thin pass-through defined here, which adds
one route, ``GET /_soak/stats`` (its process id, RSS and the sizes of the
library's in-memory caches, found with :mod:`gc`), and lowers the caches'
bounds to ``--cache-bound`` so that they fill up during the run: memory after
warm-up is then the steady state, and a leak shows as growth.

Against each server, for ``--seconds``: a baseline of anonymous requests
first (its throughput is the ratio's denominator), then ``--users`` distinct
users at once, each with a session of its own, like browsers: mostly
``GET /api/me``, sometimes a burst of 3 parallel requests with the same
cookies (a page and its assets), sometimes a logout and a fresh login
through ``/refresh``. JWTs expire every few seconds, so sessions refresh all
the time. Midway Crossmint rotates its signing key; later 5 refresh calls
are made to fail with 503 (the only errors expected, as 503s shortly after).

Checked on every answer: the status; the user id the app saw is the user's
own; every Set-Cookie JWT belongs to the user whose request it answers (no
cross-talk). Reported: requests, errors by kind, throughput against the
baseline, RSS after warm-up against the end (target: under 10 % growth),
cache sizes against their bounds, Redis keys and memory, Crossmint calls.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import gc
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
EXAMPLES = ROOT / "examples"
PYTHON = sys.executable

#: Injected refresh failures (503): the only errors a run should see.
INJECTED = 5
STATS_PATH = "/_soak/stats"


# -- the pass-through the servers load (imported by gunicorn and uvicorn workers) ---------


def _rss_kb(pid: int | str = "self") -> int:
    """Resident set size of a process, in KiB, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _ours(obj: object) -> bool:
    module = getattr(type(obj), "__module__", None)
    return isinstance(module, str) and module.startswith("crossmint_wsgi")


def _caches() -> list[Any]:
    """The library's bounded in-memory caches living in this process."""
    found = []
    for obj in gc.get_objects():
        if not _ours(obj):
            continue
        if hasattr(obj, "max_size") and hasattr(obj, "__len__"):
            found.append(obj)  # the verified-token cache
        elif hasattr(obj, "max_entries") and hasattr(obj, "_entries"):
            found.append(obj)  # a grace cache
        elif hasattr(obj, "_recent") and hasattr(obj, "_recent_size"):
            found.append(obj)  # the middleware's recent-decisions shortcut
    return found


def _bound_of(cache: Any) -> tuple[int, int]:
    """(entries, bound) of a cache found by :func:`_caches`."""
    if hasattr(cache, "max_size"):
        return len(cache), int(cache.max_size)
    if hasattr(cache, "max_entries"):
        return len(cache._entries), int(cache.max_entries)
    # The middleware's shortcut files each remembered session under several keys (the
    # header as received, its auth pairs...): count the sessions, against its size.
    sessions = len({id(entry) for entry in list(cache._recent.values())})
    return sessions, int(cache._recent_size)


def _lower_bounds(bound: int) -> None:
    for obj in gc.get_objects():
        if not _ours(obj):
            continue
        # A coordinator's max_entries too: it sizes the grace cache it makes per process.
        for name in ("max_size", "max_entries", "_recent_size"):
            if isinstance(getattr(obj, name, None), int):
                setattr(obj, name, bound)


def _stats() -> bytes:
    caches = [
        {
            "type": "recent sessions" if hasattr(cache, "_recent") else type(cache).__name__,
            "entries": entries,
            "bound": bound,
        }
        for cache in _caches()
        for entries, bound in [_bound_of(cache)]
    ]
    return json.dumps({"pid": os.getpid(), "rss_kb": _rss_kb(), "caches": caches}).encode()


def _bound_from_env() -> None:
    bound = os.environ.get("SOAK_CACHE_BOUND")
    if bound:
        _lower_bounds(int(bound))


class _WsgiStats:
    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.bounded = False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self.bounded:
            # After the fork: the caches of this worker, created by now.
            self.bounded = True
            _bound_from_env()
        if environ.get("PATH_INFO") == STATS_PATH:
            _bound_from_env()
            body = _stats()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        return self.app(environ, start_response)


def flask_app_with_stats() -> _WsgiStats:
    """gunicorn: ``soak:flask_app_with_stats()``, the Flask example behind the stats route."""
    import flask_app  # examples/ is gunicorn's chdir

    return _WsgiStats(flask_app.app)


class _AsgiStats:
    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.bounded = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if not self.bounded:
                self.bounded = True
                _bound_from_env()
            if scope["path"] == STATS_PATH:
                _bound_from_env()
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": _stats()})
                return
        await self.app(scope, receive, send)


def raw_asgi_with_stats() -> _AsgiStats:
    """uvicorn: ``--factory soak:raw_asgi_with_stats``, the raw ASGI example + the stats route."""
    import raw_asgi

    return _AsgiStats(raw_asgi.app)


# -- processes ----------------------------------------------------------------------------


def _tests_helpers() -> tuple[Any, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    import redis_server
    import support

    return support, redis_server


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


# -- the load -----------------------------------------------------------------------------


def _sub(token: str) -> str | None:
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]  # type: ignore[no-any-return]
    except (IndexError, ValueError, KeyError):
        return None


@dataclasses.dataclass
class User:
    id: str
    jwt: str | None
    refresh: str | None
    connections: Any = None

    def cookie(self) -> str:
        parts = []
        if self.jwt:
            parts.append(f"crossmint-jwt={self.jwt}")
        if self.refresh:
            parts.append(f"crossmint-refresh-token={self.refresh}")
        return "; ".join(parts)


@dataclasses.dataclass
class Tally:
    """Everything the load generator saw."""

    requests: int = 0
    ok: int = 0
    injected: int = 0
    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    cross_talk: int = 0
    cookies_checked: int = 0
    logins: int = 0
    transport_retries: int = 0
    latencies: list[float] = dataclasses.field(default_factory=list)
    samples: list[str] = dataclasses.field(default_factory=list)

    def error(self, kind: str, context: str = "") -> None:
        self.errors[kind] += 1
        if len(self.samples) < 10:
            self.samples.append(f"{kind}: {context}")


class TransportError(Exception):
    """The connection failed, closed early, or the answer was not HTTP."""


@dataclasses.dataclass
class Answer:
    """An HTTP answer as :class:`Connections` reads it."""

    method: str
    path: str
    sent_cookie: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header_list(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class Connections:
    """HTTP/1.1 over asyncio streams, connections kept alive in a small pool.

    A few lines instead of a client library: at 200 concurrent users httpx's
    own pool, not the server, was the bottleneck of the run.
    """

    def __init__(self, url: str) -> None:
        parts = httpx.URL(url)
        self.host, self.port = parts.host, parts.port or 80
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.retries = 0

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
    ) -> Answer:
        try:
            return await asyncio.wait_for(self._request(method, path, headers, body), 60)
        except asyncio.TimeoutError:
            raise TransportError("timeout") from None

    async def _request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> Answer:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items() if value]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        reused = bool(self.idle)
        connection = self.idle.pop() if reused else await self._open()
        try:
            answer, keep = await self._exchange(connection, data, method, path, headers)
        except (OSError, asyncio.IncompleteReadError, TransportError) as error:
            connection[1].close()
            if not reused or method != "GET":
                raise TransportError(type(error).__name__) from None
            # A kept-alive connection the server closed as it was reused: browsers
            # retry an idempotent request once on a new one, so does this client.
            self.retries += 1
            connection = await self._open()
            answer, keep = await self._exchange(connection, data, method, path, headers)
        if keep:
            self.idle.append(connection)
        else:
            connection[1].close()
        return answer

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.open_connection(self.host, self.port)
        except OSError as error:
            raise TransportError(type(error).__name__) from None

    @staticmethod
    async def _exchange(
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        data: bytes,
        method: str,
        path: str,
        headers: dict[str, str],
    ) -> tuple[Answer, bool]:
        reader, writer = connection
        writer.write(data)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise TransportError(f"not HTTP: {status_line[:40]!r}")
        pairs = []
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                pairs.append((name.strip().lower(), value.strip()))
        found = dict(pairs)
        if "content-length" in found:
            body = await reader.readexactly(int(found["content-length"]))
        elif found.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            body = b"".join(chunks)
        else:
            body = await reader.read()
            return Answer(
                method, path, headers.get("cookie", ""), int(parts[1]), pairs, body
            ), False
        keep = found.get("connection", "").lower() != "close"
        answer = Answer(method, path, headers.get("cookie", ""), int(parts[1]), pairs, body)
        return answer, keep

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


class Load:
    """``users`` browsers against one server until ``deadline``."""

    def __init__(self, url: str, emulator_url: str, users: list[User], seed: int = 9) -> None:
        self.url = url
        self.emulator_url = emulator_url
        self.users = users
        self.tally = Tally()
        self.rng = random.Random(seed)
        self.injected_at: float | None = None
        self.started = time.monotonic()

    def _in_injection_window(self) -> bool:
        return self.injected_at is not None and time.monotonic() - self.injected_at < 10

    def _take_cookies(self, user: User, answer: Answer) -> None:
        for line in answer.header_list("set-cookie"):
            name, _, rest = line.partition("=")
            value = rest.split(";", 1)[0]
            if name == "crossmint-jwt":
                if value:
                    self.tally.cookies_checked += 1
                    if _sub(value) != user.id:
                        self.tally.cross_talk += 1
                    user.jwt = value
                else:
                    user.jwt = None
            elif name == "crossmint-refresh-token":
                user.refresh = value or None

    def _judge(self, user: User, answer: Answer, seconds: float) -> None:
        tally = self.tally
        sent = answer.sent_cookie
        context = (
            f"{user.id} {answer.method} {answer.path}"
            f" sent jwt={'crossmint-jwt=' in sent} refresh={'crossmint-refresh-token=' in sent}"
            f" at {time.monotonic() - self.started:.1f} s"
        )
        tally.requests += 1
        tally.latencies.append(seconds)
        self._take_cookies(user, answer)
        data = answer.json()
        if answer.status == 200:
            mine = not isinstance(data, dict) or data.get("user_id", user.id) == user.id
            if answer.path == "/api/me" and not mine:
                tally.cross_talk += 1
            tally.ok += 1
            return
        code = data.get("error", "") if isinstance(data, dict) else ""
        unavailable = answer.status == 503 and code == "UPSTREAM_UNAVAILABLE"
        if unavailable and self._in_injection_window():
            tally.injected += 1
            return
        tally.error(f"{answer.status} {code}".strip(), context)

    async def _get(self, user: User, path: str) -> None:
        headers = {"cookie": user.cookie(), "accept": "application/json"}
        started = time.monotonic()
        try:
            answer = await user.connections.request("GET", path, headers)
        except TransportError as error:
            self.tally.error(f"transport: {error}", f"{user.id} GET {path}")
            return
        self._judge(user, answer, time.monotonic() - started)

    async def _relogin(self, user: User, emulator: Connections) -> None:
        """Log out through the middleware, then log in as the browser SDK does.

        A login that meets Crossmint unavailable (503) is retried, as a user would.
        """
        try:
            answer = await user.connections.request("POST", "/logout", {"cookie": user.cookie()})
            self._judge(user, answer, 0.0)
            for _ in range(5):
                minted = await emulator.request(
                    "POST",
                    "/_emulator/one-time-secrets",
                    {},
                    json.dumps({"user_id": user.id}).encode(),
                )
                secret = minted.json()["secret"]
                started = time.monotonic()
                body = json.dumps({"refresh": secret}).encode()
                answer = await user.connections.request("POST", "/refresh", {}, body)
                self._judge(user, answer, time.monotonic() - started)
                if answer.status != 503:
                    break
                await asyncio.sleep(0.5)
        except TransportError as error:
            self.tally.error(f"transport: {error}", f"{user.id} login")
            return
        self.tally.logins += 1

    async def _browse(self, user: User, deadline: float) -> None:
        rng = random.Random(self.rng.random())
        emulator = Connections(self.emulator_url)
        user.connections = Connections(self.url)
        try:
            while time.monotonic() < deadline:
                roll = rng.random()
                if roll < 0.01:
                    await self._relogin(user, emulator)
                elif roll < 0.11:
                    await asyncio.gather(*(self._get(user, "/api/me") for _ in range(3)))
                elif roll < 0.2:
                    await self._get(user, "/protected")
                else:
                    await self._get(user, "/api/me")
                await asyncio.sleep(rng.uniform(0, 0.05))
        finally:
            self.tally.transport_retries += user.connections.retries
            user.connections.close()
            emulator.close()

    async def run(self, seconds: float, events: list[tuple[float, Callable[[], Any]]]) -> None:
        deadline = time.monotonic() + seconds
        started = self.started = time.monotonic()

        async def timeline() -> None:
            for at, action in events:
                await asyncio.sleep(max(0.0, started + at - time.monotonic()))
                await asyncio.to_thread(action)

        await asyncio.gather(timeline(), *(self._browse(user, deadline) for user in self.users))


async def _baseline(url: str, seconds: float, concurrency: int) -> float:
    """Anonymous ``GET /`` per second: no cookies, the middleware's cheapest path."""
    deadline = time.monotonic() + seconds
    count = 0

    async def loop() -> None:
        nonlocal count
        connections = Connections(url)
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(TransportError):
                    answer = await connections.request("GET", "/", {})
                    if answer.status == 200:
                        count += 1
        finally:
            connections.close()

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return count / seconds


# -- one server ---------------------------------------------------------------------------


@dataclasses.dataclass
class ServerResult:
    """The figures of one server's run."""

    name: str
    seconds: float
    users: int
    requests: int
    ok: int
    injected: int
    errors: dict[str, int]
    cross_talk: int
    cookies_checked: int
    error_samples: list[str]
    transport_retries: int
    logins: int
    throughput: float
    baseline: float
    p50_ms: float
    p99_ms: float
    rss_warm_kb: dict[int, int]
    rss_end_kb: dict[int, int]
    caches: list[dict[str, Any]]
    crossmint_calls: dict[str, int]
    redis: dict[str, int] | None

    @property
    def rss_growth(self) -> float:
        """The largest growth of one server process, end against warm-up."""
        growths = [
            self.rss_end_kb[pid] / warm - 1
            for pid, warm in self.rss_warm_kb.items()
            if pid in self.rss_end_kb and warm
        ]
        return max(growths) if growths else float("nan")

    @property
    def unexpected_errors(self) -> int:
        return sum(self.errors.values()) + self.cross_talk

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["rss_growth"] = self.rss_growth
        return data


def _server_pids(process_pid: int, name: str) -> list[int]:
    # gunicorn: the workers serve, the master only supervises.
    return _children(process_pid) if name == "gunicorn" else [process_pid]


def _rss(pids: list[int]) -> dict[int, int]:
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            found[pid] = _rss_kb(pid)
    return found


def _worker_stats(url: str, expected: int) -> list[dict[str, Any]]:
    """``/_soak/stats`` of every worker: ask until each has answered once."""
    seen: dict[int, dict[str, Any]] = {}
    with httpx.Client(timeout=10) as client:
        for _ in range(expected * 40):
            data = client.get(url + STATS_PATH, headers={"connection": "close"}).json()
            seen[data["pid"]] = data
            if len(seen) >= expected:
                break
    return list(seen.values())


def _emulator_post(emulator_url: str, path: str, payload: dict[str, Any]) -> Any:
    response = httpx.post(f"{emulator_url}/_emulator/{path}", json=payload, timeout=30)
    response.raise_for_status()
    return response.json()


def _users(emulator_url: str, count: int, prefix: str) -> list[User]:
    users = []
    with httpx.Client(timeout=30) as client:
        for index in range(count):
            user_id = f"{prefix}-{index}"
            data = client.post(
                f"{emulator_url}/_emulator/sessions",
                json={"user_id": user_id, "email": f"{user_id}@example.com"},
            ).json()
            users.append(User(user_id, data["jwt"], data["refresh"]["secret"]))
    return users


def soak_server(
    name: str,
    *,
    emulator_url: str,
    redis_url: str | None,
    seconds: float,
    users: int,
    cache_bound: int,
    log: Callable[[str], None] = print,
) -> ServerResult:
    """Start one example under its server, load it, and collect the figures."""
    support, _ = _tests_helpers()
    port = support.free_port()
    env = {
        "CROSSMINT_EMULATOR_URL": emulator_url,
        "SOAK_CACHE_BOUND": str(cache_bound),
        "PORT": str(port),
        "PYTHONPATH": os.pathsep.join([str(BENCH), str(EXAMPLES)]),
    }
    if name == "gunicorn":
        env["WEB_CONCURRENCY"] = "4"
        if redis_url:
            env["CROSSMINT_REDIS_URL"] = redis_url
        command = [
            PYTHON,
            "-m",
            "gunicorn",
            "-c",
            str(EXAMPLES / "gunicorn.conf.py"),
            "--pythonpath",
            str(BENCH),
            "soak:flask_app_with_stats()",
        ]
        workers = 4
    else:
        command = [
            PYTHON,
            "-m",
            "uvicorn",
            "--factory",
            "soak:raw_asgi_with_stats",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        workers = 1
    with support.run_server(command, port=port, env=env, ready_path="/", timeout=60) as server:
        url = server.url
        # Every worker up (each answers its stats) before the clock starts.
        _worker_stats(url, workers)
        baseline_seconds = min(5.0, max(2.0, seconds / 10))
        # As many connections as there will be users: the same concurrency, no sessions.
        baseline = asyncio.run(_baseline(url, baseline_seconds, users))
        log(f"  {name}: baseline {baseline:.0f} anonymous req/s")
        load = Load(url, emulator_url, _users(emulator_url, users, f"soak-{name}"))
        pids = _server_pids(server.process.pid, name)
        samples: dict[str, dict[int, int]] = {}
        before = httpx.get(f"{emulator_url}/_emulator/requests").json()

        def warm() -> None:
            samples["warm"] = _rss(pids)

        def rotate() -> None:
            kid = _emulator_post(emulator_url, "rotate-keys", {"keep_old": True})["kid"]
            log(f"  {name}: Crossmint rotated its signing key (new kid {kid[:8]}...)")

        def inject() -> None:
            load.injected_at = time.monotonic()
            _emulator_post(
                emulator_url, "fail-next", {"n": INJECTED, "status": 503, "endpoint": "refresh"}
            )
            log(f"  {name}: {INJECTED} refresh calls will fail with 503")

        events = [(seconds * 0.25, warm), (seconds * 0.5, rotate), (seconds * 0.7, inject)]
        started = time.monotonic()
        asyncio.run(load.run(seconds, events))
        elapsed = time.monotonic() - started
        end_rss = _rss(pids)
        after = httpx.get(f"{emulator_url}/_emulator/requests").json()
        caches = [
            {**cache, "pid": stats["pid"]}
            for stats in _worker_stats(url, workers)
            for cache in stats["caches"]
        ]
    redis_figures = None
    if redis_url and name == "gunicorn":
        import redis

        with redis.Redis.from_url(redis_url) as client:
            info = client.info("memory")
            redis_figures = {"keys": int(client.dbsize()), "used_memory": int(info["used_memory"])}
    tally = load.tally
    latencies = sorted(tally.latencies) or [0.0]
    return ServerResult(
        name=name,
        seconds=elapsed,
        users=users,
        requests=tally.requests,
        ok=tally.ok,
        injected=tally.injected,
        errors=dict(tally.errors),
        cross_talk=tally.cross_talk,
        cookies_checked=tally.cookies_checked,
        error_samples=tally.samples,
        transport_retries=tally.transport_retries,
        logins=tally.logins,
        throughput=tally.requests / elapsed,
        baseline=baseline,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99) - 1 if len(latencies) > 1 else 0] * 1000,
        rss_warm_kb=samples.get("warm", {}),
        rss_end_kb=end_rss,
        caches=caches,
        crossmint_calls={key: after[key] - before.get(key, 0) for key in after},
        redis=redis_figures,
    )


@contextlib.contextmanager
def crossmint_and_redis(
    jwt_ttl: int, *, with_redis: bool = True
) -> Iterator[tuple[str, str | None]]:
    """The emulator (a process of its own) and a redis-server, for the servers to share."""
    support, redis_server = _tests_helpers()
    port = support.free_port()
    command = [
        PYTHON,
        "-m",
        "crossmint_wsgi.testing",
        "--port",
        str(port),
        "--jwt-ttl",
        str(jwt_ttl),
        "--reuse-window",
        "0",
    ]
    with support.run_server(command, port=port, ready_path="/_emulator/config") as emulator:
        if not with_redis:
            yield emulator.url, None
            return
        with redis_server.redis_server() as redis:
            yield emulator.url, redis.url


def soak(
    *,
    seconds: float = 60.0,
    users: int = 200,
    jwt_ttl: int = 4,
    cache_bound: int = 256,
    servers: tuple[str, ...] = ("gunicorn", "uvicorn"),
    log: Callable[[str], None] = print,
) -> list[ServerResult]:
    """Soak each server in turn; see the module docstring."""
    results = []
    with crossmint_and_redis(jwt_ttl) as (emulator_url, redis_url):
        for name in servers:
            log(f"{name}: {users} users for {seconds:g} s, JWTs living {jwt_ttl} s")
            results.append(
                soak_server(
                    name,
                    emulator_url=emulator_url,
                    redis_url=redis_url,
                    seconds=seconds,
                    users=users,
                    cache_bound=cache_bound,
                    log=log,
                )
            )
    return results


def report(result: ServerResult) -> str:
    """The figures of one server, as printed."""
    growth = result.rss_growth
    lines = [
        f"== {result.name}: {result.users} users, {result.seconds:.0f} s",
        f"requests            {result.requests}  ({result.throughput:.0f}/s,"
        f" {result.throughput / result.baseline:.2f} x the anonymous baseline"
        f" of {result.baseline:.0f}/s)",
        f"latency             p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms",
        f"answers OK          {result.ok}",
        f"injected 503s seen  {result.injected}  (from {INJECTED} failed refresh calls)",
        f"unexpected errors   {sum(result.errors.values())}  {result.errors or ''}",
        f"cross-talk          {result.cross_talk}  ({result.cookies_checked} new JWT cookies"
        " checked against their request's user)",
        f"logins through /refresh  {result.logins}",
        f"transport retries   {result.transport_retries}  (kept-alive connection closed on reuse)",
        *(f"  e.g. {sample}" for sample in result.error_samples[:5]),
        f"RSS growth          {growth:+.1%} (largest process, end vs after warm-up;"
        f" target < 10 %): "
        + ", ".join(
            f"{pid}: {result.rss_warm_kb[pid] // 1024}->{result.rss_end_kb.get(pid, 0) // 1024} MiB"
            for pid in result.rss_warm_kb
        ),
        "caches (entries/bound)  "
        + ", ".join(
            f"{cache['type']}@{cache['pid']} {cache['entries']}/{cache['bound']}"
            for cache in result.caches
        ),
        f"Crossmint calls     {result.crossmint_calls}",
    ]
    if result.redis is not None:
        lines.append(
            f"redis               {result.redis['keys']} keys, "
            f"{result.redis['used_memory'] // 1024} KiB"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load time per server")
    parser.add_argument("--users", type=int, default=200, help="distinct concurrent users")
    parser.add_argument("--jwt-ttl", type=int, default=4, help="JWT lifetime, seconds")
    parser.add_argument("--cache-bound", type=int, default=256, help="bound set on each cache")
    parser.add_argument("--servers", default="gunicorn,uvicorn", help="comma-separated")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    results = soak(
        seconds=args.seconds,
        users=args.users,
        jwt_ttl=args.jwt_ttl,
        cache_bound=args.cache_bound,
        servers=tuple(args.servers.split(",")),
    )
    for result in results:
        print(report(result))
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=2))
    failed = [
        r.name for r in results if r.unexpected_errors or not r.rss_growth < 0.10 or r.requests == 0
    ]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
