"""Keeping answers that carry auth cookies out of shared caches.

A CDN or shared proxy that stored a response with our ``Set-Cookie`` would
hand one user's session to the next. Every answer that carries our cookies
(a refresh on the app's response, the refresh and logout routes, a cleared
session) is made ``Cache-Control: private, no-store`` and ``Vary: Cookie``,
as Django's and Starlette's session middlewares do. Written once, on ``str``
pairs: the WSGI and ASGI layers only convert their headers to and from it.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PRIVATE", "uncacheable"]

#: The directives every answer carrying our cookies has.
PRIVATE = ("private", "no-store")

# Directives that would let a shared cache keep the answer, or that ours replace.
_REPLACED = frozenset({"public", "private", "no-store"})


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def uncacheable(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` with ``private, no-store`` merged into ``Cache-Control`` and
    ``Cookie`` into ``Vary``.

    Nothing the app set is weakened: its other directives (``no-cache``,
    ``must-revalidate``, ``max-age``) stay, ``public`` and a ``private``
    limited to some fields (``private="Set-Cookie"``) give way to a plain
    ``private``, and ``Vary: *`` stays as it is. The app's other headers keep
    their order; the two merged ones come last, once each.
    """
    out: list[tuple[str, str]] = []
    directives: list[str] = []
    vary: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower == "cache-control":
            directives.extend(_split(value))
        elif lower == "vary":
            vary.extend(_split(value))
        else:
            out.append((name, value))
    kept = [
        directive
        for directive in directives
        if directive.partition("=")[0].strip().lower() not in _REPLACED
    ]
    out.append(("Cache-Control", ", ".join([*PRIVATE, *dict.fromkeys(kept)])))
    lowered = {field.lower() for field in vary}
    if "*" not in lowered and "cookie" not in lowered:
        vary.append("Cookie")
    out.append(("Vary", ", ".join(dict.fromkeys(vary))))
    return out
