"""Stepping the protocol's flows: what both Redis drivers share.

A driver asks an :class:`Exchange` for the next step, performs it, and
reports back; it decides nothing. See :mod:`crossmint_wsgi.redis.protocol`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from redis.exceptions import RedisError

from ..coordination import secret_digest
from ..errors import CrossmintAuthError
from .health import Health
from .protocol import Keys, Settings, Step, coordinate, revoke, revoked_any
from .record import RecordCipher

__all__ = ["Exchange"]


class Exchange:
    """One flow of the protocol, stepped by a driver that only moves bytes.

    .. code-block:: python

        with contextlib.closing(Exchange.refresh(...)) as exchange:
            while (step := exchange.next()) is not None:
                ...  # perform the step, then answer(), fail() or redis_failed()
            return exchange.result

    Every failure reaches the flow one way: thrown in, except Crossmint's
    refusal, which is a value the flow stores.
    """

    def __init__(
        self, flow: Generator[Step, Any, Any], digest: str, health: Health, fallback: Any = None
    ) -> None:
        self._flow = flow
        #: What the driver answers when Redis fails in a flow that does not absorb it.
        self.fallback = fallback
        self._digest = digest
        self._health = health
        self._reply: Any = None
        self._error: BaseException | None = None
        self.result: Any = None

    @classmethod
    def refresh(
        cls, secret: str, settings: Settings, health: Health, clock: Callable[[], float]
    ) -> Exchange:
        """A refresh of ``secret``: :attr:`result` is the material."""
        keys = Keys.of(secret, settings.prefix)
        cipher = RecordCipher.of(secret, keys.result, keys.short)
        return cls(coordinate(keys, cipher, settings, clock), keys.digest, health)

    @classmethod
    def revoke(cls, secret: str, settings: Settings, health: Health) -> Exchange:
        """A logout of ``secret``: :attr:`result` is the successor secrets found."""
        return cls(revoke(secret, settings), secret_digest(secret), health, fallback=[])

    @classmethod
    def vet(cls, secrets_: tuple[str, ...], settings: Settings, health: Health) -> Exchange:
        """Whether any of ``secrets_`` was logged out: :attr:`result` is a bool."""
        return cls(revoked_any(secrets_, settings), secret_digest(secrets_[0]), health, False)

    def next(self) -> Step | None:
        """The next step to perform, or ``None`` when :attr:`result` is ready."""
        reply, error, self._reply, self._error = self._reply, self._error, None, None
        try:
            step = self._flow.throw(error) if error is not None else self._flow.send(reply)
        except StopIteration as done:
            self.result = done.value
            return None
        return step

    def answer(self, reply: Any) -> None:
        """The result of the last step (for a Redis command, Redis answered)."""
        self._reply = reply

    def redis_answered(self, reply: Any) -> None:
        self._health.succeeded()
        self._reply = reply

    def redis_failed(self, error: RedisError) -> None:
        self._health.failed(error, self._digest)
        self._error = error

    def fail(self, error: BaseException) -> None:
        """The last step raised ``error``; Crossmint's own refusal is a value for the flow."""
        if isinstance(error, CrossmintAuthError):
            self._reply = error
        else:
            self._error = error

    def close(self) -> None:
        """Let a flow left suspended (a cancelled task, an interrupted thread) undo its part."""
        self._flow.close()
