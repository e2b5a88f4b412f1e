#!/usr/bin/env bash
# The whole check: system packages, virtual environment, ruff, mypy --strict, pytest.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_packages redis-server:redis-server chromium:chromium node:nodejs npm:npm
ensure_venv test
echo "== ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo "== mypy --strict"
"$VENV/bin/mypy" --strict crossmint_wsgi
echo "== pytest"
"$VENV/bin/pytest" "$@"
