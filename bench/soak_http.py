"""A small HTTP/1.1 client over asyncio streams, for the soak's many concurrent users."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import httpx


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
