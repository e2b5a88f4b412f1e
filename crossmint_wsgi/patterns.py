"""Protected-path patterns in the Next.js matcher syntax, parsed into regexes.

Patterns are parsed as Next.js's matcher parses them (path-to-regexp 6, as
Next.js bundles it), so a pattern Next.js refuses is refused here, at
construction, with the accepted forms in the message. Matching a path, on
every reading of it, is :class:`~crossmint_wsgi.paths.PathMatcher`'s part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import CrossmintConfigError

__all__ = ["ACCEPTED_FORMS", "compile_pattern", "pattern_source"]

ACCEPTED_FORMS = (
    "/account/:path* (/account and everything below it), "
    "/account/:path+ (only below it), /users/:id (one segment), "
    "/posts/:slug? (an optional segment), /orders/:id(\\d+) (a segment matching a regex), "
    "/((?!login|static).*) (a regex group), /lit/\\( (an escaped character)"
)

#: Next.js's prefix characters: ``/:name`` and ``.:name`` make the separator optional too.
_PREFIXES = "./"
#: Any character but the separator, newlines and all: a router's ``<name>`` accepts them.
_SEGMENT = "[^/]+"
#: A trailing delimiter is optional (path-to-regexp's non-strict mode); so is one
#: trailing newline, because a router compiled with ``$`` matches before it.
_END = "[/#?]?\\n?\\Z"


def _refuse(pattern: str, reason: str) -> CrossmintConfigError:
    return CrossmintConfigError(
        f"path pattern {pattern!r} {reason}; accepted forms: {ACCEPTED_FORMS}"
    )


@dataclass(frozen=True)
class _Token:
    kind: str  # MODIFIER, ESCAPED_CHAR, OPEN, CLOSE, NAME, PATTERN, CHAR, END
    index: int
    value: str


@dataclass(frozen=True)
class _Key:
    prefix: str
    suffix: str
    pattern: str  # "" for a brace group of text only
    modifier: str


def _lex(pattern: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, length = 0, len(pattern)
    while i < length:
        char = pattern[i]
        if char in "*+?":
            tokens.append(_Token("MODIFIER", i, char))
            i += 1
        elif char == "\\":
            if i + 1 >= length:
                raise _refuse(pattern, f"ends with a lone backslash at {i}")
            tokens.append(_Token("ESCAPED_CHAR", i, pattern[i + 1]))
            i += 2
        elif char in "{}":
            tokens.append(_Token("OPEN" if char == "{" else "CLOSE", i, char))
            i += 1
        elif char == ":":
            j = i + 1
            while j < length and (
                pattern[j].isascii() and (pattern[j].isalnum() or pattern[j] == "_")
            ):
                j += 1
            if j == i + 1:
                raise _refuse(pattern, f"has ':' without a parameter name at {i}")
            tokens.append(_Token("NAME", i, pattern[i + 1 : j]))
            i = j
        elif char == "(":
            i = _lex_group(pattern, i, tokens)
        else:
            tokens.append(_Token("CHAR", i, char))
            i += 1
    tokens.append(_Token("END", i, ""))
    return tokens


def _lex_group(pattern: str, start: int, tokens: list[_Token]) -> int:
    """Lex a ``(regex)`` group; return the index after its closing parenthesis."""
    depth, j, body = 1, start + 1, []
    if pattern[j : j + 1] == "?":
        raise _refuse(pattern, f"has a group starting with '?' at {j}: wrap it, /((?!x).*)")
    while j < len(pattern):
        char = pattern[j]
        if char == "\\":
            body.append(pattern[j : j + 2])
            j += 2
            continue
        if char == ")":
            depth -= 1
            if depth == 0:
                j += 1
                break
        elif char == "(":
            depth += 1
            if pattern[j + 1 : j + 2] != "?":
                raise _refuse(pattern, f"has a capturing group at {j}: use (?:...)")
        body.append(char)
        j += 1
    if depth:
        raise _refuse(pattern, f"has unbalanced parentheses at {start}")
    if not body:
        raise _refuse(pattern, f"has an empty group at {start}")
    tokens.append(_Token("PATTERN", start, "".join(body)))
    return j


def _parse(pattern: str) -> list[str | _Key]:
    tokens = _lex(pattern)
    result: list[str | _Key] = []
    position, text = 0, ""

    def take(kind: str) -> str | None:
        nonlocal position
        if tokens[position].kind == kind:
            position += 1
            return tokens[position - 1].value
        return None

    def take_text() -> str:
        taken = ""
        while (value := take("CHAR") or take("ESCAPED_CHAR")) is not None:
            taken += value
        return taken

    while position < len(tokens):
        char, name, regex = take("CHAR"), take("NAME"), take("PATTERN")
        if name is not None or regex is not None:
            prefix = char or ""
            if prefix not in _PREFIXES:
                text, prefix = text + prefix, ""
            if text:
                result.append(text)
                text = ""
            result.append(_Key(prefix, "", regex or _SEGMENT, take("MODIFIER") or ""))
            continue
        value = char if char is not None else take("ESCAPED_CHAR")
        if value is not None:
            if char is not None and value in "[])":
                raise _refuse(pattern, _stray(value, tokens[position - 1].index))
            text += value
            continue
        if text:
            result.append(text)
            text = ""
        if take("OPEN") is not None:
            prefix, name, regex = take_text(), take("NAME"), take("PATTERN")
            suffix = take_text()
            if take("CLOSE") is None:
                raise _refuse(pattern, _unexpected(tokens[position], "'}'"))
            body = regex or (_SEGMENT if name else "")
            result.append(_Key(prefix, suffix, body, take("MODIFIER") or ""))
            continue
        if take("END") is None:
            raise _refuse(pattern, _unexpected(tokens[position], "the end"))
    return result


def _stray(char: str, index: int) -> str:
    if char == ")":
        return f"has unbalanced parentheses at {index}"
    # Next.js takes it literally; it is always the page-file syntax mistyped.
    return f"has {char!r} at {index} (page-file syntax [id] / [...slug]: write :id / :slug*)"


def _unexpected(token: _Token, expected: str) -> str:
    if token.kind == "MODIFIER":
        return (
            f"has a stray {token.value!r} at {token.index} (a modifier follows a :name or a group)"
        )
    shown = "the end" if token.kind == "END" else repr(token.value)
    return f"has {shown} at {token.index} where {expected} was expected"


def _check_anchors(pattern: str, regex: str) -> None:
    """Refuse ``^`` and ``\\A`` in a group: a group never starts the path, so they never match."""
    i, in_class = 0, False
    while i < len(regex):
        char = regex[i]
        if char == "\\":
            if regex[i + 1 : i + 2] == "A" and not in_class:
                break
            i += 2
            continue
        if in_class:
            in_class = char != "]" or regex[i - 1] == "["
        elif char == "[":
            in_class = True
            if regex[i + 1 : i + 2] == "^":
                i += 1
        elif char == "^":
            break
        i += 1
    else:
        return
    raise _refuse(pattern, f"anchors a group at the start ({regex!r}), which cannot match")


def pattern_source(pattern: str) -> tuple[str, str]:
    """The regex source of one pattern and the literal text every match starts with."""
    if not pattern.startswith("/"):
        raise _refuse(pattern, "must start with '/'")
    tokens = _parse(pattern)
    # "/account/" protects "/account" too, and "//" in a pattern is one "/":
    # the readings of a path collapse slashes, so a pattern must not need them.
    last = tokens[-1]
    if isinstance(last, str) and last.endswith("/") and (len(tokens) > 1 or last.strip("/")):
        if last.rstrip("/"):
            tokens[-1] = last.rstrip("/")
        else:
            tokens.pop()
    parts = []
    for token in tokens:
        if isinstance(token, str):
            parts.append(re.escape(re.sub("/{2,}", "/", token)))
            continue
        _check_anchors(pattern, token.pattern)
        prefix, suffix = re.escape(token.prefix), re.escape(token.suffix)
        body = token.pattern
        if not body:
            parts.append(f"(?:{prefix}{suffix}){token.modifier}")
        elif not (prefix or suffix):
            parts.append(f"(?:{body}){token.modifier}")
        elif token.modifier in ("*", "+"):
            optional = "?" if token.modifier == "*" else ""
            repeated = f"(?:{prefix}(?:{body})(?:{suffix}{prefix}(?:{body}))*{suffix})"
            parts.append(repeated + optional)
        else:
            parts.append(f"(?:{prefix}(?:{body}){suffix}){token.modifier}")
    # Every match starts with the pattern's leading text: a startswith settles
    # most paths before the regex runs.
    literal = re.sub("/{2,}", "/", tokens[0]) if isinstance(tokens[0], str) else "/"
    source = "^" + "".join(parts) + _END
    try:
        re.compile(source, re.DOTALL)
    except re.error as error:
        raise _refuse(pattern, f"has an invalid regex: {error}") from None
    return source, literal


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile one matcher pattern, as Next.js's ``matcher`` reads it.

    ``/dashboard/:path*`` matches ``/dashboard`` and everything below it;
    ``:name`` is one segment, ``:name+`` one or more, ``:name?`` zero or one;
    ``:name(regex)`` and a bare ``(regex)`` constrain with a regex. Every
    character matches, newlines included, up to the true end of the path.

    :raises CrossmintConfigError: (a ``ValueError``) a pattern Next.js would
        refuse (``/account/*``, ``:path**``, a stray ``?``, ``+`` or ``:``,
        unbalanced parentheses, an invalid regex), or one that cannot match
        below its prefix; the message names the pattern and the accepted forms.
    """
    return re.compile(pattern_source(pattern)[0], re.DOTALL)
