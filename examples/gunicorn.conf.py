"""gunicorn settings: the Flask example behind Crossmint auth, with several workers.

    gunicorn -c examples/gunicorn.conf.py

Every worker must use the same Crossmint. With ``SERVER_CROSSMINT_API_KEY``
or ``CROSSMINT_EMULATOR_URL`` set, they do. With neither, :func:`on_starting`
starts one Crossmint emulator in the master process and points every worker
at it through ``CROSSMINT_EMULATOR_URL``.

To put an app of your own behind Crossmint without changing its code, name it
through the factory instead (settings come from ``CROSSMINT_*`` variables, see
:mod:`crossmint_wsgi.gunicorn`)::

    wsgi_app = "crossmint_wsgi.gunicorn:wrap('myapp:app')"
"""

from __future__ import annotations

import os
import sys
from typing import Any

chdir = os.path.dirname(os.path.abspath(__file__))
wsgi_app = "flask_app:app"
bind = [os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")]
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))

# Several workers means a session's refresh can reach any of them at once,
# and Crossmint's refresh tokens are single use. Set CROSSMINT_REDIS_URL
# (redis://127.0.0.1:6379/0) and the Flask example gives its CrossmintAuth a
# RedisCoordinator.from_url(...): one worker calls Crossmint, the others read
# its result from Redis. Without it each worker coordinates only its own
# requests.
if os.environ.get("CROSSMINT_REDIS_URL"):
    print("gunicorn.conf: refreshes shared through Redis", file=sys.stderr, flush=True)


def on_starting(server: Any) -> None:
    """In the master, before any worker forks: one emulator for all of them."""
    if os.environ.get("SERVER_CROSSMINT_API_KEY") or os.environ.get("CROSSMINT_EMULATOR_URL"):
        return
    from crossmint_wsgi.testing import CrossmintEmulator

    # Kept in a module global: the emulator serves from a thread of the master.
    global _emulator
    _emulator = CrossmintEmulator().start()
    os.environ["CROSSMINT_EMULATOR_URL"] = _emulator.url


_emulator: Any = None
