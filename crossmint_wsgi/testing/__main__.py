"""``python -m crossmint_wsgi.testing``: run the Crossmint emulator in the foreground."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ._keys import ALGORITHMS
from .emulator import CrossmintEmulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m crossmint_wsgi.testing",
        description="Run a local Crossmint auth API emulator until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8787, help="port to listen on; 0 picks one")
    parser.add_argument("--project-id", help="project id of the minted API key")
    parser.add_argument("--jwt-ttl", type=int, default=900, help="JWT lifetime in seconds")
    parser.add_argument(
        "--refresh-ttl", type=float, default=7 * 24 * 3600, help="refresh token lifetime"
    )
    parser.add_argument(
        "--reuse-window",
        type=float,
        default=0,
        help="seconds a used refresh token keeps working (0: single use)",
    )
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="RS256")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Start the emulator, print how to use it, serve until SIGINT or SIGTERM."""
    args = _parser().parse_args(argv)
    emulator = CrossmintEmulator(
        project_id=args.project_id,
        jwt_ttl=args.jwt_ttl,
        refresh_ttl=args.refresh_ttl,
        reuse_window=args.reuse_window,
        algorithm=args.algorithm,
        port=args.port,
        host=args.host,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        emulator.start()
    except OSError as error:
        print(f"cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr)
        return 1
    try:
        body = json.dumps({"user_id": "user-1", "email": "user-1@example.com"})
        curl = (
            f"curl -s -X POST {emulator.url}/_emulator/sessions"
            f" -H 'Content-Type: application/json' -d {shlex.quote(body)}"
        )
        print(
            f"Crossmint emulator listening on {emulator.url}\n"
            f"  API key:     {emulator.api_key}\n"
            f"  project id:  {emulator.project_id}\n"
            f"  signing key: {emulator.signing_key}\n"
            f"  JWK Set:     {emulator.url}/.well-known/jwks.json\n"
            f"Mint a session:\n"
            f"  {curl}\n"
            f"In Python: crossmint_wsgi.testing.connect_emulator({emulator.url!r})\n"
            f"Press Ctrl-C to stop.",
            flush=True,
        )
        # A timed wait keeps the main thread responsive to signals everywhere.
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    print("Crossmint emulator stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
