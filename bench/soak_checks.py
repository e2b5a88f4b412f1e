"""What the soak checks on every answer: the status, the user it was for, no cross-talk."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections import Counter
from typing import Any

from soak_http import Answer


def jwt_sub(token: str) -> str | None:
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


def take_cookies(tally: Tally, user: User, answer: Answer) -> None:
    """Keep the answer's cookies for the user; every new JWT must be the user's own."""
    for line in answer.header_list("set-cookie"):
        name, _, rest = line.partition("=")
        value = rest.split(";", 1)[0]
        if name == "crossmint-jwt":
            if value:
                tally.cookies_checked += 1
                if jwt_sub(value) != user.id:
                    tally.cross_talk += 1
                user.jwt = value
            else:
                user.jwt = None
        elif name == "crossmint-refresh-token":
            user.refresh = value or None


def judge(
    tally: Tally, user: User, answer: Answer, seconds: float, *, injected: bool, context: str
) -> None:
    """Count one answer: OK, an injected outage seen (``injected``: one was due), or an error."""
    tally.requests += 1
    tally.latencies.append(seconds)
    take_cookies(tally, user, answer)
    data = answer.json()
    if answer.status == 200:
        mine = not isinstance(data, dict) or data.get("user_id", user.id) == user.id
        if answer.path == "/api/me" and not mine:
            tally.cross_talk += 1
        tally.ok += 1
        return
    code = data.get("error", "") if isinstance(data, dict) else ""
    unavailable = answer.status == 503 and code == "UPSTREAM_UNAVAILABLE"
    if unavailable and injected:
        tally.injected += 1
        return
    tally.error(f"{answer.status} {code}".strip(), context)
