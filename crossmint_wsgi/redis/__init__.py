"""Refresh coordination across processes and hosts, through Redis.

Several workers (gunicorn processes, hosts behind a load balancer) receive the
same expired session at the same moment. With rotating refresh tokens only one
of them may trade the secret at Crossmint; the others must get what it got.
:class:`RedisCoordinator` (threads) and :class:`AsyncRedisCoordinator`
(asyncio or trio tasks) make that happen. Both run the same steps for a
refresh of secret ``S``:

1. In-process first: the grace cache and single-flight of a
   :class:`~crossmint_wsgi.LocalCoordinator`, so the threads or tasks of one
   process make one trip to Redis between them.
2. In one atomic step (a Lua script), read the record for ``S`` or, when there
   is none, try to win a short lock (``SET lock NX PX``). A record stored by
   another process within the grace window is used as it is.
3. The winner calls Crossmint, stores the outcome and releases the lock. The
   others poll for the record (taking the lock over if it expires without
   one) for at most ``wait`` seconds, then refresh on their own.

What Redis holds:

- Key names carry ``sha256(S)`` (the digest the in-process cache and the log
  lines use), never ``S``: ``{prefix}{<digest>}`` for the record and
  ``{prefix}{<digest>}:lock`` for the lock.
- Values are sealed with AES-256-GCM under a key derived from ``S`` by
  HKDF-SHA256 (a different function of ``S`` from the key name), with a fresh
  random 96-bit nonce per value and the key name as associated data. Only a
  holder of ``S`` can read the new tokens, and nobody without ``S`` can forge a
  record that a holder would accept: a record that does not open is treated
  as absent (and overwritten by the next result).
- A result expires with the grace window. The lock is released when the
  outcome is stored, and expires after ``lock_ttl`` if its winner dies.

When Crossmint refuses ``S`` (``SESSION_EXPIRED``) the refusal is final, so it
is stored, sealed like a result, for ``rejected_ttl`` seconds: every request in
the burst gets the same answer without asking Crossmint again. When Crossmint
is unavailable the failure is stored for the shorter ``unavailable_ttl``, long
enough for the waiters of this round to share it (as threads share an error
in-process) and short enough that the next request retries. A failure never
replaces a result: it is written only where no record exists, while a result
overwrites whatever is there.

When Redis does not answer (refused, timed out, any Redis error), what happens
depends on whether it answered this process before. A Redis that answered and
then fails is most likely failing over (a Cluster or Sentinel promoting a
replica): for ``failover_window`` seconds from the first failure, refreshes,
those already under way and those that start meanwhile, keep trying it for
at most ``wait`` each, so that nobody refreshes beside a process that reaches
the new primary. A Redis that has failed for longer, or never answered, is
taken to be gone: before this process has called Crossmint, the refresh goes
on in-process, exactly as without Redis; after the call, a failed store is
ignored. The failure is logged at most once per ``log_interval`` (with a
short digest of the secret, never a secret) and a Redis taken to be gone is
left alone for ``retry_interval`` seconds so requests do not each wait for its
timeouts. A request never fails because of Redis, and waits for it at most
``wait`` (and one command's timeouts).

The package, one module per concern:

- :mod:`~crossmint_wsgi.redis.protocol`: the Redis key names, the Lua
  scripts and the sans-IO flow of one coordinated refresh (the only module
  that knows what is stored where);
- :mod:`~crossmint_wsgi.redis.record`: sealing and opening a record;
- :mod:`~crossmint_wsgi.redis.health`: when Redis is skipped and what is logged;
- :mod:`~crossmint_wsgi.redis.base`: the settings both coordinators share;
- :mod:`~crossmint_wsgi.redis.sync` and :mod:`~crossmint_wsgi.redis.aio`:
  the two drivers, which only send the protocol's steps.
"""

from __future__ import annotations

from .aio import AsyncRedisCoordinator
from .sync import RedisCoordinator

__all__ = ["AsyncRedisCoordinator", "RedisCoordinator"]
