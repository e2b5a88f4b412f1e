"""The project's Crossmint: one auth per kind, named by dotted path in the settings.

``CROSSMINT_AUTH`` (blocking) serves the middleware under WSGI and Django's
test ``Client``; ``CROSSMINT_ASYNC_AUTH`` serves it under ASGI. On the real
Crossmint, ``CROSSMINT_API_KEY`` in the settings is enough instead.
"""

from __future__ import annotations

import sys

from crossmint_wsgi import AsyncCrossmintAuth, CrossmintAuth
from crossmint_wsgi.testing.demo import UserEmails, demo_crossmint

demo = demo_crossmint()
auth = CrossmintAuth(demo.crossmint)
async_auth = AsyncCrossmintAuth(demo.crossmint)
print(f"django_app: using {demo.describe()}", file=sys.stderr, flush=True)

# The JWT carries only the user id; the pages show the email from the user record too.
emails = UserEmails()
