#!/usr/bin/env bash
# The demo: the Flask example behind the middleware, on the embedded emulator
# unless SERVER_CROSSMINT_API_KEY is set.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_venv demo
exec "$VENV/bin/python" examples/flask_app.py "$@"
