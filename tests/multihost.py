"""Several hosts on one machine: network namespaces, each running gunicorn with the Flask example.

Namespace ``<name>s`` holds the shared services (redis-server, the Crossmint
emulator) and the client; each host ``<name>h<i>`` is joined to it by a veth
pair, ``10.231.<i>.1`` on the services' side and ``10.231.<i>.2`` on the host's.
Every address lives inside the namespaces made here, and everything is removed
at the end. Needs root and ``ip`` (iproute2).

Run as a script (inside the services' namespace) it is the client: it makes
expired sessions at the emulator, releases one request per session to every
host's workers at once, and prints what came back as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
EMULATOR_PORT = 8090
REDIS_PORT = 6379
APP_PORT = 8000


def _ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True, timeout=30)


@dataclass
class Hosts:
    """The namespaces made, and the URLs the client uses from the services' namespace."""

    services: str
    hosts: list[str]
    processes: list[subprocess.Popen[bytes]]
    logs: Path

    @property
    def app_urls(self) -> list[str]:
        return [f"http://10.231.{i}.2:{APP_PORT}" for i in range(1, len(self.hosts) + 1)]

    def run_in(self, namespace: str, command: Sequence[str], log: str, **env: str) -> None:
        """Start ``command`` in ``namespace``, logging to ``logs/<log>``."""
        with open(self.logs / log, "wb") as output:
            self.processes.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", namespace, *command],
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **env},
                    cwd=ROOT,
                    start_new_session=True,
                )
            )

    def client(self, *arguments: str, timeout: float = 120) -> dict[str, object]:
        """Run this module's client in the services' namespace; its JSON answer."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.services, PYTHON, __file__, *arguments],
            capture_output=True,
            timeout=timeout,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
        answer: dict[str, object] = json.loads(done.stdout)
        return answer

    def output(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
            for log in sorted(self.logs.iterdir())
            if log.is_file()
        )


@contextlib.contextmanager
def hosts(logs: Path, count: int = 2, workers: int = 3, redis: bool = True) -> Iterator[Hosts]:
    """``count`` hosts of ``workers`` gunicorn workers each, sharing Redis when ``redis``."""
    name = f"cmw{os.getpid() % 100000}"
    made = Hosts(f"{name}s", [f"{name}h{i}" for i in range(1, count + 1)], [], logs)
    namespaces: list[str] = []
    try:
        for namespace in [made.services, *made.hosts]:
            _ip("netns", "add", namespace)
            namespaces.append(namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
        for i, host in enumerate(made.hosts, start=1):
            outside, inside = f"{name}s{i}", f"{name}h{i}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", outside, "netns", made.services)
            _ip("link", "set", inside, "netns", host)
            _ip("-n", made.services, "addr", "add", f"10.231.{i}.1/24", "dev", outside)
            _ip("-n", host, "addr", "add", f"10.231.{i}.2/24", "dev", inside)
            _ip("-n", made.services, "link", "set", outside, "up")
            _ip("-n", host, "link", "set", inside, "up")
        made.run_in(
            made.services,
            [
                "redis-server", "--port", str(REDIS_PORT), "--bind", "0.0.0.0",
                "--protected-mode", "no", "--save", "", "--appendonly", "no",
            ],
            "redis.log",
        )  # fmt: skip
        made.run_in(
            made.services,
            [PYTHON, "-m", "crossmint_wsgi.testing", "--host", "0.0.0.0",
             "--port", str(EMULATOR_PORT), "--reuse-window", "0"],
            "emulator.log",
        )  # fmt: skip
        made.client("--wait", f"http://127.0.0.1:{EMULATOR_PORT}/_emulator/config")
        for i, host in enumerate(made.hosts, start=1):
            # Each simulated host has its own host store, as separate machines would.
            store = made.logs / f"host-store-{i}"
            environment = {
                "CROSSMINT_EMULATOR_URL": f"http://10.231.{i}.1:{EMULATOR_PORT}",
                "CROSSMINT_HOST_STORE": str(store),
            }
            if redis:
                environment["CROSSMINT_REDIS_URL"] = f"redis://10.231.{i}.1:{REDIS_PORT}/0"
            made.run_in(
                host,
                [PYTHON, "-m", "gunicorn", "--chdir", "examples", "--workers", str(workers),
                 "--threads", "8", "--bind", f"10.231.{i}.2:{APP_PORT}", "flask_app:app"],
                f"gunicorn-{i}.log",
                **environment,
            )  # fmt: skip
        for url in made.app_urls:
            made.client("--wait", f"{url}/login")
        yield made
    finally:
        for process in made.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            process.wait(timeout=30)
        for namespace in namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)


# -- the client, run inside the services' namespace ----------------------------------------


def _wait(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"nothing answered at {url} in {timeout}s")
        time.sleep(0.05)


def _burst(emulator: str, apps: list[str], users: int, per_host: int, latency: float) -> None:
    with httpx.Client(timeout=30) as control:
        sessions = [
            control.post(
                f"{emulator}/_emulator/sessions", json={"user_id": f"user-{i}", "jwt_ttl": -30}
            ).json()
            for i in range(users)
        ]
        control.post(f"{emulator}/_emulator/latency", json={"seconds": latency})
        before = control.get(f"{emulator}/_emulator/requests").json()["refresh"]
    # Every session reaches every host per_host times, all released together.
    plan = [(u, app) for u in range(users) for app in apps for _ in range(per_host)]
    barrier = threading.Barrier(len(plan))
    answers: list[object] = [None] * len(plan)
    times = [0.0] * len(plan)

    def request(index: int) -> None:
        user, app = plan[index]
        session = sessions[user]
        secret = session["refresh"]["secret"]
        cookie = f"crossmint-jwt={session['jwt']}; crossmint-refresh-token={secret}"
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            start = time.perf_counter()
            response = client.get(f"{app}/api/me", headers={"Cookie": cookie})
            times[index] = time.perf_counter() - start
            ok = response.status_code == 200 and response.json().get("user_id") == f"user-{user}"
            answers[index] = "ok" if ok else f"{response.status_code}"

    threads = [threading.Thread(target=request, args=(i,)) for i in range(len(plan))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with httpx.Client(timeout=30) as control:
        after = control.get(f"{emulator}/_emulator/requests").json()["refresh"]
        control.post(f"{emulator}/_emulator/latency", json={"seconds": 0})
    print(json.dumps({"refreshes": after - before, "answers": answers, "times": times}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the multi-host client")
    parser.add_argument("--wait", help="wait until this URL answers, then exit")
    parser.add_argument("--emulator", default=f"http://127.0.0.1:{EMULATOR_PORT}")
    parser.add_argument("--apps", default="", help="comma-separated app URLs")
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--per-host", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args(argv)
    if args.wait:
        _wait(args.wait)
        print("{}")
        return
    _burst(args.emulator, args.apps.split(","), args.users, args.per_host, args.latency)


if __name__ == "__main__":
    main()
