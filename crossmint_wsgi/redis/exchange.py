"""Stepping the protocol's flows: what both Redis drivers share.

A driver asks an :class:`Exchange` for the next step, performs it, and
reports back; it decides nothing. See :mod:`crossmint_wsgi.redis.protocol`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator
from typing import Any

from redis.exceptions import RedisError

from ..coordination import secret_digest
from ..errors import CrossmintAuthError
from .flows import announce, coordinate, revoke, revoked_any
from .health import Health
from .protocol import Keys, Perform, Settings, Sleep, Step
from .record import RecordCipher

__all__ = ["NOT_TOLD", "Exchange"]

#: The result of an announcement that Redis did not take.
NOT_TOLD = object()


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
        self,
        flow: Generator[Step, Any, Any],
        digest: str,
        health: Health,
        fallback: Any = None,
        operation: str = "refresh of secret",
    ) -> None:
        self._flow = flow
        #: What the flow does, as log lines name it ("logout of JWT").
        self.operation = operation
        #: What the driver answers when Redis fails in a flow that does not absorb it.
        self.fallback = fallback
        self._digest = digest
        self._health = health
        self._reply: Any = None
        self._error: BaseException | None = None
        self._step: Step | None = None
        self.result: Any = None

    @classmethod
    def refresh(
        cls, secret: str, settings: Settings, health: Health, clock: Callable[[], float]
    ) -> Exchange:
        """A refresh of ``secret``: :attr:`result` is the material.

        Redis failures are ridden out (a failover) while ``health`` takes them
        for one; once Redis is taken to be gone, only by a flow it answered.
        """
        keys = Keys.of(secret, settings.prefix)
        cipher = RecordCipher.of(secret, keys.result, keys.short)
        flow = coordinate(keys, cipher, settings, clock, health.ride_out_until)
        return cls(flow, keys.digest, health)

    @classmethod
    def revoke(cls, secret: str, settings: Settings, health: Health) -> Exchange:
        """A logout of ``secret``: :attr:`result` is the successor secrets found."""
        return cls(revoke(secret, settings), secret_digest(secret), health, [], "logout of secret")

    @classmethod
    def announce(
        cls, digest: str, exp: float, settings: Settings, health: Health, now: float
    ) -> Exchange:
        """A logout of a JWT, told to every process: :attr:`result` is
        :data:`NOT_TOLD` when Redis failed."""
        flow = announce(digest, exp, settings, now)
        return cls(flow, digest, health, NOT_TOLD, "logout of JWT")

    @classmethod
    def vet(cls, secrets_: tuple[str, ...], settings: Settings, health: Health) -> Exchange:
        """Whether any of ``secrets_`` was logged out: :attr:`result` is a bool."""
        digest = secret_digest(secrets_[0])
        return cls(revoked_any(secrets_, settings), digest, health, False, "logout check of secret")

    def __iter__(self) -> Iterator[Step]:
        """The steps to perform, in order; report each one's outcome within
        :meth:`outcome`. Ends with :attr:`result` ready (the fallback when a
        Redis failure ended a flow that does not absorb it)."""
        try:
            while True:
                reply, error, self._reply, self._error = self._reply, self._error, None, None
                try:
                    step = self._flow.throw(error) if error is not None else self._flow.send(reply)
                except StopIteration as done:
                    self.result = done.value
                    return
                self._step = step
                yield step
        except RedisError:
            self.result = self.fallback

    @contextlib.contextmanager
    def outcome(self) -> Iterator[None]:
        """Around performing the current step: whatever it raises goes to the flow."""
        try:
            yield
        except BaseException as error:
            self._fail(error)

    def answer(self, reply: Any) -> None:
        """The result of the current step."""
        if not isinstance(self._step, (Perform, Sleep)):
            self._health.succeeded()
        self._reply = reply

    def _fail(self, error: BaseException) -> None:
        if isinstance(error, CrossmintAuthError) and isinstance(self._step, Perform):
            # Crossmint's own refusal is a value the flow stores.
            self._reply = error
            return
        if isinstance(error, RedisError):
            self._health.failed(error, self._digest, self.operation)
        self._error = error

    def close(self) -> None:
        """Let a flow left suspended (a cancelled task, an interrupted thread) undo its part."""
        self._flow.close()
