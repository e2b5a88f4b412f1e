"""JWT verification cost: first-seen and cached, against a raw signature check.

Run: ``.venv/bin/python bench/verify.py [--iterations N] [--rounds R]``

For RS256 (RSA 2048) and ES256 (P-256) it prints, in microseconds per token:

- floor: the ``cryptography`` signature check alone (RSA PKCS#1 v1.5 SHA-256 or
  ECDSA P-256 SHA-256 over the signing input), on the same tokens;
- first-seen: ``CrossmintAuth.verify_crossmint_jwt`` with a static JWK Set, a
  distinct token each iteration, so every one is parsed and its signature checked;
- cached: the same call repeated with one token, answered by the verified-token cache.

Each figure is the median of several rounds, each round timing floor, first-seen
and cached back to back; the ratio is the median of the per-round ratios against
the floor of the same algorithm. Every figure is printed twice: wall time
(``time.perf_counter_ns``) and this thread's CPU time (``time.thread_time_ns``),
which leaves out the time spent waiting for a CPU when the machine is busy.
Targets: first-seen <= 2x the floor, cached <= 3 us; the exit status is 1 when
a figure misses one.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from crossmint_wsgi import CrossmintAuth
from crossmint_wsgi.config import build_crossmint
from crossmint_wsgi.testing._keys import generate_key, mint_api_key

FIRST_SEEN_TARGET = 2.0
CACHED_TARGET_US = 3.0


def b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def time_us(run: Callable[[], None], iterations: int) -> tuple[float, float]:
    """Microseconds per iteration of ``run``: wall time, and this thread's CPU time."""
    cpu_start = time.thread_time_ns()
    start = time.perf_counter_ns()
    run()
    wall = time.perf_counter_ns() - start
    cpu = time.thread_time_ns() - cpu_start
    return wall / iterations / 1000, cpu / iterations / 1000


def floor_check(key: RSAKey | ECKey, tokens: Sequence[str]) -> Callable[[], None]:
    """The raw ``cryptography`` verify of each token's signing input."""
    public: Any = key.get_op_key("verify")
    inputs = []
    for token in tokens:
        header, payload, signature = token.split(".")
        raw = b64decode(signature)
        if isinstance(public, ec.EllipticCurvePublicKey):
            half = len(raw) // 2
            raw = encode_dss_signature(
                int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
            )
        inputs.append((f"{header}.{payload}".encode(), raw))
    if isinstance(public, rsa.RSAPublicKey):
        pkcs1 = padding.PKCS1v15()

        def run() -> None:
            for message, signature in inputs:
                public.verify(signature, message, pkcs1, hashes.SHA256())

    else:
        ecdsa = ec.ECDSA(hashes.SHA256())

        def run() -> None:
            for message, signature in inputs:
                public.verify(signature, message, ecdsa)

    return run


def signed_tokens(
    algorithm: str, project_id: str, n: int
) -> tuple[list[str], dict[str, Any], RSAKey | ECKey]:
    key = generate_key(algorithm)
    now = int(time.time())
    header = {"typ": "JWT", "alg": algorithm, "kid": key.kid}
    tokens = [
        jwt.encode(
            header,
            {
                "sub": f"user-{index}",
                "aud": project_id,
                "iat": now,
                "exp": now + 3600,
                "jti": uuid.uuid4().hex,
            },
            key,
            algorithms=[algorithm],
        )
        for index in range(n)
    ]
    return tokens, {"keys": [dict(key.as_dict(private=False))]}, key


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000, help="tokens per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds; the median is reported")
    args = parser.parse_args(argv)
    n, rounds = args.iterations, args.rounds

    api_key = mint_api_key(None)
    crossmint = build_crossmint(api_key.api_key, signing_key=api_key.signing_key)

    print(
        f"JWT verification, {n} tokens x {rounds} rounds, medians"
        f" (Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}"
        f" on {os.cpu_count()} CPUs)"
    )
    print("first-seen ratio: median over rounds of first-seen / floor, both measured each round")
    print("wall: time.perf_counter_ns; cpu: time.thread_time_ns (excludes waiting for a CPU)")
    print(f"{'':14} {'floor us':>9} {'first us':>9} {'ratio':>6} {'cached us':>10}")
    failed = []
    for algorithm in ("RS256", "ES256"):
        tokens, jwks, key = signed_tokens(algorithm, crossmint.project_id, n)
        floor_run = floor_check(key, tokens)
        # No verified-token cache: a later round must not find the tokens of an earlier one.
        auth = CrossmintAuth(crossmint, jwks=jwks, token_cache_size=0)

        def first_seen(auth: CrossmintAuth = auth, tokens: list[str] = tokens) -> None:
            verify = auth.verify_crossmint_jwt
            for token in tokens:
                verify(token)

        cached_auth = CrossmintAuth(crossmint, jwks=jwks)
        token = tokens[0]
        cached_auth.verify_crossmint_jwt(token)
        cached_n = n * 20

        def cached(
            auth: CrossmintAuth = cached_auth, token: str = token, count: int = cached_n
        ) -> None:
            verify = auth.verify_crossmint_jwt
            for _ in range(count):
                verify(token)

        first_seen()  # warm up: imports, key objects, caches of the interpreter
        samples: dict[str, list[tuple[float, float]]] = {"floor": [], "first": [], "hit": []}
        for _ in range(rounds):
            # Floor and first-seen back to back in each round, so that a load
            # change on the machine between rounds moves both alike.
            samples["floor"].append(time_us(floor_run, n))
            samples["first"].append(time_us(first_seen, n))
            samples["hit"].append(time_us(cached, cached_n))
        for clock, index in (("wall", 0), ("cpu", 1)):
            floors = [sample[index] for sample in samples["floor"]]
            firsts = [sample[index] for sample in samples["first"]]
            floor = statistics.median(floors)
            first = statistics.median(firsts)
            ratio = statistics.median(f / b for f, b in zip(firsts, floors, strict=True))
            hit = statistics.median(sample[index] for sample in samples["hit"])
            label = f"{algorithm} {clock}"
            print(f"{label:14} {floor:9.1f} {first:9.1f} {ratio:5.2f}x {hit:10.2f}")
            if ratio > FIRST_SEEN_TARGET:
                failed.append(f"{label} first-seen {ratio:.2f}x the floor")
            if hit > CACHED_TARGET_US:
                failed.append(f"{label} cached {hit:.2f} us")
    print(
        f"targets: first-seen <= {FIRST_SEEN_TARGET}x floor, cached <= {CACHED_TARGET_US} us: "
        + ("met" if not failed else "MISSED: " + "; ".join(failed))
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
