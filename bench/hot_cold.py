"""The hot path and the cold path in instructions, in process, under cachegrind.

    python bench/hot_cold.py [--tree PATH] [--only hot,cold]

- hot: one request through ``CrossmintASGIMiddleware`` / ``CrossmintWSGIMiddleware``
  with a session seen before (again with another session's logout active,
  so the revoked set is not empty) (a 770-byte ``Cookie`` header, a new bytes
  object per request as a server makes it), minus the same request to the
  bare app: the library's own instructions per request. Under uvicorn a raw
  ASGI hello world costs about 116k instructions a request, so
  ``116k / (116k + ours)`` is the wrapped / bare ratio there.
- cold: ``verify_crossmint_jwt`` on a token it has never seen (static key
  set), against the raw ``cryptography`` check of the same signature, for
  RS256 and ES256 (target: at most 1.2x).

``--tree`` runs the library from another checkout (``PYTHONPATH``), to
compare with an earlier state of the code in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from _common import session_cookie
from _instructions import python_instructions

from crossmint_wsgi.testing import CrossmintEmulator

BENCH = str(Path(__file__).resolve().parent)

# Keys and tokens come from a file the bench writes beforehand: generating
# keys in the counted process would add a random cost (RSA's prime search).
LOAD = """
import json
from crossmint_wsgi.config import build_crossmint
with open(%r) as file:
    prepared = json.load(file)
crossmint = build_crossmint(prepared["api_key"], signing_key=prepared["signing_key"])
key_set = prepared["key_set"]
"""

HOT_SETUP = f"""
import sys
sys.path.insert(0, {BENCH!r})
from overhead_asgi import asgi_scope, bare_asgi_app, _receive, _send, run_to_completion
from crossmint_wsgi import AsyncCrossmintAuth, CrossmintASGIMiddleware, CrossmintAuth
from crossmint_wsgi import CrossmintWSGIMiddleware
LAYER = %r
WRAPPED = %r
REVOKED = %r
cookie = prepared["cookie"]
if LAYER == "asgi":
    app = bare_asgi_app
    if WRAPPED:
        auth = AsyncCrossmintAuth(crossmint, jwks=key_set)
        app = CrossmintASGIMiddleware(app, auth)
        if REVOKED:  # another session's logout: the set is no longer empty
            auth.core.revoked.add("0" * 64, 4e9, 0)
    base = asgi_scope(cookie)
    def call():
        scope = dict(base)
        scope["state"] = {{}}
        # A server decodes a new bytes object per request (bytes(b) would be b itself).
        scope["headers"] = [(name, bytes(memoryview(value))) for name, value in base["headers"]]
        run_to_completion(app(scope, _receive, _send))
else:
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    if WRAPPED:
        auth = CrossmintAuth(crossmint, jwks=key_set)
        app = CrossmintWSGIMiddleware(app, auth)
        if REVOKED:
            auth.core.revoked.add("0" * 64, 4e9, 0)
    base = {{"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "",
            "REMOTE_ADDR": "127.0.0.1", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
            "wsgi.url_scheme": "http"}}
    def start_response(status, headers, exc_info=None):
        return None
    def call():
        environ = dict(base)
        environ["HTTP_COOKIE"] = cookie[:-1] + cookie[-1]  # a new str per request
        app(environ, start_response)
call()
"""

COLD_SETUP = """
import base64
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc.jwk import import_key
from crossmint_wsgi import CrossmintAuth
ALG = %r
tokens = prepared["tokens"]
auth = CrossmintAuth(crossmint, jwks=key_set)
auth.verify_crossmint_jwt(tokens[-1])
public = import_key(key_set["keys"][0]).get_op_key("verify")
def b64(segment):
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) %% 4))
def raw(token):
    signing_input, _, signature = token.rpartition(".")
    signature = b64(signature)
    if ALG == "RS256":
        public.verify(signature, signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        public.verify(encode_dss_signature(r, s), signing_input.encode(), ec.ECDSA(hashes.SHA256()))
"""


def prepare(folder: str, algorithm: str, tokens: int) -> str:
    """A file with an API key, a key set, a session cookie and ``tokens`` fresh JWTs."""
    with CrossmintEmulator(algorithm=algorithm) as emulator:
        others = f"; _ga=GA1.1.1234567890.1700000000; csrftoken={'ab' * 32}"
        prepared = {
            "api_key": emulator.api_key,
            "signing_key": emulator.signing_key,
            "key_set": emulator.key_set,
            "cookie": session_cookie(emulator, "hot") + others,
            "tokens": [emulator.issue_jwt(f"user-{i}", ttl=3600) for i in range(tokens)],
        }
    path = Path(folder, f"{algorithm}.json")
    path.write_text(json.dumps(prepared))
    return str(path)


def hot(env: dict[str, str]) -> None:
    print("hot path: a session seen before, instructions per request in process")
    with tempfile.TemporaryDirectory() as folder:
        load = LOAD % prepare(folder, "RS256", 0)
        for layer in ("asgi", "wsgi"):
            bare = python_instructions(
                load + HOT_SETUP % (layer, False, False), "call()", 200, 2200, env
            )
            for revoked in (False, True):
                wrapped = python_instructions(
                    load + HOT_SETUP % (layer, True, revoked), "call()", 200, 2200, env
                )
                name = f"{layer}, a logout active" if revoked else layer
                report_hot(name, layer, bare, wrapped)


def report_hot(name: str, layer: str, bare: float, wrapped: float) -> None:
    ours = wrapped - bare
    line = f"  {name:22} bare {bare:8.0f}, wrapped {wrapped:8.0f}, ours {ours:7.0f}"
    if layer == "asgi":
        line += f"; under uvicorn (116k bare) about {116_000 / (116_000 + ours):.3f} (>= 0.95)"
    print(line, flush=True)


def cold(env: dict[str, str]) -> None:
    print("cold path: a token never seen before, instructions per token in process")
    few, many = 20, 120
    for algorithm in ("RS256", "ES256"):
        counts = {}
        steps = (("raw", "raw(tokens[i])"), ("ours", "auth.verify_crossmint_jwt(tokens[i])"))
        with tempfile.TemporaryDirectory() as folder:
            load = LOAD % prepare(folder, algorithm, many + 1)
            for which, step in steps:
                counts[which] = python_instructions(
                    load + COLD_SETUP % algorithm, step, few, many, env
                )
        print(
            f"  {algorithm}: cryptography alone {counts['raw']:8.0f},"
            f" verify_crossmint_jwt {counts['ours']:8.0f},"
            f" {counts['ours'] / counts['raw']:.3f}x (target <= 1.2x)",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", help="a checkout to take crossmint_wsgi from")
    parser.add_argument("--only", default="hot,cold")
    args = parser.parse_args(argv)
    env = {"PYTHONPATH": args.tree} if args.tree else {}
    print(
        f"hot_cold: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs,"
        f" code from {args.tree or 'this checkout'}"
    )
    if "hot" in args.only:
        hot(env)
    if "cold" in args.only:
        cold(env)


if __name__ == "__main__":
    main()
