"""The host store: what the worker processes of one app on one host share, in one SQLite file.

Several worker processes (gunicorn ``-w 4``, uvicorn ``--workers 2``) serve
one site. Refresh secrets are single use, so two workers trading one secret
log its user out; a worker started during a Crossmint outage has no key set;
a logout in one worker must reach the others. This file is where they meet,
with no server to run:

- **refreshes**: a lock per secret (who is trading it now) and, for the grace
  window, what the trade came to, sealed so only a holder of the secret opens
  it (:mod:`~crossmint_wsgi.sealing`), plus the link from each new secret to
  the one it replaced, so a logout finds the whole chain;
- **the key set** last fetched from Crossmint, with when;
- **revocations**: logged-out JWTs and secrets (by digest), each with its
  expiry, numbered so each process reads only what is new.

SQLite in WAL mode: readers never wait for the writer, each write is one short
transaction. Every row expires; expired rows are dropped as writes go, and the
file cannot grow past ``max_bytes`` (a write beyond it fails like any other
store failure: the caller goes on in-process).

Location (:func:`default_path`): ``$XDG_RUNTIME_DIR/crossmint-wsgi/``, else the
temporary directory's ``crossmint-wsgi-<uid>/``, one file per Crossmint
project, API key and base URL (by digest), so separate hosts or containers
never share one and a test can give each simulated host its own directory.
The directory is created ``0700`` and the file ``0600``; either one owned by
another user, open to others, or reached through a symbolic link is refused
with :class:`~crossmint_wsgi.CrossmintConfigError`.

No method raises on a store failure (locked past its timeout, disk full, file
removed): it raises :class:`StoreUnavailable`, and the callers go on as if
there were no store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CrossmintConfigError

if TYPE_CHECKING:
    from .config import Crossmint

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "SECRET",
    "TOKEN",
    "Claim",
    "HostStore",
    "Revocation",
    "StoreBusy",
    "StoreUnavailable",
    "default_directory",
    "default_path",
    "open_host_store",
]

logger = logging.getLogger("crossmint_wsgi")

#: Bumped when the tables change: a new file, never a migration.
_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keyset (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    jwks TEXT NOT NULL,
    fetched_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS refreshes (
    digest TEXT PRIMARY KEY,
    owner TEXT,
    lock_until REAL NOT NULL DEFAULT 0,
    record BLOB,
    expires REAL NOT NULL,
    settled REAL NOT NULL DEFAULT 0,
    lasting INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS links (
    next TEXT PRIMARY KEY,
    previous TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    digest TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS revoked_by_digest ON revoked (digest);
"""

#: The kinds of revocation: a JWT, by token_digest; a refresh secret, by secret_digest.
TOKEN = "t"  # noqa: S105 - a kind, not a secret
SECRET = "s"  # noqa: S105 - a kind, not a secret


#: Connections inherited from a parent process: kept, never closed (see _transaction).
_inherited: list[sqlite3.Connection] = []


#: Every store of this process: a forked child starts each one afresh.
_stores: weakref.WeakSet[HostStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A thread of the parent (its logout listener) may have held a store's lock
    # at the fork: the child's copy would stay locked for good.
    for store in list(_stores):
        store._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_if_mine(connection: sqlite3.Connection, pid: int) -> None:
    if pid == os.getpid():
        connection.close()


class StoreUnavailable(Exception):
    """The host store failed this once (locked too long, disk full, removed)."""


class StoreBusy(StoreUnavailable):
    """Another process held the store's write lock for longer than this call would wait."""


#: Per thread: how long a call waits for another process's write, when not the store's own.
_patience = threading.local()


@dataclasses.dataclass(frozen=True)
class Claim:
    """What :meth:`HostStore.claim` found for a secret.

    Exactly one holds: ``revoked`` (its session was logged out), ``record``
    (what a trade of it came to, sealed), ``won`` (the caller holds the lock
    now and trades it), or none (another process is trading it: wait).
    """

    revoked: bool = False
    record: bytes | None = None
    won: bool = False


@dataclasses.dataclass(frozen=True)
class Revocation:
    """One logout's entry: ``kind`` is :data:`TOKEN` or :data:`SECRET`."""

    seq: int
    kind: str
    digest: str
    expires: float


def default_directory() -> Path:
    """Where host stores live: ``$XDG_RUNTIME_DIR/crossmint-wsgi``, else the
    temporary directory's ``crossmint-wsgi-<uid>``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return Path(runtime) / "crossmint-wsgi"
    return Path(tempfile.gettempdir()) / f"crossmint-wsgi-{os.geteuid()}"


def default_path(
    project_id: str, api_key: str, base_url: str, directory: Path | None = None, scope: str = ""
) -> Path:
    """The file of one Crossmint project, API key, base URL and ``scope`` (an
    app's refresh route: its secrets are traded there, not at Crossmint), by
    digest, never the key."""
    seed = f"{project_id}\x00{api_key}\x00{base_url}\x00{scope}"
    name = hashlib.sha256(seed.encode()).hexdigest()[:32]
    return (directory or default_directory()) / f"{name}-v{_VERSION}.sqlite3"


def _refuse(path: Path, why: str) -> CrossmintConfigError:
    return CrossmintConfigError(
        f"the host store {path} {why}; remove it, or pass host_store= another"
        " directory (or False to share nothing between worker processes)",
        setting="host_store",
    )


def _owned_and_private(path: Path, info: os.stat_result, kind: str) -> None:
    if info.st_uid != os.geteuid():
        raise _refuse(path, f"is a {kind} owned by another user (uid {info.st_uid})")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise _refuse(path, f"is a {kind} others may use (mode {stat.S_IMODE(info.st_mode):o})")


def _secure_directory(directory: Path) -> None:
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700, parents=True)
    info = os.lstat(directory)
    if stat.S_ISLNK(info.st_mode):
        raise _refuse(directory, "is a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise _refuse(directory, "is not a directory")
    _owned_and_private(directory, info, "directory")


def _secure_file(path: Path) -> None:
    # O_NOFOLLOW: a symbolic link planted at the name is refused, not followed.
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as error:
        if os.path.islink(path):
            raise _refuse(path, "is a symbolic link") from None
        raise error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(path, "is not a regular file")
        _owned_and_private(path, info, "file")
    finally:
        os.close(fd)


class HostStore:
    """One host's shared state, in the SQLite file at ``path``.

    Safe to create before a server forks: each process opens its own
    connection on first use. Every method is one short transaction.

    :param path: the file; its directory is created ``0700`` if missing.
    :param busy_timeout: seconds a write waits for another process's.
    :param max_bytes: the most the file may grow to.
    :raises CrossmintConfigError: the file or its directory belongs to
        another user, is open to others, or is a symbolic link.
    :raises OSError: it cannot be created (a read-only file system).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 2.0, max_bytes: int = 64 << 20
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.max_bytes = max_bytes
        _secure_directory(self.path.parent)
        _secure_file(self.path)
        self._lock = threading.Lock()
        _stores.add(self)
        self._pid = -1
        self._connection: sqlite3.Connection | None = None
        self._waits = busy_timeout
        self._writes = 0
        try:
            with self._transaction() as db:
                # One statement at a time: executescript would commit on its own.
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
        except StoreUnavailable as error:
            raise OSError(f"the host store {self.path} cannot be used: {error}") from None
        finally:
            # Closed before any fork: each process opens its own when it needs one.
            self.close()

    def __repr__(self) -> str:
        return f"HostStore({str(self.path)!r})"

    # -- connections ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        db.execute("PRAGMA journal_mode=WAL")
        # WAL with NORMAL loses at most the last moments on a power cut: a
        # refresh result or a lock, never a consistent file.
        db.execute("PRAGMA synchronous=NORMAL")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        db.execute(f"PRAGMA max_page_count={max(64, self.max_bytes // page_size)}")
        return db

    @contextlib.contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """This process's connection, in a transaction (``BEGIN IMMEDIATE`` to write)."""
        with self._lock:
            try:
                if self._connection is None or self._pid != os.getpid():
                    if self._connection is not None:
                        # A parent's, inherited through a fork: neither used nor
                        # closed here (closing it could end the parent's WAL).
                        _inherited.append(self._connection)
                    self._connection = self._connect()
                    self._waits = self.busy_timeout
                    self._pid = os.getpid()
                    # Closed with the store, whoever forgets to close it; not at exit,
                    # where another thread may still be inside it (the process ends anyway).
                    closer = weakref.finalize(self, _close_if_mine, self._connection, self._pid)
                    closer.atexit = False
                db = self._connection
                waits = getattr(_patience, "seconds", self.busy_timeout)
                if waits != self._waits:
                    db.execute(f"PRAGMA busy_timeout={int(waits * 1000)}")
                    self._waits = waits
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield db
                except BaseException:
                    # SQLite has rolled back already after some errors (a full file).
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as error:
                busy = "locked" in str(error) or "busy" in str(error)
                kind = StoreBusy if busy else StoreUnavailable
                raise kind(f"{type(error).__name__}: {error}") from None

    @staticmethod
    @contextlib.contextmanager
    def impatient(seconds: float = 0.02) -> Iterator[None]:
        """Calls from this thread meanwhile wait at most ``seconds`` for another
        process's write, then raise :class:`StoreBusy` (an event loop tries
        inline first, and waits in a worker thread only when it must)."""
        before = getattr(_patience, "seconds", None)
        _patience.seconds = seconds
        try:
            yield
        finally:
            if before is None:
                del _patience.seconds
            else:
                _patience.seconds = before

    def close(self) -> None:
        """Close this process's connection."""
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    def _prune(self, db: sqlite3.Connection, now: float) -> None:
        # Every 64th write: expired rows go; the file's bound covers the rest.
        self._writes += 1
        if self._writes % 64:
            return
        db.execute("DELETE FROM refreshes WHERE expires <= ? AND lock_until <= ?", (now, now))
        db.execute("DELETE FROM links WHERE expires <= ?", (now,))
        db.execute("DELETE FROM revoked WHERE expires <= ?", (now,))

    # -- the key set ----------------------------------------------------------------------

    def put_keys(self, jwks: Mapping[str, Any], fetched_at: float) -> None:
        """Keep the key set this process just fetched from Crossmint."""
        text = json.dumps(dict(jwks), separators=(",", ":"))
        with self._transaction() as db:
            db.execute(
                "INSERT INTO keyset (id, jwks, fetched_at) VALUES (1, ?, ?) ON CONFLICT (id)"
                " DO UPDATE SET jwks = excluded.jwks, fetched_at = excluded.fetched_at"
                " WHERE excluded.fetched_at >= keyset.fetched_at",
                (text, fetched_at),
            )

    def keys(self) -> tuple[dict[str, Any], float] | None:
        """The key set a process of this host last fetched, and when; ``None`` if none did."""
        with self._transaction(write=False) as db:
            row = db.execute("SELECT jwks, fetched_at FROM keyset WHERE id = 1").fetchone()
        if row is None:
            return None
        try:
            jwks = json.loads(row[0])
        except ValueError:
            return None
        return (jwks, float(row[1])) if isinstance(jwks, dict) else None

    # -- refreshes ------------------------------------------------------------------------

    @staticmethod
    def _revoked(db: sqlite3.Connection, digest: str, now: float) -> bool:
        row = db.execute(
            "SELECT 1 FROM revoked WHERE digest = ? AND kind = ? AND expires > ? LIMIT 1",
            (digest, SECRET, now),
        ).fetchone()
        return row is not None

    def is_revoked(self, digest: str, now: float | None = None) -> bool:
        """Whether the session of the secret with this digest was logged out."""
        now = time.time() if now is None else now
        with self._transaction(write=False) as db:
            return self._revoked(db, digest, now)

    def claim(
        self,
        digest: str,
        owner: str,
        lock_ttl: float,
        now: float | None = None,
        waited: bool = False,
    ) -> Claim:
        """For a secret about to be traded: its record, or the lock, or neither (wait).

        :param waited: whether the caller found the secret's lock held before: a
            record that does not last (Crossmint unavailable) is shared only with
            those who waited for it; a caller that comes after it trades again.
        """
        now = time.time() if now is None else now
        with self._transaction() as db:
            if self._revoked(db, digest, now):
                return Claim(revoked=True)
            row = db.execute(
                "SELECT owner, lock_until, record, expires, settled, lasting FROM refreshes"
                " WHERE digest = ?",
                (digest,),
            ).fetchone()
            if row is not None and row[2] is not None and row[3] > now and (row[5] or waited):
                return Claim(record=bytes(row[2]))
            if row is not None and row[0] not in (None, owner) and row[1] > now:
                return Claim()
            db.execute(
                "INSERT INTO refreshes (digest, owner, lock_until, record, expires)"
                " VALUES (?, ?, ?, NULL, ?) ON CONFLICT (digest) DO UPDATE SET"
                " owner = excluded.owner, lock_until = excluded.lock_until, record = NULL,"
                " expires = excluded.expires",
                (digest, owner, now + lock_ttl, now + lock_ttl),
            )
            self._prune(db, now)
        return Claim(won=True)

    def settle(
        self,
        digest: str,
        owner: str,
        record: bytes,
        ttl: float,
        successor: str | None,
        now: float | None = None,
        lasting: bool = True,
    ) -> bool:
        """Store what the trade of a secret came to and release its lock.

        :param successor: the digest of the secret the trade returned, if any.
        :param lasting: whether the outcome holds for everyone who comes
            within ``ttl`` (new material, a refusal), or only for those
            already waiting (Crossmint unavailable: see :meth:`claim`).
        :returns: ``False`` when the session was logged out while the trade
            was under way: nothing is stored, and the successor is revoked too.
        """
        now = time.time() if now is None else now
        with self._transaction() as db:
            revoked = self._revoked(db, digest, now)
            if revoked:
                db.execute("DELETE FROM refreshes WHERE digest = ? AND owner = ?", (digest, owner))
                if successor is not None:
                    expires = db.execute(
                        "SELECT max(expires) FROM revoked WHERE digest = ? AND kind = ?",
                        (digest, SECRET),
                    ).fetchone()[0]
                    db.execute(
                        "INSERT INTO revoked (kind, digest, expires) VALUES (?, ?, ?)",
                        (SECRET, successor, expires),
                    )
                return False
            if ttl > 0:
                db.execute(
                    "INSERT INTO refreshes (digest, owner, lock_until, record, expires, settled,"
                    " lasting) VALUES (?, NULL, 0, ?, ?, ?, ?) ON CONFLICT (digest) DO UPDATE SET"
                    " owner = NULL, lock_until = 0, record = excluded.record,"
                    " expires = excluded.expires, settled = excluded.settled,"
                    " lasting = excluded.lasting",
                    (digest, record, now + ttl, now, int(lasting)),
                )
            else:
                db.execute("DELETE FROM refreshes WHERE digest = ? AND owner = ?", (digest, owner))
            if successor is not None and ttl > 0:
                db.execute(
                    "INSERT OR REPLACE INTO links (next, previous, expires) VALUES (?, ?, ?)",
                    (successor, digest, now + ttl),
                )
            self._prune(db, now)
        return True

    def release(self, digest: str, owner: str) -> None:
        """Give the lock up without a result (the trade was abandoned)."""
        with self._transaction() as db:
            db.execute(
                "DELETE FROM refreshes WHERE digest = ? AND owner = ? AND record IS NULL",
                (digest, owner),
            )

    def record(self, digest: str, now: float | None = None) -> bytes | None:
        """The sealed record of a secret's trade, while it lasts."""
        now = time.time() if now is None else now
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT record FROM refreshes WHERE digest = ? AND expires > ?", (digest, now)
            ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def predecessors(self, digest: str, limit: int = 8) -> list[str]:
        """The digests of the secrets that were traded for this one, newest first."""
        found: list[str] = []
        with self._transaction(write=False) as db:
            current = digest
            for _ in range(limit):
                row = db.execute("SELECT previous FROM links WHERE next = ?", (current,)).fetchone()
                if row is None or row[0] in found or row[0] == digest:
                    break
                found.append(row[0])
                current = row[0]
        return found

    # -- revocations ----------------------------------------------------------------------

    def revoke(
        self, kind: str, digests: list[str], expires: float, now: float | None = None
    ) -> bool:
        """Log these out for every process of the host, until ``expires``; ``True``."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO revoked (kind, digest, expires) VALUES (?, ?, ?)",
                [(kind, digest, expires) for digest in digests],
            )
            self._prune(db, now)
        return True

    def revocations(self, after: int, now: float | None = None) -> list[Revocation]:
        """The live revocations numbered after ``after``, oldest first."""
        now = time.time() if now is None else now
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT seq, kind, digest, expires FROM revoked WHERE seq > ? AND expires > ?"
                " ORDER BY seq LIMIT 10000",
                (after, now),
            ).fetchall()
        return [Revocation(int(seq), kind, digest, float(exp)) for seq, kind, digest, exp in rows]

    def last_revocation(self) -> int:
        """The number of the newest revocation (0 when none)."""
        with self._transaction(write=False) as db:
            row = db.execute("SELECT max(seq) FROM revoked").fetchone()
        return int(row[0] or 0)


#: Where a deployment places the host store (a directory) or turns it off.
ENVIRONMENT_VARIABLE = "CROSSMINT_HOST_STORE"
_OFF = frozenset({"off", "false", "0", "no", "none"})

#: Host stores that could not be created, each warned about once.
_unusable: set[Path] = set()


def open_host_store(
    crossmint: Crossmint, setting: object = True, scope: str = ""
) -> HostStore | None:
    """The host store an auth uses, as its ``host_store`` setting says.

    :param setting: ``True`` for the default directory (:func:`default_directory`),
        a directory (``str`` or path) to keep it in, or ``False`` for none.
        With ``True``, the environment variable ``CROSSMINT_HOST_STORE``
        may name a directory or turn it off (``off``, ``false``, ``0``).
    :param scope: what else tells this auth's sessions apart (its refresh route).
    :returns: ``None`` when turned off, or when it cannot be created (a
        read-only file system): then a warning says so, once, and each
        worker process shares nothing with the others.
    :raises CrossmintConfigError: the setting is none of these, or the store
        is refused (another user's, open to others, a symbolic link).
    """
    if setting is True:
        # The deployment's say, where the code gave none: a directory, or off.
        setting = os.environ.get(ENVIRONMENT_VARIABLE) or True
        if isinstance(setting, str) and setting.strip().lower() in _OFF:
            setting = False
    if setting is False:
        return None
    if setting is True:
        directory = None
    elif isinstance(setting, (str, os.PathLike)) and os.fspath(setting):
        directory = Path(setting)
    else:
        raise CrossmintConfigError(
            f"host_store must be True, False or a directory, not {setting!r}",
            setting="host_store",
        )
    path = default_path(
        crossmint.project_id, crossmint.api_key, crossmint.base_url, directory, scope
    )
    try:
        return HostStore(path)
    except OSError as error:
        if path not in _unusable:
            _unusable.add(path)
            logger.warning(
                "the host store cannot be created at %s (%s): the worker processes of this"
                " host share no refreshes, keys or logouts (set host_store= a writable"
                " directory, or use Redis)",
                path,
                error.strerror or error,
            )
        return None
