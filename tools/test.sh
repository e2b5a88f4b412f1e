#!/usr/bin/env bash
# The whole check: system packages, the virtual environment, then the nox sessions
# (noxfile.py): ruff and mypy --strict once, the whole suite on Python 3.11 in .venv
# (browser tests included), and the suite on 3.10, 3.12 and 3.13 without the browser tests.
#
#   bash tools/test.sh                         every session
#   bash tools/test.sh tests/test_auth.py -k x lint, then pytest with these arguments on 3.11 only
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_packages redis-server:redis-server redis-cli:redis-tools ip:iproute2 chromium:chromium node:nodejs npm:npm
ensure_venv test
if [ "$#" -gt 0 ]; then
    exec "$VENV/bin/nox" --sessions lint tests-3.11 -- "$@"
fi
exec "$VENV/bin/nox"
