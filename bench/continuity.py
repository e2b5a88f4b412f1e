"""Continuity on real servers: is anyone logged out by how the app is deployed?

    .venv/bin/python bench/continuity.py [--write] [--sessions 10] [--hammer-seconds 5]

Runs the examples under real servers (gunicorn, uvicorn) in front of the
Crossmint emulator with single-use refresh secrets (``reuse_window=0``: a
second trade of a secret is refused, so a double refresh shows up as a
logged-out user), once with the host store (the default; each server gets a
fresh directory through ``CROSSMINT_HOST_STORE``) and once with it turned off
(``CROSSMINT_HOST_STORE=off``, the "before" baseline), and measures:

1. gunicorn ``-w 4 --threads 8`` (Flask example): a page's parallel requests
   (``--burst``, 64) arrive with a JWT that just expired, for ``--sessions``
   sessions: upstream refreshes per session, requests and users logged out,
   the slowest answer.
2. uvicorn ``--workers 2`` (raw ASGI example): the same.
3. gunicorn ``-w 4``: one worker is warmed with a GET (it fetches Crossmint's
   key set), Crossmint goes down, then ``POST /refresh`` with a valid JWT
   reaches every worker: each non-200 answer would log the browser SDK's
   user out.
4. gunicorn ``-w 4``: a session's JWT cached in every worker, ``POST /logout``,
   then several threads ask ``GET /api/me`` with the old JWT for
   ``--hammer-seconds``: requests still served after the logout's answer, and
   per worker the time from that answer to the last one it served.
5. Crossmint answering in 2 s, a request with an expired JWT starts a refresh,
   0.5 s later ``POST /logout`` with the same cookies on another connection:
   did that request get a session, does ``POST /refresh`` with the secret it
   got answer 200, how many logouts Crossmint was told of (the pair minted
   after the logout must be revoked), is the JWT it got still served.
   gunicorn ``-w 2`` and uvicorn ``--workers 2``.
6. gunicorn ``-w 2``: a session refreshed, then logged out with its cookies
   from before that refresh (a tab that missed the rotation, or a logout that
   reached the server after the refresh it raced had ended): is the new pair
   still served 1 s later.

7. gunicorn ``-w 4 --threads 8`` with ``CROSSMINT_REDIS_URL`` (a real redis-server,
   killed once every worker had refreshed through it, started again after the row):
   row 1's bursts while Redis is down, ``--redis-sessions`` sessions.
8. Two simulated hosts (gunicorn ``-w 2`` each, a host store each, one Redis, killed):
   each session's parallel requests half to each host, Crossmint answering in 0.3 s;
   users logged out (401 or cookies cleared; a 503 with cookies kept is counted apart),
   and once Redis is back, the session's next request with the newest cookies on both
   hosts. Host store on only, unless ``--two-hosts-off``.
9. The two hosts, a session's JWT cached in every worker of both, Redis killed,
   ``POST /logout`` on host 1, the old JWT asked of both hosts, Redis restarted
   ``--redis-down`` s later: requests served by host 1 after the logout, and by host 2
   once Redis is back (issue 21: every host within 1 s of Redis returning).

``--rows 135`` runs some of them only (while working on one).

Every figure is a count or a ratio measured in this run. The script prints a
Markdown section; ``--write`` puts it in ``docs/RELIABILITY.md`` between the
``continuity:start`` / ``continuity:end`` markers. Exit status 1 when a cell
that should be 0 with the host store is not.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import datetime
import http.client
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from redis_server import redis_server  # noqa: E402
from support import Server, require_program, serve  # noqa: E402

from crossmint_wsgi import CrossmintAuth, CrossmintAuthError  # noqa: E402
from crossmint_wsgi.testing import CrossmintEmulator  # noqa: E402

DOC = ROOT / "docs" / "RELIABILITY.md"
START, END = "<!-- continuity:start -->", "<!-- continuity:end -->"
JWT_COOKIE = "crossmint-jwt"
REFRESH_COOKIE = "crossmint-refresh-token"
#: Crossmint's latency during the bursts (row 1 and 2), as in tests/test_multiprocess.py.
BURST_LATENCY = 0.1
#: Crossmint's latency during the logout race (row 5), and when the logout starts.
RACE_LATENCY, RACE_LOGOUT_AFTER = 2.0, 0.5
#: Crossmint's latency during the two hosts' bursts (row 8): the hosts' trades overlap.
TWO_HOSTS_LATENCY = 0.3
#: Seconds the old JWT is still asked of both hosts once Redis is back (row 9).
REDIS_BACK_SECONDS = 3.0
#: The longest a request should wait (issue 20: "never hold a request more than 10 s").
MAX_WAIT = 10.0

#: One access log line per request, gunicorn's and uvicorn's alike (see the formats below):
#: the worker's pid, the request's probe (gunicorn: its X-Probe header; uvicorn: the client's
#: address and port), method, path and status.
#: Not anchored: another process's line may have been written just before it with no newline
#: in between (raw_asgi.py prints its line and the newline in two writes).
ACCESS = re.compile(r'ACCESS pid=<?(\d+)>? probe=(\S*) request="(\S+) (\S+) [^"]*" status=(\d+)')
GUNICORN_ACCESS = 'ACCESS pid=%(p)s probe=%({x-probe}i)s request="%(r)s" status=%(s)s'
UVICORN_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {
            "()": "uvicorn.logging.DefaultFormatter",
            "fmt": "%(levelprefix)s [%(process)d] %(message)s",
            "use_colors": False,
        },
        "access": {
            "()": "uvicorn.logging.AccessFormatter",
            "fmt": 'ACCESS pid=%(process)d probe=%(client_addr)s request="%(request_line)s"'
            " status=%(status_code)s",
            "use_colors": False,
        },
    },
    "handlers": {
        "default": {"formatter": "default", "class": "logging.StreamHandler"},
        "access": {
            "formatter": "access",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}


# -- servers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """A server command line for one of the examples."""

    label: str
    command: Callable[[int, Path], list[str]]
    workers: int


def gunicorn(workers: int, threads: int = 1) -> Deployment:
    label = f"gunicorn `-w {workers}" + (f" --threads {threads}`" if threads > 1 else "`")

    def command(port: int, _: Path) -> list[str]:
        return [
            require_program("gunicorn"),
            "--chdir", str(ROOT / "examples"), "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads), "--graceful-timeout", "2",
            "--access-logfile", "-", "--access-logformat", GUNICORN_ACCESS,
            "flask_app:app",
        ]  # fmt: skip

    return Deployment(label, command, workers)


def uvicorn(workers: int) -> Deployment:
    def command(port: int, scratch: Path) -> list[str]:
        log_config = scratch / "uvicorn-log.json"
        log_config.write_text(json.dumps(UVICORN_LOG_CONFIG))
        return [
            require_program("uvicorn"),
            "--app-dir", str(ROOT / "examples"), "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--log-config", str(log_config), "raw_asgi:app",
        ]  # fmt: skip

    return Deployment(f"uvicorn `--workers {workers}` (raw ASGI)", command, workers)


@contextlib.contextmanager
def running(
    deployment: Deployment, emulator: CrossmintEmulator, host_store: bool, redis_url: str = ""
) -> Iterator[Server]:
    """The deployment on a free port, with a host store of its own (or none), on ``emulator``
    (and on the Redis at ``redis_url``, when given)."""
    scratch = Path(tempfile.mkdtemp(prefix="continuity-"))  # 0700, ours
    store = scratch / "host-store"
    store.mkdir(mode=0o700)
    env = {
        "CROSSMINT_EMULATOR_URL": emulator.url,
        "CROSSMINT_REDIS_URL": redis_url,
        "CROSSMINT_HOST_STORE": str(store) if host_store else "off",
    }
    try:
        with serve(lambda port: deployment.command(port, scratch), env=env) as server:
            yield server
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def access_log(server: Server, since: int = 0) -> list[tuple[int, str, str, str, int]]:
    """``(pid, probe, method, path, status)`` of each access log line after offset ``since``."""
    return [
        (int(pid), probe, method, path.split("?", 1)[0], int(status))
        for pid, probe, method, path, status in ACCESS.findall(server.output()[since:])
    ]


def worker_pids(server: Server, answers: Sequence[Answer], since: int) -> dict[str, int]:
    """The pid that served each of ``answers`` (by probe), from the access log after ``since``.

    Access log lines are written after the answer: waits (up to 10 s) for all of them.
    """
    wanted = {answer.probe for answer in answers} | {answer.client for answer in answers}
    deadline = time.monotonic() + 10
    while True:
        found = {probe: pid for pid, probe, *_ in access_log(server, since) if probe in wanted}
        if all(a.probe in found or a.client in found for a in answers):
            break
        if time.monotonic() > deadline:
            missing = sum(1 for a in answers if a.probe not in found and a.client not in found)
            print(f"warning: {missing} requests not in the access log", file=sys.stderr)
            break
        time.sleep(0.05)
    return {
        answer.probe: found.get(answer.probe, found.get(answer.client, 0)) for answer in answers
    }


# -- a client --------------------------------------------------------------------------------

_probes = itertools.count(1)


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    cookies: dict[str, str]  # the Set-Cookie values by name ("" when cleared)
    sent: float  # time.monotonic() when the request was sent
    seconds: float
    probe: str  # the X-Probe header: gunicorn logs it
    client: str  # the client's address: uvicorn logs it

    @property
    def user(self) -> str | None:
        user = self.body.get("user_id") or (self.body.get("user") or {}).get("id")
        return str(user) if user else None

    @property
    def cleared(self) -> bool:
        return any(value == "" for value in self.cookies.values())


def request(
    port: int,
    method: str,
    path: str,
    cookie: str,
    body: bytes | None = None,
    *,
    ready: threading.Barrier | None = None,
) -> Answer:
    """One request on a connection of its own (so that requests spread over the workers)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    probe = str(next(_probes))
    try:
        connection.connect()
        assert connection.sock is not None
        host, local_port = connection.sock.getsockname()[:2]
        client = f"{host}:{local_port}"
        headers = {"Cookie": cookie, "X-Probe": probe}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if ready is not None:
            ready.wait()
        sent = time.monotonic()
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        seconds = time.monotonic() - sent
        cookies = {}
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            cookies[name.strip()] = rest.split(";", 1)[0]
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = {}
        return Answer(
            response.status,
            parsed if isinstance(parsed, dict) else {},
            cookies,
            sent,
            seconds,
            probe,
            client,
        )
    finally:
        connection.close()


def cookie_of(jwt: str | None, secret: str | None) -> str:
    parts = []
    if jwt is not None:
        parts.append(f"{JWT_COOKIE}={jwt}")
    if secret is not None:
        parts.append(f"{REFRESH_COOKIE}={secret}")
    return "; ".join(parts)


def parallel(
    count: int,
    port: int | Sequence[int],
    method: str,
    path: str,
    cookie: str,
    body: bytes | None = None,
    *,
    at_once: bool = False,
) -> list[Answer]:
    """``count`` requests at the same time, each on a connection of its own; with several
    ports, request ``i`` goes to ``port[i % len(port)]`` (spread evenly over the hosts).

    ``at_once``: every request is sent when all ``count`` connections are open.
    """
    ports = [port] if isinstance(port, int) else list(port)
    ready = threading.Barrier(count) if at_once else None
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        pending = [
            pool.submit(request, ports[i % len(ports)], method, path, cookie, body, ready=ready)
            for i in range(count)
        ]
        return [each.result() for each in pending]


def clients(port: int, path: str, cookie: str, threads: int, until: float) -> list[Answer]:
    """``threads`` clients asking ``path`` one request after another until ``until``."""

    def client() -> list[Answer]:
        answers = []
        while time.monotonic() < until:
            answers.append(request(port, "GET", path, cookie))
        return answers

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        pending = [pool.submit(client) for _ in range(threads)]
        return [answer for each in pending for answer in each.result()]


def reach_every_worker(server: Server, deployment: Deployment, cookie: str) -> None:
    """``GET /api/me`` with ``cookie``, 8 at a time, until every worker served it."""
    since = len(server.output())
    answers: list[Answer] = []
    for _ in range(30):
        answers += parallel(8, server.port, "GET", "/api/me", cookie)
        assert all(a.status == 200 for a in answers), [a.status for a in answers]
        if len(set(worker_pids(server, answers, since).values()) - {0}) >= deployment.workers:
            return
    raise SystemExit(f"the session never reached all {deployment.workers} workers")


# -- results ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table."""

    situation: str
    deployment: str
    host_store: bool
    refreshes: str  # upstream refreshes per session
    lost: str  # users logged out, or sessions served after their logout
    worst: float  # the slowest answer, seconds
    detail: str
    #: Counts that must be 0 with the host store, by what they count.
    must_be_zero: dict[str, int] = field(default_factory=dict)
    #: Server log lines worth showing when one of them is not 0.
    evidence: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        if not self.host_store:
            return []
        return [f"{what}: {count}" for what, count in self.must_be_zero.items() if count]


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def span_seconds(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.1f} s" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f} s"


def span(values: Sequence[int]) -> str:
    """``"2-4"``, or ``"3"`` when they are all the same."""
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


#: Server lines that say nothing about sessions: start-up and shut-down.
_ROUTINE = re.compile(
    r"ACCESS pid=|\[INFO\]|^INFO: |flask_app: using|raw_asgi: using|^(GET|POST) /"
)


def evidence(server: Server, since: int = 0, limit: int = 40) -> list[str]:
    """The server's lines after ``since`` but routine ones: warnings, errors, tracebacks."""
    lines = [
        line
        for line in server.output()[since:].splitlines()
        if line.strip() and not _ROUTINE.search(line)
    ]
    return lines[-limit:] or ["(no warning or error in the server's log)"]


def _probe_of(line: str) -> str | None:
    found = ACCESS.search(line)
    return found.group(2) if found else None


# -- row 1 and 2: a page's parallel requests after the JWT expired ---------------------------


def bursts(
    emulator: CrossmintEmulator,
    deployment: Deployment,
    host_store: bool,
    sessions: int,
    size: int,
) -> Row:
    refreshes: list[int] = []
    lost_requests = lost_users = 0
    statuses: collections.Counter[int] = collections.Counter()
    worst = 0.0
    spread: list[int] = []
    new_sessions: list[int] = []
    with running(deployment, emulator, host_store) as server:
        for n in range(sessions):
            login = emulator.create_session(f"burst-{n}", email=f"b{n}@example.com", jwt_ttl=-30)
            cookie = cookie_of(login.jwt, login.refresh_token.secret)
            since = len(server.output())
            before = emulator.requests["refresh"]
            emulator.set_latency(BURST_LATENCY)
            try:
                answers = parallel(size, server.port, "GET", "/api/me", cookie, at_once=True)
            finally:
                emulator.set_latency(0)
            refreshes.append(emulator.requests["refresh"] - before)
            kept = [a for a in answers if a.status == 200 and a.user == f"burst-{n}"]
            statuses.update(a.status for a in answers)
            lost_requests += size - len(kept)
            lost_users += len(kept) < size
            worst = max([worst, *(a.seconds for a in answers)])
            spread.append(len(set(worker_pids(server, answers, since).values()) - {0}))
            new_jwts = {a.cookies[JWT_COOKIE] for a in answers if a.cookies.get(JWT_COOKIE)}
            new_sessions.append(len(new_jwts))
        log = evidence(server) if lost_users else []
    detail = (
        f"{lost_requests} of {sessions * size} requests logged out (statuses"
        f" {dict(sorted(statuses.items()))}); {sum(1 for n in spread if n > 1)} of {sessions}"
        f" bursts spread over several workers ({span(spread)} of {deployment.workers});"
        f" distinct new JWTs per session {span(new_sessions)}"
    )
    return Row(
        f"a page's {size} parallel requests after the JWT expired, {sessions} sessions",
        deployment.label,
        host_store,
        f"{statistics.mean(refreshes):.1f} (max {max(refreshes)})",
        f"{lost_users} of {sessions} users",
        worst,
        detail,
        {"users logged out": lost_users, "requests logged out": lost_requests},
        log,
    )


# -- row 3: a worker started during an outage ------------------------------------------------


def outage(
    emulator: CrossmintEmulator, deployment: Deployment, host_store: bool, posts: int
) -> Row:
    emulator.reset()
    live = emulator.create_session("outage", email="outage@example.com", jwt_ttl=3600)
    cookie = cookie_of(live.jwt, live.refresh_token.secret)
    with running(deployment, emulator, host_store) as server:
        warm = request(server.port, "GET", "/api/me", cookie)
        assert warm.status == 200, (warm.status, warm.body)
        key_fetches = emulator.requests["jwks"]
        since = len(server.output())
        emulator.set_down(True)
        answers: list[Answer] = []
        reached: set[int] = set()
        try:
            # Rounds of parallel POSTs until every worker answered some (and at least `posts`).
            for _ in range(20):
                answers += parallel(8, server.port, "POST", "/refresh", cookie, b"{}")
                reached = set(worker_pids(server, answers, since).values()) - {0}
                if len(reached) >= deployment.workers and len(answers) >= posts:
                    break
        finally:
            emulator.set_down(False)
        failed = [a for a in answers if a.status != 200 or a.body.get("jwt") != live.jwt]
        statuses = collections.Counter(a.status for a in answers)
        pids = worker_pids(server, answers, since)
        failing_workers = {pids[a.probe] for a in failed}
        log = evidence(server, since) if failed else []
    detail = (
        f"{len(answers)} POSTs over {len(reached)} of {deployment.workers} workers (statuses"
        f" {dict(sorted(statuses.items()))}; {len(failing_workers - {0})} worker(s) failing);"
        f" key set fetches before the outage: {key_fetches}"
    )
    return Row(
        "a worker that never fetched the key set, Crossmint down: `POST /refresh` with a valid JWT",
        deployment.label,
        host_store,
        "0 (none needed)",
        f"{len(failed)} of {len(answers)} answers not 200",
        max(a.seconds for a in answers),
        detail,
        {"refresh answers that log the SDK's user out": len(failed)},
        log,
    )


# -- row 4: logout propagation ---------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(len(ordered) * fraction + 0.5) - 1))]


def logouts(
    emulator: CrossmintEmulator,
    deployment: Deployment,
    host_store: bool,
    count: int,
    hammer: float,
    threads: int,
) -> Row:
    emulator.reset()
    served_after = 0
    total_after = 0
    delays: list[float] = []  # per worker and logout: logout answer -> last request served
    still_serving = 0  # workers still serving the session when the hammering stopped
    sessions_served = 0
    worst = 0.0
    log: list[str] = []
    with running(deployment, emulator, host_store) as server:
        for n in range(count):
            login = emulator.create_session(f"logout-{n}", email=f"l{n}@example.com")
            jwt_only = cookie_of(login.jwt, None)
            # The JWT in every worker's caches.
            reach_every_worker(server, deployment, jwt_only)
            since = len(server.output())
            logout = request(
                server.port, "POST", "/logout", cookie_of(login.jwt, login.refresh_token.secret)
            )
            assert logout.status == 200, (logout.status, logout.body)
            answered = logout.sent + logout.seconds
            after = clients(server.port, "/api/me", jwt_only, threads, answered + hammer)
            pids = worker_pids(server, [logout, *after], since)
            served = [a for a in after if a.status == 200]
            served_after += len(served)
            total_after += len(after)
            sessions_served += bool(served)
            worst = max([worst, *(a.seconds for a in after)])
            last: dict[int, float] = dict.fromkeys(set(pids.values()) - {0}, 0.0)
            count_by_pid: collections.Counter[int] = collections.Counter()
            for answer in served:
                pid = pids[answer.probe]
                count_by_pid[pid] += 1
                last[pid] = max(last.get(pid, 0.0), answer.sent - answered)
            delays += last.values()
            still_serving += sum(1 for delay in last.values() if delay > hammer * 0.9)
            # What each worker did after the logout's answer, for the report.
            log.append(
                f"logout {n}: answered by pid {pids[logout.probe]} in {logout.seconds * 1000:.0f}"
                " ms; after its answer, per worker: "
                + ", ".join(
                    f"pid {pid} served {count_by_pid[pid]} (last sent at +{last[pid] * 1000:.0f}"
                    " ms)"
                    for pid in sorted(last)
                )
            )
            by_probe = {
                probe: line
                for line in server.output()[since:].splitlines()
                for probe in [_probe_of(line)]
                if probe
            }
            last_served = sorted(served, key=lambda a: a.sent)[-3:]
            log += [
                f"  +{(a.sent - answered) * 1000:.0f} ms: {by_probe.get(a.probe, '?')}"
                for a in last_served
            ]
        log += evidence(server)
    censored = still_serving > 0
    p50, p99 = percentile(delays, 0.5), percentile(delays, 0.99)
    floor = "≥ " if censored else ""
    detail = (
        f"propagation per worker, logout answer to the last request served: p50"
        f" {floor if p50 > hammer * 0.9 else ''}{p50 * 1000:.0f} ms, p99"
        f" {floor if p99 > hammer * 0.9 else ''}{p99 * 1000:.0f} ms ({len(delays)} worker"
        f" logouts; {still_serving} still serving after {hammer:g} s); {served_after} of"
        f" {total_after} requests served after the logout; {sessions_served} of {count}"
        " sessions served at least once"
    )
    return Row(
        f"logout, then the old JWT on every worker for {hammer:g} s, {count} sessions",
        deployment.label,
        host_store,
        "0 (none needed)",
        f"{served_after} requests served after the logout",
        worst,
        detail,
        {"requests served after the logout": served_after},
        log,
    )


# -- row 5: a logout during an in-flight refresh ---------------------------------------------


def secret_alive(emulator: CrossmintEmulator, secret: str) -> bool:
    """Whether Crossmint still trades ``secret`` (it is spent either way: ask last)."""
    with CrossmintAuth(emulator.crossmint()) as auth:
        try:
            auth.refresh(secret)
        except CrossmintAuthError:
            return False
    return True


def races(
    emulator: CrossmintEmulator, deployment: Deployment, host_store: bool, trials: int
) -> Row:
    emulator.reset()
    outlived = accepted = served_jwt = 0
    log: list[str] = []
    upstream_logouts: list[int] = []
    apart = attempts = 0
    refreshes: list[int] = []
    outcomes: collections.Counter[str] = collections.Counter()
    a_seconds: list[float] = []
    logout_seconds: list[float] = []
    worst = 0.0
    with running(deployment, emulator, host_store) as server:
        # Every worker holds the key set first (the race is about the refresh, not the keys).
        reach_every_worker(server, deployment, cookie_of(emulator.issue_jwt("warm"), None))
        # Which worker accepts a connection is the kernel's choice: race again (at most
        # 3 x trials) until A and the logout met on different workers `trials` times.
        while apart < trials and attempts < 3 * trials:
            n = attempts = attempts + 1
            login = emulator.create_session(f"race-{n}", email=f"r{n}@example.com", jwt_ttl=-30)
            cookie = cookie_of(login.jwt, login.refresh_token.secret)
            since = len(server.output())
            before = emulator.requests["logout"]
            refreshes_before = emulator.requests["refresh"]
            emulator.set_latency(RACE_LATENCY)
            try:
                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    pending = pool.submit(request, server.port, "GET", "/api/me", cookie)
                    time.sleep(RACE_LOGOUT_AFTER)
                    logout = request(server.port, "POST", "/logout", cookie)
                    first = pending.result()
            finally:
                emulator.set_latency(0)
            worst = max(worst, first.seconds, logout.seconds)
            a_seconds.append(first.seconds)
            logout_seconds.append(logout.seconds)
            pids = worker_pids(server, [first, logout], since)
            different = pids[first.probe] != pids[logout.probe]
            apart += different
            new_secret = first.cookies.get(REFRESH_COOKIE) or None
            # Let the revocation of the orphan reach Crossmint (it may follow the answers).
            deadline = time.monotonic() + 5
            while emulator.requests["logout"] - before < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            upstream_logouts.append(emulator.requests["logout"] - before)
            refreshes.append(emulator.requests["refresh"] - refreshes_before)
            outcomes[
                f"{'different workers' if different else 'one worker'}: A {first.status}"
                f" {'with' if first.user else 'without'} a session"
            ] += 1
            note = (
                f"{'different workers' if different else 'one worker'}: A {first.status}"
                f" {'with' if first.user else 'without'} a session after {first.seconds:.1f} s"
                f" (logout {logout.status} after {logout.seconds:.1f} s)"
            )
            new_jwt = first.cookies.get(JWT_COOKIE) or None
            jwt_served = 0
            if new_jwt is not None:
                # The JWT the in-flight request brought back, on every worker.
                uses = parallel(4, server.port, "GET", "/api/me", cookie_of(new_jwt, None))
                jwt_served = sum(1 for a in uses if a.status == 200)
                served_jwt += jwt_served
                note += f", its new JWT: /api/me {sorted(a.status for a in uses)}"
            accepted_here = 0
            alive = False
            if new_secret is not None:
                # The secret the in-flight request brought back, on every worker.
                tries = parallel(
                    4, server.port, "POST", "/refresh", cookie_of(None, new_secret), b"{}"
                )
                accepted_here = sum(1 for a in tries if a.status == 200)
                accepted += accepted_here
                alive = not accepted_here and secret_alive(emulator, new_secret)
                note += f", its new secret: /refresh {sorted(a.status for a in tries)}"
                note += ", alive at Crossmint" if alive else ", dead at Crossmint"
            else:
                note += ", no new secret"
            outlived += bool(jwt_served or accepted_here or alive)
            trial_lines = [
                line
                for line in server.output()[since:].splitlines()
                if _probe_of(line) in (first.probe, first.client, logout.probe, logout.client)
            ]
            log += [f"trial {n}: {note}", *trial_lines]
        if outlived:
            log += evidence(server)
    detail = (
        f"{attempts} trials: "
        + ", ".join(f"{what} x{count}" for what, count in sorted(outcomes.items()))
        + f"; afterwards the JWT A got was served {served_jwt} times and `POST /refresh` with"
        f" the secret A got answered 200 {accepted} times (4 connections per trial); Crossmint"
        f" logout calls per trial {span(upstream_logouts)}; request A answered in"
        f" {span_seconds(a_seconds)}, the logout in {span_seconds(logout_seconds)}"
    )
    return Row(
        "logout 0.5 s into a refresh (Crossmint answering in 2 s)",
        deployment.label,
        host_store,
        span(refreshes),
        f"{outlived} of {attempts} sessions outlived their logout",
        worst,
        detail,
        {"sessions that outlived their logout": outlived},
        log,
    )


def stale_logouts(
    emulator: CrossmintEmulator, deployment: Deployment, host_store: bool, trials: int
) -> Row:
    """A logout with the cookies from before the session's last refresh: a tab that missed
    the rotation, or a logout that reached the server after the refresh it raced had ended."""
    emulator.reset()
    served = accepted = 0
    refreshes: list[int] = []
    upstream_logouts: list[int] = []
    worst = 0.0
    log: list[str] = []
    with running(deployment, emulator, host_store) as server:
        reach_every_worker(server, deployment, cookie_of(emulator.issue_jwt("warm"), None))
        for n in range(trials):
            login = emulator.create_session(f"stale-{n}", email=f"s{n}@example.com", jwt_ttl=-30)
            old = cookie_of(login.jwt, login.refresh_token.secret)
            refreshes_before = emulator.requests["refresh"]
            refreshed = request(server.port, "GET", "/api/me", old)
            refreshes.append(emulator.requests["refresh"] - refreshes_before)
            assert refreshed.status == 200, refreshed
            assert REFRESH_COOKIE in refreshed.cookies, refreshed
            new_jwt, new_secret = refreshed.cookies[JWT_COOKIE], refreshed.cookies[REFRESH_COOKIE]
            before = emulator.requests["logout"]
            logout = request(server.port, "POST", "/logout", old)
            assert logout.status == 200, (logout.status, logout.body)
            time.sleep(1.0)  # well past the host store's propagation (0.2 s)
            upstream_logouts.append(emulator.requests["logout"] - before)
            uses = parallel(8, server.port, "GET", "/api/me", cookie_of(new_jwt, None))
            tries = parallel(4, server.port, "POST", "/refresh", cookie_of(None, new_secret), b"{}")
            served += sum(1 for a in uses if a.status == 200)
            accepted += sum(1 for a in tries if a.status == 200)
            worst = max([worst, logout.seconds, *(a.seconds for a in uses + tries)])
            log.append(
                f"trial {n + 1}: logout {logout.status}, Crossmint logout calls"
                f" {upstream_logouts[-1]}; 1 s later the new JWT: /api/me"
                f" {sorted(a.status for a in uses)}, the new secret: /refresh"
                f" {sorted(a.status for a in tries)}"
            )
        log += evidence(server)
    return Row(
        "logout with the cookies from before the last refresh, then the new pair 1 s later",
        deployment.label,
        host_store,
        span(refreshes),
        f"{served} of {8 * trials} requests served with the new JWT",
        worst,
        f"{trials} sessions; `POST /refresh` with the new secret answered 200 {accepted} of"
        f" {4 * trials} times; Crossmint logout calls per logout {span(upstream_logouts)}",
        {
            "requests served with the new JWT after the logout": served,
            "refreshes with the new secret after the logout": accepted,
        },
        log,
    )


# -- rows 7, 8 and 9: Redis killed, the host store beneath it ---------------------------------


def logged_out(answer: Answer) -> bool:
    """An answer that logs its user out: 401, or cookies cleared."""
    return answer.status == 401 or answer.cleared


def kept_503(answer: Answer) -> bool:
    """503 with the cookies kept: the browser tries again, nobody is logged out."""
    return answer.status == 503 and not answer.cleared


def warm_redis(server: Server, deployment: Deployment, emulator: CrossmintEmulator) -> None:
    """Every worker refreshes a session of its own through Redis, 8 at a time: Redis has
    answered each of them (a failure from then on is taken for a failover, as in production)
    and each listens for logouts through it."""
    since = len(server.output())
    answers: list[Answer] = []
    for _ in range(30):
        logins = [
            emulator.create_session(f"warm-{next(_probes)}", email="w@example.com", jwt_ttl=-30)
            for _ in range(8)
        ]
        with concurrent.futures.ThreadPoolExecutor(len(logins)) as pool:
            answers += pool.map(
                lambda login: request(
                    server.port,
                    "GET",
                    "/api/me",
                    cookie_of(login.jwt, login.refresh_token.secret),
                ),
                logins,
            )
        assert all(a.status == 200 for a in answers), [a.status for a in answers]
        if len(set(worker_pids(server, answers, since).values()) - {0}) >= deployment.workers:
            return
    raise SystemExit(f"no refresh through Redis reached all {deployment.workers} workers")


def redis_down_bursts(
    emulator: CrossmintEmulator,
    deployment: Deployment,
    host_store: bool,
    sessions: int,
    size: int,
) -> Row:
    """Row 7: Redis killed, then a page's parallel requests for each of ``sessions`` sessions
    whose JWT just expired, on one host (its workers share the host store beneath Redis)."""
    emulator.reset()
    refreshes: list[int] = []
    lost_requests = lost_users = unavailable = slow = 0
    statuses: collections.Counter[int] = collections.Counter()
    waits: list[float] = []
    spread: list[int] = []
    new_sessions: list[int] = []
    with redis_server() as redis, running(deployment, emulator, host_store, redis.url) as server:
        warm_redis(server, deployment, emulator)
        since_all = len(server.output())
        redis.kill()
        killed = time.monotonic()
        try:
            for n in range(sessions):
                user = f"redis-burst-{n}"
                login = emulator.create_session(user, email=f"rb{n}@example.com", jwt_ttl=-30)
                cookie = cookie_of(login.jwt, login.refresh_token.secret)
                since = len(server.output())
                before = emulator.requests["refresh"]
                emulator.set_latency(BURST_LATENCY)
                try:
                    answers = parallel(size, server.port, "GET", "/api/me", cookie, at_once=True)
                finally:
                    emulator.set_latency(0)
                refreshes.append(emulator.requests["refresh"] - before)
                out = [a for a in answers if logged_out(a)]
                statuses.update(a.status for a in answers)
                lost_requests += len(out)
                lost_users += bool(out)
                unavailable += sum(1 for a in answers if kept_503(a))
                waits.append(max(a.seconds for a in answers))
                slow += sum(1 for a in answers if a.seconds > MAX_WAIT)
                spread.append(len(set(worker_pids(server, answers, since).values()) - {0}))
                new_jwts = {a.cookies[JWT_COOKIE] for a in answers if a.cookies.get(JWT_COOKIE)}
                new_sessions.append(len(new_jwts))
        finally:
            down = time.monotonic() - killed
            redis.start()
        log = evidence(server, since_all) if lost_users or max(waits) > MAX_WAIT else []
    detail = (
        f"Redis killed after every worker had refreshed through it, down {down:.0f} s for the"
        f" bursts; {lost_requests} of {sessions * size} requests logged out (statuses"
        f" {dict(sorted(statuses.items()))}; {unavailable} x 503 with cookies kept);"
        f" refreshes per session, in order: {', '.join(map(str, refreshes))}; slowest"
        f" answer per session, in order: {', '.join(f'{w:.1f}' for w in waits)} s"
        f" ({slow} requests over {MAX_WAIT:g} s); bursts"
        f" spread over {span(spread)} of {deployment.workers} workers; distinct new JWTs per"
        f" session {span(new_sessions)}"
    )
    return Row(
        f"Redis killed: a page's {size} parallel requests after the JWT expired,"
        f" {sessions} sessions",
        f"{deployment.label} + Redis",
        host_store,
        f"{statistics.mean(refreshes):.1f} (max {max(refreshes)})",
        f"{lost_users} of {sessions} users",
        max(waits),
        detail,
        {"users logged out": lost_users, "requests logged out": lost_requests},
        log,
    )


def two_hosts_bursts(
    emulator: CrossmintEmulator, host_store: bool, sessions: int, size: int
) -> Row:
    """Row 8: two hosts (gunicorn ``-w 2`` each, a host store each), one Redis, killed; each
    session's parallel requests spread over both hosts; after Redis is back, the session's
    next request with the newest cookies, on both hosts."""
    emulator.reset()
    deployment = gunicorn(2)
    refreshes: list[int] = []
    lost_requests = lost_users = unavailable = 0
    statuses: collections.Counter[int] = collections.Counter()
    outcomes: collections.Counter[str] = collections.Counter()
    waits: list[str] = []  # per session, the slowest answer of each host
    slowest = 0.0
    slow: list[Answer] = []
    newest: list[tuple[str, str, bool]] = []  # (user, cookie, whether any answer set new ones)
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server())
        hosts = [
            stack.enter_context(running(deployment, emulator, host_store, redis.url))
            for _ in range(2)
        ]
        ports = [host.port for host in hosts]
        for host in hosts:
            warm_redis(host, deployment, emulator)
        since_all = [len(host.output()) for host in hosts]
        redis.kill()
        killed = time.monotonic()
        try:
            for n in range(sessions):
                user = f"two-hosts-{n}"
                login = emulator.create_session(user, email=f"th{n}@example.com", jwt_ttl=-30)
                cookie = cookie_of(login.jwt, login.refresh_token.secret)
                before = emulator.requests["refresh"]
                emulator.set_latency(TWO_HOSTS_LATENCY)
                try:
                    answers = parallel(size, ports, "GET", "/api/me", cookie, at_once=True)
                finally:
                    emulator.set_latency(0)
                refreshes.append(emulator.requests["refresh"] - before)
                out = [a for a in answers if logged_out(a)]
                statuses.update(a.status for a in answers)
                lost_requests += len(out)
                lost_users += bool(out)
                unavailable += sum(1 for a in answers if kept_503(a))
                slowest = max([slowest, *(a.seconds for a in answers)])
                waits.append(
                    "/".join(f"{max(a.seconds for a in answers[h::2]):.1f}" for h in (0, 1))
                )
                slow += [a for a in answers if a.seconds > MAX_WAIT]
                # What each host answered (request i went to host i % 2).
                outcomes[
                    "; ".join(
                        f"host {h + 1}: "
                        + ", ".join(
                            f"{status} x{count}"
                            for status, count in sorted(
                                collections.Counter(a.status for a in answers[h::2]).items()
                            )
                        )
                        for h in range(2)
                    )
                ] += 1
                setting = [
                    a
                    for a in answers
                    if a.cookies.get(JWT_COOKIE) and a.cookies.get(REFRESH_COOKIE)
                ]
                if setting:
                    last = max(setting, key=lambda a: a.sent + a.seconds)
                    fresh = cookie_of(last.cookies[JWT_COOKIE], last.cookies[REFRESH_COOKIE])
                    newest.append((user, fresh, True))
                else:
                    newest.append((user, cookie, False))
        finally:
            down = time.monotonic() - killed
            redis.start()
        # Redis is back: each session's next request, with the newest cookies, on both hosts.
        next_failed = 0
        next_statuses: collections.Counter[int] = collections.Counter()
        for user, cookie, _ in newest:
            nexts = [request(port, "GET", "/api/me", cookie) for port in ports]
            next_statuses.update(a.status for a in nexts)
            next_failed += any(a.status != 200 or a.user != user for a in nexts)
        log: list[str] = []
        if lost_users or next_failed or slow:
            slow_probes = {a.probe for a in slow}
            for h, host in enumerate(hosts):
                log += [f"host {h + 1}:", *evidence(host, since_all[h])]
                log += [
                    f"  over {MAX_WAIT:g} s: {line}"
                    for line in host.output()[since_all[h] :].splitlines()
                    if _probe_of(line) in slow_probes
                ][:20]
    without_new = sum(1 for *_, fresh in newest if not fresh)
    detail = (
        f"Redis killed after every worker had refreshed through it, down {down:.0f} s; Crossmint"
        f" answering in {TWO_HOSTS_LATENCY:g} s; request i of a session to host i % 2;"
        f" {lost_requests} of {sessions * size} requests logged out (statuses"
        f" {dict(sorted(statuses.items()))}); **{unavailable} x 503 with cookies kept**;"
        " per session: "
        + " | ".join(f"{what} ({count} sessions)" for what, count in sorted(outcomes.items()))
        + f"; refreshes per session, in order: {', '.join(map(str, refreshes))}; slowest"
        f" answer per session and host (1/2), in order: {', '.join(waits)} s ({len(slow)}"
        f" requests over {MAX_WAIT:g} s);"
        f" Redis back, the next request with the newest cookies on both hosts: {next_failed} of"
        f" {sessions} sessions failed (statuses {dict(sorted(next_statuses.items()))};"
        f" {without_new} sessions got no new cookies and sent their old ones)"
    )
    return Row(
        f"Redis killed: a page's {size} parallel requests after the JWT expired, half to each"
        f" host, {sessions} sessions; then the next request once Redis is back",
        f"2 hosts: {deployment.label} each + Redis",
        host_store,
        f"{statistics.mean(refreshes):.1f} (max {max(refreshes)})",
        f"{lost_users} of {sessions} users; next request after Redis is back failed for"
        f" {next_failed}",
        slowest,
        detail,
        {
            "users logged out": lost_users,
            "requests logged out": lost_requests,
            "sessions whose next request failed once Redis was back": next_failed,
        },
        log,
    )


def redis_down_logouts(
    emulator: CrossmintEmulator, host_store: bool, count: int, threads: int, down: float
) -> Row:
    """Row 9: two hosts, a session's JWT cached in every worker of both; Redis killed;
    ``POST /logout`` on host 1; the old JWT asked of both hosts; Redis restarted ``down`` s
    after the logout's answer; then the old JWT asked for ``REDIS_BACK_SECONDS`` more."""
    emulator.reset()
    deployment = gunicorn(2)
    here_served = here_total = 0  # host 1, after the logout's answer (Redis down)
    there_down_served = there_down_total = 0  # host 2 while Redis is down
    there_back_served = there_back_total = 0  # host 2 once Redis answers again
    late = 0  # host 2, served more than 1 s after Redis answered again
    delays: list[float] = []  # per host-2 worker: Redis back -> the last request it served
    still_serving = 0
    restarts: list[float] = []
    worst = 0.0
    log: list[str] = []
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server())
        hosts = [
            stack.enter_context(running(deployment, emulator, host_store, redis.url))
            for _ in range(2)
        ]
        one, two = hosts
        for n in range(count):
            login = emulator.create_session(f"redis-logout-{n}", email=f"rl{n}@example.com")
            jwt_only = cookie_of(login.jwt, None)
            for host in hosts:
                reach_every_worker(host, deployment, jwt_only)  # cached, listening
            since = [len(host.output()) for host in hosts]
            redis.kill()
            logout = request(
                one.port, "POST", "/logout", cookie_of(login.jwt, login.refresh_token.secret)
            )
            assert logout.status == 200, (logout.status, logout.body)
            answered = logout.sent + logout.seconds
            end = answered + down + REDIS_BACK_SECONDS
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                pending = [
                    pool.submit(clients, host.port, "/api/me", jwt_only, threads, end)
                    for host in hosts
                ]
                time.sleep(max(0.0, answered + down - time.monotonic()))
                restarting = time.monotonic()
                redis.start()
                back = time.monotonic()  # Redis answers PING
                here, there = (each.result() for each in pending)
            restarts.append(back - restarting)
            worst = max([worst, logout.seconds, *(a.seconds for a in here + there)])
            here_total += len(here)
            here_served += sum(1 for a in here if a.status == 200)
            while_down = [a for a in there if a.sent < back]
            after = [a for a in there if a.sent >= back]
            there_down_total += len(while_down)
            there_down_served += sum(1 for a in while_down if a.status == 200)
            there_back_total += len(after)
            served = [a for a in after if a.status == 200]
            there_back_served += len(served)
            late += sum(1 for a in served if a.sent - back > 1.0)
            pids = worker_pids(two, after, since[1])
            last: dict[int, float] = dict.fromkeys(set(pids.values()) - {0}, 0.0)
            for answer in served:
                pid = pids[answer.probe]
                last[pid] = max(last.get(pid, 0.0), answer.sent - back)
            delays += last.values()
            still_serving += sum(1 for d in last.values() if d > REDIS_BACK_SECONDS * 0.9)
            first_refused = min(
                (a.sent - back for a in after if a.status != 200), default=float("nan")
            )
            log.append(
                f"logout {n}: answered in {logout.seconds * 1000:.0f} ms; host 1 served"
                f" {sum(1 for a in here if a.status == 200)} of {len(here)}; host 2 while Redis"
                f" was down served {sum(1 for a in while_down if a.status == 200)} of"
                f" {len(while_down)}; Redis answered {back - restarting:.2f} s after its start;"
                f" then host 2 served {len(served)} of {len(after)}, per worker last at "
                + ", ".join(f"pid {pid} +{d * 1000:.0f} ms" for pid, d in sorted(last.items()))
                + f", first refusal at +{first_refused * 1000:.0f} ms"
            )
            if here_served or late:
                for h, host in enumerate(hosts):
                    log += [f"host {h + 1}:", *evidence(host, since[h])]
    censored = still_serving > 0
    floor = "≥ " if censored else ""
    detail = (
        f"{count} logouts on host 1 with Redis killed, Redis restarted {down:g} s after each"
        f" logout's answer (it answered PING {span_seconds(restarts)} after its start), the old"
        f" JWT asked by {threads} threads per host until {REDIS_BACK_SECONDS:g} s after that;"
        f" host 1: {here_served} of {here_total} requests served after the logout's answer;"
        f" host 2 while Redis was down: {there_down_served} of {there_down_total} served (it"
        f" cannot know yet); Redis back to host 2's last request served, per worker: p50"
        f" {floor}{percentile(delays, 0.5) * 1000:.0f} ms, max {floor}{max(delays) * 1000:.0f}"
        f" ms ({len(delays)} worker logouts; {still_serving} still serving after"
        f" {REDIS_BACK_SECONDS:g} s); host 2 after Redis was back: {there_back_served} of"
        f" {there_back_total} served, {late} of them more than 1 s after"
    )
    return Row(
        "Redis killed: logout on host 1, the old JWT on both hosts, Redis restarted"
        f" {down:g} s later",
        f"2 hosts: {deployment.label} each + Redis",
        host_store,
        "0 (none needed)",
        f"host 1: {here_served} requests served after the logout; host 2: {there_back_served}"
        f" after Redis was back ({late} more than 1 s after)",
        worst,
        detail,
        {
            "requests served by host 1 after the logout": here_served,
            "requests served by host 2 more than 1 s after Redis was back": late,
        },
        log,
    )


# -- the section -----------------------------------------------------------------------------


def markdown(rows: Sequence[Row], args: argparse.Namespace, elapsed: float) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        START,
        "## Continuity: nobody is logged out by the deployment",
        "",
        "Generated by `bench/continuity.py --write` (run it again to regenerate this section;"
        f" `bench/reliability_report.py` keeps it). Last run {stamp}, Python"
        f" {platform.python_version()}, {platform.system()} {platform.machine()},"
        f" {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at the end; the run took"
        f" {elapsed:.0f} s.",
        "",
        "Real servers run the examples (`examples/flask_app.py` under gunicorn,"
        " `examples/raw_asgi.py` under uvicorn) in front of the Crossmint emulator with"
        " single-use refresh secrets: a second trade of a secret is refused, so a double"
        " refresh shows up as a user logged out. *Host store on* is the default (each server"
        " given a fresh directory through `CROSSMINT_HOST_STORE`); *off*"
        " (`CROSSMINT_HOST_STORE=off`) is how every deployment worked before it: with no Redis,"
        " each worker alone; with Redis (rows marked *+ Redis*: a real `redis-server`, its URL"
        " in `CROSSMINT_REDIS_URL`), each worker alone while Redis is down. What each row"
        " measures:",
        "",
        f"- **parallel requests after the JWT expired**: a page's {args.burst} requests at once"
        f" (one connection each, so they spread over the workers), Crossmint answering in"
        f" {BURST_LATENCY:g} s, for {args.sessions} sessions; a user is logged out when any of"
        " their requests was.",
        "- **a worker that never fetched the key set**: one worker is warmed with a GET, Crossmint"
        " goes down (connections reset), then `POST /refresh` with a valid JWT (body `{}`) in"
        " parallel rounds until every worker answered; Crossmint's browser SDK logs its user out"
        " on any error status.",
        f"- **logout**: a session's JWT in every worker's caches, `POST /logout`, then"
        f" {args.threads} threads ask `GET /api/me` with the old JWT for {args.hammer_seconds:g}"
        " s; the propagation delay is, per worker, the time from the logout's answer to the"
        " last request it served with the session (0 when none).",
        f"- **logout during a refresh**: Crossmint answers in {RACE_LATENCY:g} s; request A"
        " (`GET /api/me`, expired JWT) starts the refresh, and"
        f" {RACE_LOGOUT_AFTER:g} s later `POST /logout` with the same cookies on another"
        " connection (every worker holds the key set first; raced again, at most"
        f" {3 * args.trials} times, until A and the logout met on different workers"
        f" {args.trials} times); then the JWT A got (if any) is sent to `GET /api/me` and the"
        " secret to `POST /refresh`, 4 connections each, and the secret, when refused there,"
        " to Crossmint itself.",
        "- **logout with the cookies from before the last refresh**: a session is refreshed"
        " (`GET /api/me` with an expired JWT), then logged out with its previous cookies (a tab"
        " that missed the rotation, or a logout that reached the server after the refresh it"
        " raced had ended); 1 s later the new JWT is sent to `GET /api/me` on 8 connections and"
        " the new secret to `POST /refresh` on 4.",
        f"- **Redis killed: parallel requests after the JWT expired**: every worker refreshes a"
        " session through Redis, Redis is killed (SIGKILL), then the bursts of the first row,"
        f" {args.redis_sessions} sessions, one after the other; Redis is started again after"
        " the last. A worker that Redis answered before takes a failure for a failover and"
        " keeps trying it for up to `wait` (10 s), within `failover_window` (20 s) of its first"
        " failure: the sessions of those first 20 s wait for it. A 503 with the cookies kept"
        " (`UPSTREAM_UNAVAILABLE`) is not a logout: the browser tries again.",
        "- **Redis killed, half to each host**: two simulated hosts, each a gunicorn with a"
        " host store of its own, one Redis and one emulator (Crossmint answering in"
        f" {TWO_HOSTS_LATENCY:g} s so that the hosts' trades overlap); Redis killed as above;"
        f" request i of each session's {args.burst} goes to host i % 2. A user is logged out"
        " when any request answered 401 or cleared the cookies; a 503 with the cookies kept is"
        " counted apart (another host may have traded the secret: the browser holds its new"
        " pair). Once Redis is back, each session sends `GET /api/me` to both hosts with the"
        " newest cookies any answer set.",
        "- **Redis killed: logout on host 1**: the two hosts, a session's JWT in every worker"
        f" of both; Redis killed; `POST /logout` on host 1; {args.threads} threads per host"
        " ask `GET /api/me` with the old JWT; Redis is started again"
        f" {args.redis_down:g} s after the logout's answer and the asking goes on for"
        f" {REDIS_BACK_SECONDS:g} s after Redis answers PING. Host 2 cannot know of the logout"
        " while Redis is down; once it is back, the delay is, per host-2 worker, the time from"
        " Redis's answer to the last request it served with the session (issue 21 asks for"
        f" every host within 1 s); {args.redis_logouts} sessions.",
        "",
        "| situation | server | host store | upstream refreshes per session |"
        " users logged out / sessions served after logout | worst request wait | details |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        flag = " **(not 0)**" if row.failed else ""
        lines.append(
            f"| {row.situation} | {row.deployment} | {'on' if row.host_store else 'off'}"
            f" | {row.refreshes} | {row.lost}{flag} | {seconds(row.worst)} | {row.detail} |"
        )
    failures = [row for row in rows if row.failed]
    lines.append("")
    if failures:
        lines.append(
            "**Not 0 with the host store:** "
            + "; ".join(
                f"{row.deployment}, {row.situation}: {', '.join(row.failed)}" for row in failures
            )
            + "."
        )
    else:
        lines.append("Every cell that counts users logged out is 0 with the host store.")
    lines.append(END)
    return "\n".join(lines)


def write_section(section: str, path: Path = DOC) -> None:
    """Replace the section between the markers in ``path`` (after the first heading's intro
    when there is none yet)."""
    text = path.read_text()
    if START in text and END in text:
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        path.write_text(head + section + tail)
        return
    # No section yet: after the document's first heading and its intro, before the first "##".
    at = text.find("\n## ")
    at = len(text) if at < 0 else at + 1
    path.write_text(text[:at] + section + "\n\n" + text[at:])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10, help="sessions per burst row")
    parser.add_argument("--burst", type=int, default=64, help="parallel requests per session")
    parser.add_argument("--posts", type=int, default=48, help="least POST /refresh in row 3")
    parser.add_argument("--logouts", type=int, default=3, help="sessions logged out in row 4")
    parser.add_argument("--hammer-seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=6, help="client threads in row 4")
    parser.add_argument("--trials", type=int, default=3, help="logout races per server")
    parser.add_argument(
        "--redis-sessions", type=int, default=6, help="sessions per burst row with Redis killed"
    )
    parser.add_argument(
        "--redis-logouts", type=int, default=2, help="logouts in row 9 (Redis killed)"
    )
    parser.add_argument(
        "--redis-down", type=float, default=1.5, help="seconds Redis stays down after a logout"
    )
    parser.add_argument(
        "--two-hosts-off",
        action="store_true",
        help="row 8 with the host store off too (about a minute more)",
    )
    parser.add_argument("--rows", default="123456789", help="which rows to run (all by default)")
    parser.add_argument("--write", action="store_true", help=f"write the section into {DOC}")
    args = parser.parse_args(argv)

    started = time.monotonic()
    rows: list[Row] = []

    def add(row: Row) -> None:
        rows.append(row)
        print(
            f"[{time.monotonic() - started:5.0f} s] {row.deployment}, host store"
            f" {'on' if row.host_store else 'off'}: {row.situation}: refreshes {row.refreshes};"
            f" {row.lost}; worst {seconds(row.worst)}; {row.detail}",
            file=sys.stderr,
            flush=True,
        )

    with CrossmintEmulator(jwt_ttl=900, reuse_window=0) as emulator:
        for host_store in (True, False) if "1" in args.rows else ():
            add(bursts(emulator, gunicorn(4, 8), host_store, args.sessions, args.burst))
        for host_store in (True, False) if "2" in args.rows else ():
            add(bursts(emulator, uvicorn(2), host_store, args.sessions, args.burst))
        for host_store in (True, False) if "3" in args.rows else ():
            add(outage(emulator, gunicorn(4), host_store, args.posts))
        for host_store in (True, False) if "4" in args.rows else ():
            add(
                logouts(
                    emulator,
                    gunicorn(4),
                    host_store,
                    args.logouts,
                    args.hammer_seconds,
                    args.threads,
                )
            )
        for deployment in (gunicorn(2), uvicorn(2)) if "5" in args.rows else ():
            for host_store in (True, False):
                add(races(emulator, deployment, host_store, args.trials))
        for host_store in (True, False) if "6" in args.rows else ():
            add(stale_logouts(emulator, gunicorn(2), host_store, args.trials))
        for host_store in (True, False) if "7" in args.rows else ():
            add(
                redis_down_bursts(
                    emulator, gunicorn(4, 8), host_store, args.redis_sessions, args.burst
                )
            )
        for host_store in (
            ((True, False) if args.two_hosts_off else (True,)) if "8" in args.rows else ()
        ):
            add(two_hosts_bursts(emulator, host_store, args.redis_sessions, args.burst))
        for host_store in (True, False) if "9" in args.rows else ():
            add(
                redis_down_logouts(
                    emulator, host_store, args.redis_logouts, args.threads, args.redis_down
                )
            )
    section = markdown(rows, args, time.monotonic() - started)
    print(section)
    for row in rows:
        if row.failed or (row.host_store and row.worst > MAX_WAIT):
            what = ", ".join(row.failed) or f"worst wait {seconds(row.worst)}"
            print(f"\n{row.deployment}, {row.situation}: {what}", file=sys.stderr)
            print("\n".join(f"    {line}" for line in row.evidence), file=sys.stderr)
    if args.write:
        write_section(section)
        print(f"\nwritten to {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 1 if any(row.failed for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
