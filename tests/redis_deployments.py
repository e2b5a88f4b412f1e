"""Redis as it is deployed, on loopback ports: a Cluster, a Sentinel-guarded primary, TLS.

Each waits on what it reports (PING, ``cluster_state:ok``, a sentinel naming a
primary), never on time.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import PortTaken, free_port, port_taken, require_program

__all__ = ["Cluster", "Node", "Sentinels", "TlsFiles", "make_tls_files", "wait_for"]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if condition():
                return
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


class Node:
    """One ``redis-server`` (or sentinel) process on a loopback port, in ``directory``.

    :param arguments: its configuration, as command-line options.
    :param sentinel: run it as a sentinel (its configuration goes in a file it rewrites).
    """

    def __init__(
        self,
        directory: Path,
        arguments: Sequence[str] = (),
        *,
        port: int | None = None,
        sentinel: bool = False,
        bind: str = "127.0.0.1",
    ) -> None:
        self.program = require_program("redis-server")
        self.port = port or free_port()
        self.bind = bind
        self.directory = directory / str(self.port)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.arguments = list(arguments)
        self.sentinel = sentinel
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def command(self) -> list[str]:
        common = [
            "--port", str(self.port), "--bind", self.bind, "--dir", str(self.directory),
            "--logfile", str(self.log),
        ]  # fmt: skip
        if self.sentinel:
            config = self.directory / "sentinel.conf"
            config.touch()
            return [self.program, str(config), "--sentinel", *common, *self.arguments]
        storage = ["--save", "", "--appendonly", "no"]
        return [self.program, *common, *storage, *self.arguments]

    def client(self, **options: object) -> redis.Redis:
        """A blocking client on this node's plain port."""
        return redis.Redis(
            host=self.bind, port=self.port, socket_timeout=2, socket_connect_timeout=2, **options
        )  # type: ignore[arg-type]

    def start(self, timeout: float = 20.0) -> Node:
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with self.client() as client:

            def answers() -> bool:
                assert self.process is not None
                if self.process.poll() is not None:
                    output = self.output()
                    error = PortTaken if port_taken(output) else AssertionError
                    raise error(f"redis-server exited:\n{output}")
                # This node's answer, not another process's on a port taken meanwhile.
                return bool(client.info("server")["process_id"] == self.process.pid)

            wait_for(answers, f"redis-server on port {self.port} answers PING", timeout)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as a crash would. Safe to call twice."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    @property
    def address(self) -> str:
        return f"{self.bind}:{self.port}"


class Cluster:
    """A Redis Cluster of ``primaries`` primaries, each with one replica.

    A short ``cluster-node-timeout`` makes a replica take over a killed
    primary within seconds.
    """

    def __init__(self, directory: Path, primaries: int = 3, node_timeout_ms: int = 1000) -> None:
        options = [
            "--cluster-enabled", "yes",
            "--cluster-node-timeout", str(node_timeout_ms),
            "--cluster-config-file", "nodes.conf",
            # Reads and writes of healthy shards go on while one shard fails over.
            "--cluster-require-full-coverage", "no",
        ]  # fmt: skip
        # Each node's bus on a port of its own (the default, port + 10000, may be taken).
        self.nodes = [
            Node(directory, [*options, "--cluster-port", str(free_port())])
            for _ in range(primaries * 2)
        ]
        self.replicas = 1

    @property
    def url(self) -> str:
        """The coordinator URL naming every node to start from."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                require_program("redis-cli"), "--cluster", "create",
                *(node.address for node in self.nodes),
                "--cluster-replicas", str(self.replicas), "--cluster-yes",
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self.wait_healthy(self.nodes)
        return self

    def wait_healthy(self, nodes: Sequence[Node]) -> None:
        """Until every node says ``cluster_state:ok`` and every primary has a replica in sync."""

        def ok() -> bool:
            for node in nodes:
                with node.client() as client:
                    if client.cluster("info").get("cluster_state") != "ok":
                        return False
                    info = client.info("replication")
                    if info["role"] == "master" and info.get("connected_slaves", 0) < 1:
                        return False
                    if info["role"] == "slave" and info.get("master_link_status") != "up":
                        return False
            return True

        wait_for(ok, "the cluster is ok with every primary replicated", timeout=60)

    def primary_of(self, key: str) -> Node:
        """The node serving ``key``'s slot now, as a live node sees it."""
        with self.live()[0].client() as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    port = int(primary[1])
                    return next(node for node in self.nodes if node.port == port)
        raise AssertionError(f"no node serves slot {slot}")

    def live(self) -> list[Node]:
        return [node for node in self.nodes if node.process is not None]

    def replica_of(self, primary: Node) -> Node | None:
        """A live replica of ``primary`` in sync with it, if it has one."""
        for node in self.live():
            with node.client() as client:
                info = client.info("replication")
            if (
                info["role"] == "slave"
                and int(info["master_port"]) == primary.port
                and info.get("master_link_status") == "up"
            ):
                return node
        return None

    @staticmethod
    def hold_failover(replica: Node) -> None:
        """Keep ``replica`` from taking over its primary (until :meth:`release_failover`)."""
        with replica.client() as client:
            # However long the hold, its data is not too old to take over with.
            client.config_set("cluster-replica-validity-factor", 0)
            client.config_set("cluster-replica-no-failover", "yes")

    @staticmethod
    def release_failover(replica: Node) -> None:
        """Let ``replica`` take over a dead primary, as it would have by itself."""
        with replica.client() as client:
            client.config_set("cluster-replica-no-failover", "no")

    def wait_failover(self, dead: Node, key: str) -> Node:
        """Until a live node serves ``key``'s slot in every live node's view; that node."""
        survivors = self.live()

        def promoted() -> bool:
            for node in survivors:
                with node.client() as client:
                    slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                    owners = [
                        int(primary[1])
                        for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS")
                        if start <= slot <= end
                    ]
                    if owners != [owners[0]] or owners[0] == dead.port:
                        return False
            return True

        wait_for(promoted, "a replica took over the killed primary's slots", timeout=60)
        return self.primary_of(key)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


class Sentinels:
    """A primary, its replica and three sentinels watching them as ``service``."""

    def __init__(self, directory: Path, service: str = "crossmint", down_ms: int = 1000) -> None:
        self.service = service
        self.primary = Node(directory)
        self.replica = Node(directory, ["--replicaof", "127.0.0.1", str(self.primary.port)])
        self.down_ms = down_ms
        self.sentinels = [Node(directory, sentinel=True) for _ in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(sentinel.address for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    def start(self) -> Sentinels:
        self.primary.start()
        self.replica.start()
        for sentinel in self.sentinels:
            sentinel.arguments = [
                "--sentinel", "monitor", self.service, "127.0.0.1", str(self.primary.port), "2",
                "--sentinel", "down-after-milliseconds", self.service, str(self.down_ms),
                "--sentinel", "failover-timeout", self.service, str(self.down_ms * 10),
            ]  # fmt: skip
            sentinel.start()

        def watching() -> bool:
            with self.replica.client() as client:
                if client.info("replication").get("master_link_status") != "up":
                    return False
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    fields = client.sentinel_master(self.service)  # type: ignore[no-untyped-call]
                    # Each sentinel knows the replica and the two other sentinels.
                    if fields["num-slaves"] < 1 or fields["num-other-sentinels"] < 2:
                        return False
            return True

        wait_for(watching, "the sentinels watch the primary and its replica", timeout=60)
        return self

    def reported_primary(self) -> int | None:
        """The port the sentinels agree is the primary's; ``None`` while they differ."""
        ports = set()
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                _, port = client.sentinel_get_master_addr_by_name(self.service)  # type: ignore[no-untyped-call]
                ports.add(int(port))
        return ports.pop() if len(ports) == 1 else None

    def wait_failover(self) -> None:
        """Until every sentinel names the replica as the primary, and it says so too."""

        def promoted() -> bool:
            if self.reported_primary() != self.replica.port:
                return False
            with self.replica.client() as client:
                return bool(client.info("replication")["role"] == "master")

        wait_for(promoted, "the sentinels promoted the replica", timeout=60)

    def hold_failover(self) -> None:
        """Keep the sentinels from seeing the primary down (until :meth:`release_failover`)."""
        self._down_after(3_600_000)

    def release_failover(self) -> None:
        """Let the sentinels see a dead primary down, and promote the replica."""
        self._down_after(self.down_ms)

    def _down_after(self, ms: int) -> None:
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                client.execute_command(
                    "SENTINEL", "SET", self.service, "down-after-milliseconds", str(ms)
                )

    def stop(self) -> None:
        for node in [*self.sentinels, self.replica, self.primary]:
            node.kill()


class TlsFiles:
    """A CA, and a server certificate for 127.0.0.1 signed by it, as PEM files."""

    def __init__(self, directory: Path) -> None:
        self.ca = directory / "ca.pem"
        self.cert = directory / "server.pem"
        self.key = directory / "server-key.pem"


def make_tls_files(directory: Path) -> TlsFiles:
    files = TlsFiles(directory)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crossmint-wsgi test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    # Python 3.13 verifies strictly (VERIFY_X509_STRICT): key identifiers are required.
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@contextlib.contextmanager
def started(deployment: Cluster | Sentinels) -> Iterator[None]:
    try:
        deployment.start()
        yield
    finally:
        deployment.stop()
