"""The host store: where it lives, what it refuses, and its transactions on a real SQLite file."""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
import warnings
from pathlib import Path

import pytest

from crossmint_wsgi import CrossmintConfigError
from crossmint_wsgi.host_store import (
    SECRET,
    TOKEN,
    HostStore,
    StoreUnavailable,
    default_directory,
    default_path,
    open_host_store,
)
from crossmint_wsgi.testing import CrossmintEmulator

NOBODY = 65534


@pytest.fixture
def store(tmp_path: Path) -> HostStore:
    return HostStore(tmp_path / "host" / "store.sqlite3")


# -- where it lives -----------------------------------------------------------------------


def test_default_directory_follows_xdg_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_directory() == Path("/run/user/1000/crossmint-wsgi")
    # A relative value is no runtime directory (the XDG spec says to ignore it).
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative")
    monkeypatch.setenv("TMPDIR", "/var/tmp")
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    assert default_directory() == Path(f"/var/tmp/crossmint-wsgi-{os.geteuid()}")


@pytest.mark.parametrize(
    ("other", "same"),
    [
        (("p1", "key-a", "http://x"), True),
        (("p2", "key-a", "http://x"), False),
        (("p1", "key-b", "http://x"), False),
        (("p1", "key-a", "http://y"), False),
    ],
)
def test_one_file_per_project_key_and_url(other: tuple[str, str, str], same: bool) -> None:
    first = default_path("p1", "key-a", "http://x", Path("/d"))
    assert (default_path(*other, Path("/d")) == first) is same
    assert "key-a" not in str(first)


def test_created_private(tmp_path: Path) -> None:
    store = HostStore(tmp_path / "new" / "store.sqlite3")
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600


def _symlinked_directory(tmp_path: Path) -> Path:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    return tmp_path / "link" / "store.sqlite3"


def _symlinked_file(tmp_path: Path) -> Path:
    (tmp_path / "d").mkdir(mode=0o700)
    (tmp_path / "elsewhere").write_bytes(b"")
    (tmp_path / "d" / "store.sqlite3").symlink_to(tmp_path / "elsewhere")
    return tmp_path / "d" / "store.sqlite3"


def _open_directory(tmp_path: Path) -> Path:
    (tmp_path / "d").mkdir()
    os.chmod(tmp_path / "d", 0o755)
    return tmp_path / "d" / "store.sqlite3"


def _foreign_directory(tmp_path: Path) -> Path:
    (tmp_path / "d").mkdir(mode=0o700)
    os.chown(tmp_path / "d", NOBODY, NOBODY)
    return tmp_path / "d" / "store.sqlite3"


def _foreign_file(tmp_path: Path) -> Path:
    (tmp_path / "d").mkdir(mode=0o700)
    path = tmp_path / "d" / "store.sqlite3"
    path.write_bytes(b"")
    os.chmod(path, 0o600)
    os.chown(path, NOBODY, NOBODY)
    return path


def _open_file(tmp_path: Path) -> Path:
    (tmp_path / "d").mkdir(mode=0o700)
    path = tmp_path / "d" / "store.sqlite3"
    path.write_bytes(b"")
    os.chmod(path, 0o644)
    return path


@pytest.mark.parametrize(
    ("plant", "why"),
    [
        (_symlinked_directory, "symbolic link"),
        (_symlinked_file, "symbolic link"),
        (_open_directory, "others may use"),
        (_open_file, "others may use"),
        (_foreign_directory, "owned by another user"),
        (_foreign_file, "owned by another user"),
    ],
)
def test_refused_when_planted(plant: object, why: str, tmp_path: Path) -> None:
    path = plant(tmp_path)  # type: ignore[operator]
    if "another user" in why and os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    with pytest.raises(CrossmintConfigError, match=why) as caught:
        HostStore(path)
    assert caught.value.setting == "host_store"


def test_open_host_store_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with CrossmintEmulator() as emulator:
        config = emulator.crossmint()
    assert open_host_store(config, False) is None
    monkeypatch.setenv("CROSSMINT_HOST_STORE", "off")
    assert open_host_store(config, True) is None
    monkeypatch.setenv("CROSSMINT_HOST_STORE", str(tmp_path / "env"))
    found = open_host_store(config, True)
    assert found is not None
    assert found.path.parent == tmp_path / "env"
    given = open_host_store(config, tmp_path / "given")
    assert given is not None
    assert given.path.parent == tmp_path / "given"
    with pytest.raises(CrossmintConfigError, match="host_store must be"):
        open_host_store(config, 3)
    # A directory that cannot be made (here: under a regular file) warns once, then nothing.
    (tmp_path / "file").write_bytes(b"")
    with caplog.at_level(logging.WARNING, "crossmint_wsgi"):
        assert open_host_store(config, tmp_path / "file" / "sub") is None
        assert open_host_store(config, tmp_path / "file" / "sub") is None
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "share no refreshes" in caplog.records[0].getMessage()
    assert emulator.api_key not in caplog.text


# -- refreshes ------------------------------------------------------------------------------


def test_claim_record_and_lock(store: HostStore) -> None:
    assert store.claim("d1", "a", lock_ttl=5, now=100).won
    waiting = store.claim("d1", "b", lock_ttl=5, now=101)
    assert (waiting.won, waiting.record, waiting.revoked) == (False, None, False)
    # The holder may claim again; a lock past its ttl goes to the next.
    assert store.claim("d1", "a", lock_ttl=5, now=101).won
    assert store.claim("d1", "b", lock_ttl=5, now=107).won
    assert store.settle("d1", "b", b"sealed", ttl=30, successor="d2", now=108)
    assert store.claim("d1", "c", lock_ttl=5, now=109).record == b"sealed"
    assert store.record("d1", now=109) == b"sealed"
    assert store.record("d1", now=139) is None  # the grace window is over
    assert store.predecessors("d2") == ["d1"]


def test_release_frees_the_lock_at_once(store: HostStore) -> None:
    assert store.claim("d1", "a", lock_ttl=5, now=100).won
    store.release("d1", "a")
    assert store.claim("d1", "b", lock_ttl=5, now=100).won


def test_a_revoked_secret_is_neither_claimed_nor_settled(store: HostStore) -> None:
    assert store.claim("d1", "a", lock_ttl=5, now=100).won
    store.revoke(SECRET, ["d1"], expires=700, now=100)
    assert store.is_revoked("d1", now=101)
    assert store.claim("d1", "b", lock_ttl=5, now=101).revoked
    # The trade under way lands after the logout: nothing stored, its successor revoked.
    assert not store.settle("d1", "a", b"sealed", ttl=30, successor="d2", now=102)
    assert store.record("d1", now=102) is None
    assert store.is_revoked("d2", now=102)
    assert not store.is_revoked("d2", now=701)


def test_revocations_are_read_in_order_once(store: HostStore) -> None:
    store.revoke(TOKEN, ["t1"], expires=200, now=100)
    store.revoke(SECRET, ["s1", "s2"], expires=50, now=10)
    store.revoke(TOKEN, ["t2"], expires=300, now=100)
    found = store.revocations(0, now=100)
    assert [(each.kind, each.digest) for each in found] == [(TOKEN, "t1"), (TOKEN, "t2")]
    assert store.revocations(found[-1].seq, now=100) == []
    assert store.last_revocation() == found[-1].seq


def test_key_set_keeps_the_newest(store: HostStore) -> None:
    assert store.keys() is None
    store.put_keys({"keys": [1]}, fetched_at=200)
    store.put_keys({"keys": [0]}, fetched_at=100)  # an older fetch that lands late
    assert store.keys() == ({"keys": [1]}, 200)


def test_expired_rows_are_dropped(store: HostStore) -> None:
    for n in range(200):
        store.revoke(SECRET, [f"s{n}"], expires=150, now=100)
        store.claim(f"d{n}", "a", lock_ttl=1, now=100)
    store.revoke(SECRET, ["late"], expires=10_000, now=1_000)
    for n in range(130):
        store.claim(f"e{n}", "a", lock_ttl=1, now=1_000)
    with store._transaction() as db:
        revoked = db.execute("SELECT count(*) FROM revoked").fetchone()[0]
        stale = db.execute("SELECT count(*) FROM refreshes WHERE digest LIKE 'd%'").fetchone()[0]
    assert (revoked, stale) == (1, 0)


def test_bounded_in_size(tmp_path: Path) -> None:
    store = HostStore(tmp_path / "small" / "store.sqlite3", max_bytes=256 << 10)

    def fill() -> None:
        for n in range(100_000):
            store.revoke(SECRET, [f"{n:064d}"] * 10, expires=1e12, now=1)

    with pytest.raises(StoreUnavailable, match="full"):
        fill()
    assert os.path.getsize(store.path) <= 300 << 10


def test_a_child_forked_while_a_thread_held_the_lock_uses_the_store(store: HostStore) -> None:
    """gunicorn forks workers from a master whose logout listener may be inside the store."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._lock:
            held.set()
            release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, on 3.12+
        pid = os.fork()
    if pid == 0:  # the child: its own lock, its own connection
        code = 1
        try:
            store.revoke(SECRET, ["forked"], expires=1e12)
            code = 0
        finally:
            os._exit(code)
    release.set()
    thread.join()
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("the child hung on the lock it inherited")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert store.is_revoked("forked")
