"""CrossmintAuth and AsyncCrossmintAuth: the drivers of the sans-IO flows.

Their shared base is in :mod:`~crossmint_wsgi.auth_base`; each driver in a
module of its own (:mod:`~crossmint_wsgi.sync_auth`,
:mod:`~crossmint_wsgi.async_auth`). This module is where both are imported from.
"""

from __future__ import annotations

from .async_auth import AsyncCrossmintAuth
from .sync_auth import CrossmintAuth

__all__ = ["AsyncCrossmintAuth", "CrossmintAuth"]
