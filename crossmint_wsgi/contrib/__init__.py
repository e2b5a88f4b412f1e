"""Framework integrations, one module per framework, each imported by path.

None of them is imported by :mod:`crossmint_wsgi`: the frameworks stay
optional extras (``pip install "crossmint-wsgi[fastapi]"``, ``[django]``,
``[starlette]``, ``[quart]``).

- :mod:`crossmint_wsgi.contrib.fastapi`: ``CrossmintSession`` and
  ``OptionalCrossmintSession`` dependencies, a cookie security scheme.
- :mod:`crossmint_wsgi.contrib.starlette`: an ``AuthenticationBackend``, so
  ``request.user`` and ``@requires("authenticated")`` work.
- :mod:`crossmint_wsgi.contrib.django`: a Django middleware configured from
  settings, ``request.crossmint_session`` and a view decorator.
- :mod:`crossmint_wsgi.contrib.quart`: a view decorator for Quart.
"""

from __future__ import annotations

__all__: list[str] = []
