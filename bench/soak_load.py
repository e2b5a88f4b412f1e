"""The soak's load: browsers with sessions of their own against one server, and a baseline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from typing import Any

from soak_checks import Tally, User, judge
from soak_http import Answer, Connections, TransportError


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

    def _judge(self, user: User, answer: Answer, seconds: float) -> None:
        sent = answer.sent_cookie
        context = (
            f"{user.id} {answer.method} {answer.path}"
            f" sent jwt={'crossmint-jwt=' in sent} refresh={'crossmint-refresh-token=' in sent}"
            f" at {time.monotonic() - self.started:.1f} s"
        )
        injected = self._in_injection_window()
        judge(self.tally, user, answer, seconds, injected=injected, context=context)

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


async def anonymous_throughput(url: str, seconds: float, concurrency: int) -> float:
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
