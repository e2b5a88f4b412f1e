"""Protected-path patterns in the Next.js matcher syntax Crossmint's docs use."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = ["PathMatcher", "compile_pattern", "normalize_path"]

_PARAM = re.compile(r"^:(\w+)(\(.*\))?([*+?]?)$")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile one matcher pattern.

    ``/dashboard/:path*`` matches ``/dashboard`` and everything below it;
    ``:name`` is one segment, ``:name+`` one or more, ``:name?`` zero or one;
    ``:name(regex)`` and a bare ``(regex)`` segment constrain with a regex.

    :raises ValueError: the pattern does not start with ``/``.
    """
    if not pattern.startswith("/"):
        raise ValueError(f"path pattern {pattern!r} must start with '/'")
    parts = []
    for segment in pattern.strip("/").split("/"):
        if not segment:
            continue
        match = _PARAM.match(segment)
        if match:
            _, constraint, modifier = match.groups()
            body = constraint or "[^/]+"
            if modifier == "*":
                parts.append(f"(?:/{body})*")
            elif modifier == "+":
                parts.append(f"(?:/{body})+")
            elif modifier == "?":
                parts.append(f"(?:/{body})?")
            else:
                parts.append(f"/{body}")
        elif segment.startswith("(") and segment.endswith(")"):
            parts.append(f"/{segment}")
        else:
            parts.append("/" + re.escape(segment))
    return re.compile("^" + "".join(parts) + "/?$")


def normalize_path(path: str) -> str:
    """Collapse ``//``, ``.`` and ``..`` so ``//dashboard`` cannot dodge ``/dashboard``."""
    if "//" not in path and "/." not in path:
        return path
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


class PathMatcher:
    """Whether a path is protected: patterns, or a callable taking the path.

    :param protect: a pattern, an iterable of patterns, or ``callable(path) -> bool``.
    """

    def __init__(self, protect: str | Iterable[str] | Callable[[str], bool] = ()) -> None:
        self._predicate: Callable[[str], bool] | None = None
        if callable(protect):
            self._predicate = protect
            self._patterns: tuple[re.Pattern[str], ...] = ()
        else:
            patterns = (protect,) if isinstance(protect, str) else tuple(protect)
            self._patterns = tuple(compile_pattern(pattern) for pattern in patterns)
        # One alternation: a single regex call per request, whatever the pattern count.
        self._combined = (
            re.compile("|".join(f"(?:{p.pattern})" for p in self._patterns))
            if self._patterns
            else None
        )

    def __bool__(self) -> bool:
        return self._predicate is not None or bool(self._patterns)

    def __call__(self, path: str) -> bool:
        if "//" in path or "/." in path:
            path = normalize_path(path)
        if self._predicate is not None:
            return bool(self._predicate(path))
        return self._combined is not None and self._combined.match(path) is not None
