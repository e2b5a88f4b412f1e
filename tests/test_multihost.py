"""Two hosts (network namespaces), each gunicorn with three workers of the Flask example, sharing
one Redis and one Crossmint emulator: a burst of expired sessions spread over both hosts makes one
upstream refresh per session, and nobody is logged out."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from multihost import Hosts, hosts
from support import require_program


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    require_program("ip")
    require_program("redis-server")
    if os.geteuid() != 0:
        pytest.fail("network namespaces need root (as on developers' machines and in CI)")
    logs: Path = tmp_path_factory.mktemp("multihost")
    with hosts(logs, count=2, workers=3) as made:
        yield made


def test_a_burst_across_hosts_refreshes_each_session_once(deployment: Hosts) -> None:
    users, per_host = 12, 3
    answer = deployment.client(
        "--apps", ",".join(deployment.app_urls),
        "--users", str(users), "--per-host", str(per_host),
    )  # fmt: skip
    answers = answer["answers"]
    assert isinstance(answers, list)
    assert len(answers) == users * len(deployment.hosts) * per_host
    assert answers == ["ok"] * len(answers), deployment.output()
    assert answer["refreshes"] == users, deployment.output()
