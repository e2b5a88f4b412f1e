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

#: The Python lines the command prints, to paste into an app.
PYTHON_LINES = (
    "import os",
    "from crossmint_wsgi import CrossmintAuth",
    "from crossmint_wsgi.testing import connect_emulator",
    'auth = CrossmintAuth(connect_emulator(os.environ["CROSSMINT_EMULATOR_URL"]))',
)


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


def _instructions(emulator: CrossmintEmulator) -> str:
    """What to paste to use the emulator: the shell line, the Python lines, a session.

    Its API key is signed by the emulator, not by Crossmint, so
    ``create_crossmint`` refuses it; ``connect_emulator`` fetches it and checks
    it against the emulator's published key. The key is never printed.
    """
    body = json.dumps({"user_id": "user-1", "email": "user-1@example.com"})
    curl = (
        f"curl -s -X POST {emulator.url}/_emulator/sessions"
        f" -H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )
    return "\n".join(
        [
            f"Crossmint emulator listening on {emulator.url} (project {emulator.project_id})",
            "",
            "In the shell that runs your app (the examples read it too):",
            f"  export CROSSMINT_EMULATOR_URL={shlex.quote(emulator.url)}",
            "",
            "In your app, instead of create_crossmint(...), which refuses the emulator's key:",
            *(f"  {line}" for line in PYTHON_LINES),
            "",
            "Mint a session (a JWT and a refresh token for user-1):",
            f"  {curl}",
            "",
            "Press Ctrl-C to stop.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Start the emulator, print how to use it, serve until SIGINT or SIGTERM."""
    args = _parser().parse_args(argv)
    # Each option's name is the emulator's keyword it sets.
    emulator = CrossmintEmulator(**vars(args))
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
        print(_instructions(emulator), flush=True)
        # A timed wait keeps the main thread responsive to signals everywhere.
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    print("Crossmint emulator stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
