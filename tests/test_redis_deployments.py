"""The Redis coordinators on Redis as it is deployed: a real Cluster (3 primaries, 3 replicas),
a Sentinel-guarded primary, TLS; which clients and URLs they take.

Storms: many workers (coordinators, each its own process's worth of state) receive one
expired session each for many users at once. Failovers: the primary that owns a
session's keys is killed while its refresh is in flight.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import redis.sentinel
from redis_deployments import Cluster, Node, Sentinels, make_tls_files, wait_for
from support import free_port
from test_redis import FailureLog, Flows, SingleUse, Upstream, in_threads
from test_redis_record import material, new_secret
from werkzeug.test import Client

from crossmint_wsgi import (
    CrossmintAuth,
    CrossmintAuthError,
    CrossmintConfigError,
    CrossmintWSGIMiddleware,
    ErrorCode,
)
from crossmint_wsgi.models import AuthMaterial
from crossmint_wsgi.redis import AsyncRedisCoordinator, RedisCoordinator
from crossmint_wsgi.redis.clients import Target
from crossmint_wsgi.redis.protocol import Keys
from crossmint_wsgi.testing import CrossmintEmulator

PREFIX = "crossmint-wsgi:refresh:"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with tempfile.TemporaryDirectory(prefix="redis-cluster-") as directory:
        deployment = Cluster(Path(directory))
        try:
            yield deployment.start()
        finally:
            deployment.stop()


@pytest.fixture
def sentinels() -> Iterator[Sentinels]:
    with tempfile.TemporaryDirectory(prefix="redis-sentinel-") as directory:
        deployment = Sentinels(Path(directory))
        try:
            yield deployment.start()
        finally:
            deployment.stop()


# -- a storm through real workers: the emulator with single-use refresh tokens ------------


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    session = environ["crossmint.session"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [session.user_id.encode() if session else b"none"]


def storm(url: str, *, workers: int = 4, users: int = 10) -> None:
    """Every user's expired session reaches every worker at once: one refresh per session."""
    coordinators = [RedisCoordinator.from_url(url) for _ in range(workers)]
    with CrossmintEmulator(reuse_window=0) as emulator:
        emulator.set_latency(0.05)
        auths = [
            CrossmintAuth(emulator.crossmint(), leeway=0, coordinator=coordinator)
            for coordinator in coordinators
        ]
        clients = [Client(CrossmintWSGIMiddleware(app, auth), use_cookies=False) for auth in auths]
        logins = [emulator.create_session(f"user-{i}", jwt_ttl=-30) for i in range(users)]
        before = emulator.requests["refresh"]

        def request(index: int) -> bytes:
            login = logins[index % users]
            cookie = (
                f"crossmint-jwt={login.jwt}; crossmint-refresh-token={login.refresh_token.secret}"
            )
            response = clients[index // users].get("/", headers={"Cookie": cookie})
            return response.get_data()

        answers = in_threads(workers * users, request)
        assert answers == [f"user-{i % users}".encode() for i in range(workers * users)]
        assert emulator.requests["refresh"] - before == users
        for auth, coordinator in zip(auths, coordinators, strict=True):
            auth.close()
            coordinator.close()  # and its logout listener


def test_cluster_storm_one_refresh_per_session(cluster: Cluster) -> None:
    storm(cluster.url)


def test_sentinel_storm_one_refresh_per_session(sentinels: Sentinels) -> None:
    storm(sentinels.url)


# -- keys and logouts on a cluster --------------------------------------------------------


def test_a_secrets_keys_share_one_slot_and_results_link_across_slots(cluster: Cluster) -> None:
    secret = new_secret()
    keys = Keys.of(secret, PREFIX)
    with cluster.nodes[0].client() as client:
        slots = {
            int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for key in (keys.result, keys.lock, keys.previous, keys.revoked)
        }
    assert len(slots) == 1
    # The next secret's :prev link lands in its own slot, often on another node.
    outcome = material("linked")
    coordinator = RedisCoordinator.from_url(cluster.url)
    assert coordinator.refresh(secret, Upstream(outcome)) == outcome
    successor = Keys.of(outcome.refresh_token.secret, PREFIX)
    with redis.cluster.RedisCluster.from_url(f"redis://{cluster.nodes[0].address}") as client:  # type: ignore[no-untyped-call]
        assert client.get(successor.previous) == keys.digest.encode()
        assert client.exists(keys.result) == 1
    coordinator.close()


def test_a_logout_through_one_coordinator_ends_the_chain_through_another(
    cluster: Cluster,
) -> None:
    # Coordinators from the URL and from clients the app already has.
    first = RedisCoordinator.from_url(cluster.url)
    second = RedisCoordinator(
        redis.cluster.RedisCluster(  # type: ignore[no-untyped-call]
            host="127.0.0.1", port=cluster.nodes[1].port, socket_timeout=2
        )
    )
    secret = new_secret()
    outcome = material("chain")
    assert first.refresh(secret, Upstream(outcome)) == outcome
    successors = second.revoke(secret)
    assert successors == [outcome.refresh_token.secret]
    for coordinator, presented in [(first, secret), (second, outcome.refresh_token.secret)]:
        late = Upstream(material("late"))
        with pytest.raises(CrossmintAuthError) as refused:
            coordinator.refresh(presented, late)
        assert refused.value.code is ErrorCode.SESSION_EXPIRED
        assert late.calls == 0
    # A third worker that never saw the session refuses it too.
    third = RedisCoordinator.from_url(cluster.url)
    with pytest.raises(CrossmintAuthError):
        third.refresh(outcome.refresh_token.secret, Upstream(material("third")))
    for coordinator in (first, second, third):
        coordinator.close()


@pytest.mark.anyio
async def test_async_coordinators_share_one_refresh_on_a_cluster(cluster: Cluster) -> None:
    coordinators = [AsyncRedisCoordinator.from_url(cluster.url) for _ in range(3)]
    upstream = Upstream(material("async-cluster"), delay=0.1)
    secrets_ = [new_secret() for _ in range(4)]
    results: list[AuthMaterial] = []

    async def one(coordinator: AsyncRedisCoordinator, secret: str) -> None:
        results.append(await coordinator.refresh(secret, upstream.run))

    async with anyio.create_task_group() as group:
        for secret in secrets_:
            for coordinator in coordinators:
                group.start_soon(one, coordinator, secret)
    assert upstream.calls == len(secrets_)
    assert results == [upstream.outcome] * (len(secrets_) * 3)
    for coordinator in coordinators:
        await coordinator.aclose()


# -- failover mid-storm -------------------------------------------------------------------


def eval_calls(nodes: list[Node]) -> int:
    """EVALs the live primaries among ``nodes`` ran since their stats were reset."""
    total = 0
    for node in nodes:
        with node.client() as client:
            if client.info("replication")["role"] != "master":
                continue
            stats = client.info("commandstats")
            total += int(stats.get("cmdstat_eval", {}).get("calls", 0))
    return total


def storm_through_a_failover(
    coordinators: list[RedisCoordinator],
    secrets_: list[str],
    primaries: Callable[[], list[Node]],
    fail_over: Callable[[], None],
) -> dict[str, int]:
    """Each secret refreshed by every coordinator at once; once every flow has taken its
    first turn and every winner is calling upstream, ``fail_over`` kills a primary.
    Returns the upstream calls per secret; asserts everyone got the material, though
    Crossmint refuses a secret's second trade."""
    gate = threading.Event()
    upstreams = {secret: SingleUse(material(secret[:12]), gate) for secret in secrets_}
    for node in primaries():
        with node.client() as client:
            client.config_resetstat()
    flows = len(secrets_) * len(coordinators)
    results: list[object] = []
    with contextlib.ExitStack() as stack:
        thread = threading.Thread(
            target=lambda: results.extend(
                in_threads(
                    flows,
                    lambda i: coordinators[i % len(coordinators)].refresh(
                        secrets_[i // len(coordinators)],
                        upstreams[secrets_[i // len(coordinators)]],
                    ),
                )
            )
        )
        thread.start()
        stack.callback(thread.join, 120)
        stack.callback(gate.set)
        wait_for(
            lambda: all(upstream.calls == 1 for upstream in upstreams.values()),
            "every secret's winner calls upstream",
        )
        # Each flow's first turn is one EVAL; the waiters poll again only after poll_interval.
        wait_for(lambda: eval_calls(primaries()) >= flows, "every flow took its first turn")
        fail_over()
    assert not thread.is_alive()
    expected = [upstreams[secrets_[i // len(coordinators)]].outcome for i in range(flows)]
    assert results == expected, [r for r in results if not isinstance(r, AuthMaterial)]
    return {secret: upstream.calls for secret, upstream in upstreams.items()}


def failover_coordinators(url: str, count: int = 4) -> list[RedisCoordinator]:
    # wait is the longest a failover is ridden out; the waiters' first poll comes after
    # poll_interval, once the test saw every first turn.
    return [
        RedisCoordinator.from_url(url, wait=30, lock_ttl=30, poll_interval=5, log_interval=3600)
        for _ in range(count)
    ]


def test_cluster_primary_killed_mid_storm(cluster: Cluster) -> None:
    # The victim is the primary a blocking client from the URL falls back on for
    # what it routes by no key (its default node, the first primary it learnt):
    # redis-py's Cluster pipeline asked it for every EVAL's keys, so killing it failed
    # every shard's EVALs, and each worker refreshed alone (3-4 refreshes per session).
    with contextlib.closing(Target.parse(cluster.url).sync_factory()()) as probe:
        default = probe.get_default_node()
    victim = next(node for node in cluster.live() if node.port == default.port)
    secrets_: list[str] = []
    on_victim: list[str] = []
    while len(on_victim) < 3 or len(secrets_) - len(on_victim) < 3:
        secret = new_secret()
        secrets_.append(secret)
        if cluster.primary_of(Keys.of(secret, PREFIX).result) is victim:
            on_victim.append(secret)
    coordinators = failover_coordinators(cluster.url)

    def fail_over() -> None:
        victim.kill()
        cluster.wait_failover(victim, Keys.of(on_victim[0], PREFIX).result)

    calls = storm_through_a_failover(coordinators, secrets_, lambda: cluster.live(), fail_over)
    # Everyone got the session (storm_through_a_failover asserts it): nobody logged out.
    print(f"[cluster failover] upstream refreshes per session: {sorted(calls.values())}")
    # The bound: at most one extra refresh per session (a lock the replica
    # had not received yet); a session on a surviving shard is refreshed once.
    assert all(calls[s] <= 2 for s in on_victim), calls
    assert all(calls[s] == 1 for s in secrets_ if s not in on_victim), calls
    for coordinator in coordinators:
        coordinator.close()


def test_sentinel_primary_killed_mid_storm(sentinels: Sentinels) -> None:
    # A client the app already has: a Sentinel's master_for, in each worker.
    def guarded() -> redis.Redis:
        sentinel: Any = redis.sentinel.Sentinel(
            [("127.0.0.1", node.port) for node in sentinels.sentinels], socket_timeout=1
        )
        client: redis.Redis = sentinel.master_for(sentinels.service, socket_timeout=1)
        return client

    coordinators = [
        RedisCoordinator(guarded, wait=30, lock_ttl=30, poll_interval=5, log_interval=3600)
        for _ in range(2)
    ] + failover_coordinators(sentinels.url, 2)
    secrets_ = [new_secret() for _ in range(6)]

    def fail_over() -> None:
        sentinels.primary.kill()
        sentinels.wait_failover()

    calls = storm_through_a_failover(
        coordinators, secrets_, lambda: [sentinels.primary, sentinels.replica], fail_over
    )
    assert all(count <= 2 for count in calls.values()), calls
    for coordinator in coordinators:
        coordinator.close()


# -- refreshes that start during a failover ----------------------------------------------


def storm_starting_mid_failover(
    coordinators: list[RedisCoordinator],
    probe: str,
    secrets_: list[str],
    on_victim: list[str],
    kill: Callable[[], None],
    promote: Callable[[], None],
) -> dict[str, int]:
    """Refreshes that start after the primary died and before its replica took over.

    Every coordinator reached Redis first. ``kill`` kills the primary of ``probe``
    and of ``on_victim``, its failover held; every coordinator then meets the
    failure refreshing ``probe`` (each process knows Redis is failing), and only
    then does the storm start: each of ``secrets_`` refreshed by every coordinator
    at once. Once every flow on the dead primary met the failure too and none has
    called upstream, ``promote`` lets the replica take over. Returns the upstream
    calls per secret; asserts everyone got the material, though Crossmint refuses
    a secret's second trade.
    """
    for index, coordinator in enumerate(coordinators):
        coordinator.refresh(new_secret(), Upstream(material(f"warm-{index}")))
    upstreams = {secret: SingleUse(material(secret[:12])) for secret in [probe, *secrets_]}
    workers = len(coordinators)

    def refreshing(presented: list[str]) -> Flows:
        return Flows(
            len(presented) * workers,
            lambda i: coordinators[i % workers].refresh(
                presented[i // workers], upstreams[presented[i // workers]]
            ),
        )

    with FailureLog() as failures:
        kill()
        try:
            probes = refreshing([probe])
            wait_for(lambda: failures.flows(probe) == workers, "every process met the failure")
            storm = refreshing(secrets_)
            for secret in on_victim:
                wait_for(
                    lambda s=secret: failures.flows(s) == workers,  # type: ignore[misc]
                    "every refresh on the dead primary met the failure",
                )
            # They wait for Redis: nobody traded a secret on its own.
            assert [upstreams[s].calls for s in [probe, *on_victim]] == [0] * (len(on_victim) + 1)
        finally:
            promote()
        assert probes.join() == [upstreams[probe].outcome] * workers
        results = storm.join()
    expected = [upstreams[secrets_[i // workers]].outcome for i in range(len(results))]
    assert len(results) == len(secrets_) * workers
    assert results == expected, [r for r in results if not isinstance(r, AuthMaterial)]
    return {secret: upstream.calls for secret, upstream in upstreams.items()}


def mid_failover_coordinators(url: str, count: int = 4) -> list[RedisCoordinator]:
    # Every failure logged (log_interval=0) tells the test which flows met it; wait and
    # the window are bounds the failover never comes near: the test releases it.
    return [
        RedisCoordinator.from_url(
            url, wait=60, lock_ttl=60, failover_window=60, poll_interval=0.05, log_interval=0
        )
        for _ in range(count)
    ]


def test_cluster_refreshes_starting_mid_failover(cluster: Cluster) -> None:
    # Any primary with a replica (an earlier test may have used one shard's up).
    victim, replica = next(
        (node, replica)
        for node in cluster.live()
        if (replica := cluster.replica_of(node)) is not None
    )
    secrets_: list[str] = []
    on_victim: list[str] = []
    probe = ""
    while not probe or len(on_victim) < 3 or len(secrets_) - len(on_victim) < 3:
        secret = new_secret()
        if cluster.primary_of(Keys.of(secret, PREFIX).result) is not victim:
            if len(secrets_) - len(on_victim) < 3:
                secrets_.append(secret)
        elif not probe:
            probe = secret
        else:
            secrets_.append(secret)
            on_victim.append(secret)
    coordinators = mid_failover_coordinators(cluster.url)
    key = Keys.of(probe, PREFIX).result

    def kill() -> None:
        cluster.hold_failover(replica)
        victim.kill()

    def promote() -> None:
        assert cluster.primary_of(key) is victim  # not promoted while the flows started
        cluster.release_failover(replica)
        assert cluster.wait_failover(victim, key) is replica

    calls = storm_starting_mid_failover(coordinators, probe, secrets_, on_victim, kill, promote)
    print(f"[cluster, refreshes starting mid-failover] per session: {sorted(calls.values())}")
    assert all(calls[s] <= 2 for s in [probe, *on_victim]), calls
    assert all(calls[s] == 1 for s in secrets_ if s not in on_victim), calls
    for coordinator in coordinators:
        coordinator.close()


def test_sentinel_refreshes_starting_mid_failover(sentinels: Sentinels) -> None:
    coordinators = mid_failover_coordinators(sentinels.url)
    probe, *secrets_ = [new_secret() for _ in range(5)]

    def kill() -> None:
        sentinels.hold_failover()
        sentinels.primary.kill()

    def promote() -> None:
        assert sentinels.reported_primary() == sentinels.primary.port  # not promoted yet
        sentinels.release_failover()
        sentinels.wait_failover()

    calls = storm_starting_mid_failover(coordinators, probe, secrets_, secrets_, kill, promote)
    print(f"[sentinel, refreshes starting mid-failover] per session: {sorted(calls.values())}")
    assert all(count <= 2 for count in calls.values()), calls
    for coordinator in coordinators:
        coordinator.close()


# -- TLS ----------------------------------------------------------------------------------


def test_rediss_with_a_ca_certificate(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path)
    tls_port = free_port()
    node = Node(
        tmp_path,
        [
            "--tls-port", str(tls_port),
            "--tls-cert-file", str(files.cert),
            "--tls-key-file", str(files.key),
            "--tls-ca-cert-file", str(files.ca),
            "--tls-auth-clients", "no",
        ],
    )  # fmt: skip
    node.start()
    try:
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={files.ca}"
        coordinators = [RedisCoordinator.from_url(url) for _ in range(2)]
        secret = new_secret()
        upstream = Upstream(material("tls"))
        assert coordinators[0].refresh(secret, upstream) == upstream.outcome
        assert coordinators[1].refresh(secret, Upstream(material("other"))) == upstream.outcome
        with node.client() as client:
            assert client.exists(Keys.of(secret, PREFIX).result) == 1
        # Without the CA the server is not trusted: Redis is skipped, the refresh happens here.
        untrusting = RedisCoordinator.from_url(f"rediss://127.0.0.1:{tls_port}/0")
        alone = Upstream(material("alone"))
        assert untrusting.refresh(secret, alone) == alone.outcome
        assert alone.calls == 1
        for coordinator in [*coordinators, untrusting]:
            coordinator.close()
    finally:
        node.kill()


# -- what the coordinators take -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind", "tls", "nodes", "service"),
    [
        pytest.param("redis://h:1/0", "single", False, (), "", id="redis"),
        pytest.param("rediss://h:1/0?ssl_ca_certs=/ca.pem", "single", True, (), "", id="rediss"),
        pytest.param("valkey://h:1/0", "single", False, (), "", id="valkey"),
        pytest.param("unix:///run/redis.sock", "single", False, (), "", id="unix"),
        pytest.param(
            "redis+cluster://a:7000,b:7001", "cluster", False, (("a", 7000), ("b", 7001)), "",
            id="cluster",
        ),
        pytest.param(
            "valkeys+cluster://a:7000/?ssl_ca_certs=/ca.pem", "cluster", True, (("a", 7000),),
            "", id="valkey-cluster-tls",
        ),
        pytest.param(
            "redis+sentinel://u:p@a:26379,b/mymaster/2", "sentinel", False,
            (("a", 26379), ("b", 26379)), "mymaster", id="sentinel",
        ),
        pytest.param(
            "rediss+sentinel://a:26380/primary", "sentinel", True, (("a", 26380),), "primary",
            id="sentinel-tls",
        ),
    ],
)  # fmt: skip
def test_url_forms(
    url: str, kind: str, tls: bool, nodes: tuple[tuple[str, int], ...], service: str
) -> None:
    target = Target.parse(url)
    assert (target.kind, target.tls, target.nodes, target.service) == (kind, tls, nodes, service)
    if kind == "sentinel" and "u:p@" in url:
        assert (target.options["username"], target.options["password"]) == ("u", "p")
        assert target.options["db"] == 2
    # Building the factories connects nowhere.
    RedisCoordinator.from_url(url)
    AsyncRedisCoordinator.from_url(url)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://user:hunter2@h:1", id="other-scheme"),
        pytest.param("redis+cluster://user:hunter2@", id="cluster-no-host"),
        pytest.param("redis+cluster://user:hunter2@a:1/3", id="cluster-db"),
        pytest.param("redis+sentinel://user:hunter2@a:1", id="sentinel-no-service"),
        pytest.param("redis+sentinel://user:hunter2@a:x/m", id="sentinel-bad-port"),
    ],
)
def test_a_url_of_no_supported_form_is_refused_without_showing_it(url: str) -> None:
    for coordinator in (RedisCoordinator, AsyncRedisCoordinator):
        with pytest.raises(CrossmintConfigError) as refused:
            coordinator.from_url(url)
        assert refused.value.setting == "url"
        assert "hunter2" not in str(refused.value)


def _sentinel() -> object:
    sentinel: Any = redis.sentinel.Sentinel
    return sentinel([("127.0.0.1", 1)])


@pytest.mark.parametrize(
    ("client", "hint"),
    [
        pytest.param(lambda: "redis://h:1", "got a builtins.str", id="url-text"),
        pytest.param(lambda: object(), "got a builtins.object", id="object"),
        pytest.param(lambda: redis.asyncio.Redis(), "redis.asyncio", id="async-client"),
        pytest.param(_sentinel, "master_for", id="sentinel-itself"),
    ],
)
def test_the_sync_coordinator_refuses_other_clients(
    client: Callable[[], object], hint: str
) -> None:
    with pytest.raises(CrossmintConfigError) as refused:
        RedisCoordinator(client())  # type: ignore[arg-type]
    assert refused.value.setting == "client"
    assert "redis.cluster.RedisCluster" in refused.value.message
    assert hint in refused.value.message


@pytest.mark.parametrize(
    ("client", "sync_client", "setting"),
    [
        pytest.param(lambda: redis.Redis(), lambda: None, "client", id="sync-as-client"),
        pytest.param(lambda: 42, lambda: None, "client", id="number"),
        pytest.param(
            lambda: redis.asyncio.Redis(), lambda: redis.asyncio.Redis(), "sync_client",
            id="async-as-sync-client",
        ),
    ],
)  # fmt: skip
def test_the_async_coordinator_refuses_other_clients(
    client: Callable[[], object], sync_client: Callable[[], object], setting: str
) -> None:
    with pytest.raises(CrossmintConfigError) as refused:
        AsyncRedisCoordinator(client(), sync_client=sync_client())  # type: ignore[arg-type]
    assert refused.value.setting == setting


def test_accepted_clients_and_a_factory_returning_another_kind() -> None:
    RedisCoordinator(redis.Redis())
    AsyncRedisCoordinator(redis.asyncio.Redis(), sync_client=redis.Redis())
    wrong = RedisCoordinator(lambda: "not a client", retry_interval=0)  # type: ignore[arg-type,return-value]
    with pytest.raises(CrossmintConfigError) as refused:
        wrong.refresh(new_secret(), Upstream(material("never")))
    assert refused.value.setting == "client"
