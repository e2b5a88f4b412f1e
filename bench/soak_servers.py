"""The soak's processes: the emulator and redis-server, each server under load, its figures."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from soak_app import STATS_PATH, rss_kb
from soak_checks import User
from soak_load import Load, anonymous_throughput

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
EXAMPLES = ROOT / "examples"
PYTHON = sys.executable

#: Injected refresh failures (503): the only errors a run should see.
INJECTED = 5


def tests_helpers() -> tuple[Any, Any]:
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
            found[pid] = rss_kb(pid)
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
    support, _ = tests_helpers()
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
            "soak_app:flask_app_with_stats()",
        ]
        workers = 4
    else:
        app = ["--factory", "soak_app:raw_asgi_with_stats"]
        where = ["--host", "127.0.0.1", "--port", str(port)]
        quiet = ["--no-access-log", "--log-level", "warning"]
        command = [PYTHON, "-m", "uvicorn", *app, *where, *quiet]
        workers = 1
    with support.run_server(command, port=port, env=env, ready_path="/", timeout=60) as server:
        url = server.url
        # Every worker up (each answers its stats) before the clock starts.
        _worker_stats(url, workers)
        baseline_seconds = min(5.0, max(2.0, seconds / 10))
        # As many connections as there will be users: the same concurrency, no sessions.
        baseline = asyncio.run(anonymous_throughput(url, baseline_seconds, users))
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
    support, redis_server = tests_helpers()
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
