"""Run the reliability matrices and a short soak, and write ``docs/RELIABILITY.md``.

Run: ``.venv/bin/python bench/reliability_report.py [--soak-seconds 20] [--soak-users 200]
[--no-soak] [--output docs/RELIABILITY.md]``

The matrices are the tests' own tables (``tests/reliability_cases.py``): every
fault of Crossmint's through both middlewares (WSGI; ASGI on asyncio and on
trio), every bad input, every hostile token; plus key rotation under
threads, many threads against a Crossmint slower than the timeout, and the
probes of the key-set cache's bookkeeping. Then ``bench/soak.py`` runs the
Flask example under gunicorn (4 workers, Redis) and the raw ASGI example
under uvicorn for ``--soak-seconds`` each. The document lists every case, the
outcome observed and whether it is the expected one, and the load figures.
Exit status 1 when a case failed or the soak saw an unexpected error.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import reliability_cases as rc  # noqa: E402
import soak  # noqa: E402
from soak_app import cache_budget  # noqa: E402

from crossmint_wsgi import CrossmintAuthError  # noqa: E402
from crossmint_wsgi.caches import DEFAULT_BUDGET  # noqa: E402
from crossmint_wsgi.testing import CrossmintEmulator  # noqa: E402
from crossmint_wsgi.tokens import TokenInvalid  # noqa: E402

PASS, FAIL = "pass", "**FAIL**"


def cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(cell(value) for value in row) + " |" for row in rows)
    return "\n".join(lines)


def seen(reply: rc.Reply | None, problems: list[str], *, timed: bool = False) -> str:
    """The outcome observed, in a few words; what went wrong when it is not the expected one."""
    if reply is None:
        return "; ".join(problems)
    text = reply.summary()
    if reply.app_ran and reply.code:
        text = f"{reply.status}, app told {reply.code}"
    cookies = reply.auth_cookies
    if cookies:
        text += ", cleared" if set(cookies.values()) == {""} else ", new cookies"
    if reply.app_ran and reply.user:
        text += f", user {reply.user}"
    if timed:
        text += f", {reply.seconds:.2f} s"
    if problems:
        text += " — " + "; ".join(problems)
    return text


class Tally:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def mark(self, ok: bool, what: str) -> str:
        if ok:
            self.passed += 1
            return PASS
        self.failed.append(what)
        return FAIL


# -- the matrices -------------------------------------------------------------------------


def fault_section(emulator: CrossmintEmulator, tally: Tally) -> str:
    rows = []
    for case in rc.FAULT_CASES:
        wsgi = rc.run_fault_case_wsgi(emulator, case)
        asyncio_run = anyio.run(rc.run_fault_case_asgi, emulator, case, backend="asyncio")
        trio_run = anyio.run(rc.run_fault_case_asgi, emulator, case, backend="trio")
        for index, (w, a, t) in enumerate(zip(wsgi, asyncio_run, trio_run, strict=True)):
            timed = w.expect.within is not None
            ok = w.ok and a.ok and t.ok
            rows.append(
                [
                    f"`{case.id}`" if index == 0 else "",
                    case.what if index == 0 else "",
                    w.label,
                    w.request,
                    w.expect.describe(),
                    seen(w.reply, w.problems, timed=timed),
                    seen(a.reply, a.problems, timed=timed),
                    seen(t.reply, t.problems, timed=timed),
                    tally.mark(ok, f"fault {case.id} {w.label}"),
                ]
            )
    return table(
        [
            "case",
            "Crossmint's fault",
            "step",
            "request",
            "expected",
            "WSGI",
            "ASGI (asyncio)",
            "ASGI (trio)",
            "",
        ],
        rows,
    )


def _threads_against_slow_crossmint(emulator: CrossmintEmulator) -> tuple[int, int, float]:
    """12 threads (6 sharing a session) while Crossmint is slower than the timeout."""
    emulator.reset()
    with rc.make_auth(emulator.crossmint(), leeway=0, timeout=rc.TIMEOUT) as auth:
        app = rc.wsgi_stack(auth)
        rc.call_wsgi(app, rc.Req(cookie=rc.cookie_header(emulator.issue_jwt("warm"))))
        shared = emulator.create_session("shared", jwt_ttl=-60)
        requests = [rc.Req(path=rc.PROTECTED, cookie=rc.material_cookie(shared))] * 6
        requests += [
            rc.Req(
                path=rc.PROTECTED,
                cookie=rc.material_cookie(emulator.create_session(f"u{i}", jwt_ttl=-60)),
            )
            for i in range(6)
        ]
        emulator.set_latency(rc.SLOW)
        replies: list[rc.Reply] = []
        threads = [
            threading.Thread(target=lambda req=req: replies.append(rc.call_wsgi(app, req)))
            for req in requests
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        elapsed = time.monotonic() - started
    emulator.reset()
    expect = rc.Expect(503, "UPSTREAM_UNAVAILABLE", app=False, within=rc.BOUND)
    good = sum(1 for reply in replies if not rc.problems_with(reply, expect))
    return good, len(requests), elapsed


def concurrency_section(emulator: CrossmintEmulator, tally: Tally) -> str:
    rows = []
    emulator.reset()
    rotation = rc.rotation_under_traffic(emulator, threads=8, seconds_before=0.5, seconds_after=1.0)
    ok = rotation.failures == 0 and rotation.new_kid_verified > 0 and rotation.key_set_fetches <= 3
    rows.append(
        [
            "key rotation while 8 threads verify fresh JWTs (default settings)",
            "0 failures; new kid picked up; key set fetched at most 3 times",
            f"{rotation.verifications} verifications, {rotation.failures} failures"
            + (f" {rotation.failure_codes}" if rotation.failure_codes else "")
            + f", {rotation.new_kid_verified} with the new kid,"
            f" {rotation.key_set_fetches} key-set fetches",
            tally.mark(ok, "rotation under traffic"),
        ]
    )
    good, total, elapsed = _threads_against_slow_crossmint(emulator)
    rows.append(
        [
            f"12 threads (6 sharing one session), Crossmint answering after {rc.SLOW:g} s,"
            f" timeout {rc.TIMEOUT:g} s",
            f"all 503 UPSTREAM_UNAVAILABLE, cookies kept, all done < {rc.BOUND:g} s",
            f"{good}/{total} as expected, all done in {elapsed:.2f} s",
            tally.mark(good == total and elapsed < rc.BOUND, "threads against slow Crossmint"),
        ]
    )
    emulator.reset()
    fetches = anyio.run(rc.key_fetches_after_a_cancelled_fetch, emulator, 10, backend="asyncio")
    rows.append(
        [
            "a request cancelled mid key-set fetch, then 10 tokens with unknown kids",
            "the kid-miss rate limit holds: at most 1 key-set fetch",
            f"{fetches} key-set fetch{'' if fetches == 1 else 'es'}",
            tally.mark(fetches <= 1, "cancelled key-set fetch"),
        ]
    )
    emulator.reset()
    outcome = rc.new_kid_checked_while_keys_install(emulator)
    described = (
        "INVALID_TOKEN"
        if isinstance(outcome, TokenInvalid)
        else "verified"
        if isinstance(outcome, dict)
        else f"joins the fetch ({type(outcome).__name__})"
    )
    rows.append(
        [
            "a new-kid token checked at the instant another request stores the new keys",
            "verified, or waits for the fetch; never INVALID_TOKEN",
            described,
            tally.mark(
                outcome is not None and not isinstance(outcome, TokenInvalid),
                "kid miss during store",
            ),
        ]
    )
    emulator.reset()
    return table(["scenario", "expected", "observed", ""], rows)


def bad_input_section(emulator: CrossmintEmulator, tally: Tally) -> str:
    async def asgi_replies() -> list[rc.Reply]:
        replies = []
        for row in rc.BAD_INPUT_ROWS:
            async with rc.make_async_auth(emulator.crossmint(), leeway=0) as auth:
                replies.append(await rc.call_asgi(rc.asgi_stack(auth), row.build(emulator)))
        return replies

    emulator.reset()
    on_asyncio = anyio.run(asgi_replies, backend="asyncio")
    on_trio = anyio.run(asgi_replies, backend="trio")
    rows = []
    for row, a_reply, t_reply in zip(rc.BAD_INPUT_ROWS, on_asyncio, on_trio, strict=True):
        with rc.make_auth(emulator.crossmint(), leeway=0) as auth:
            req = row.build(emulator)
            w_reply = rc.call_wsgi(rc.wsgi_stack(auth), req)
        w_problems = rc.problems_with(w_reply, row.expect, row.user)
        a_problems = rc.problems_with(a_reply, row.expect, row.user)
        t_problems = rc.problems_with(t_reply, row.expect, row.user)
        ok = not (w_problems or a_problems or t_problems)
        rows.append(
            [
                row.group,
                f"`{row.name}`",
                req.describe(),
                row.expect.describe(),
                seen(w_reply, w_problems),
                seen(a_reply, a_problems),
                seen(t_reply, t_problems),
                tally.mark(ok, f"bad input {row.id}"),
            ]
        )
    emulator.reset()
    return table(
        ["input", "case", "request", "expected", "WSGI", "ASGI (asyncio)", "ASGI (trio)", ""], rows
    )


def hostile_section(emulator: CrossmintEmulator, tally: Tally) -> str:
    async def asgi_reply(token: str) -> rc.Reply:
        async with (
            rc.make_async_auth(emulator.crossmint(), leeway=0) as auth,
            rc.no_cookie_client(rc.asgi_stack(auth)) as client,
        ):
            return await rc.call_httpx(
                client, rc.Req(path=rc.PROTECTED, cookie=rc.cookie_header(token))
            )

    emulator.reset()
    rows = []
    for hostile in rc.HOSTILE_TOKENS:
        token = hostile.make(emulator)
        with rc.make_auth(emulator.crossmint(), leeway=0) as auth:
            try:
                auth.get_session(jwt=token)
                api = "a session"
            except CrossmintAuthError as error:
                api = error.code.value
        refused = rc.Expect(401, hostile.code, app=False, cookies=rc.CLEARED)
        public = rc.Expect(200, hostile.code, app=True, user=False, cookies=rc.CLEARED)
        with rc.make_auth(emulator.crossmint(), leeway=0) as auth:
            w_protected = rc.call_wsgi(
                rc.wsgi_stack(auth), rc.Req(path=rc.PROTECTED, cookie=rc.cookie_header(token))
            )
        with rc.make_auth(emulator.crossmint(), leeway=0) as auth:
            w_public = rc.call_wsgi(
                rc.wsgi_stack(auth), rc.Req(path=rc.PUBLIC, cookie=rc.cookie_header(token))
            )
        a_protected = anyio.run(asgi_reply, token, backend="asyncio")
        owner = emulator.create_session(rc.OWNER)
        with rc.make_auth(emulator.crossmint(), leeway=0) as auth:
            rescued = rc.call_wsgi(
                rc.wsgi_stack(auth),
                rc.Req(
                    path=rc.PROTECTED, cookie=rc.cookie_header(token, owner.refresh_token.secret)
                ),
            )
        rescue = rc.Expect(200, None, app=True, user=True, cookies=rc.NEW_SESSION)
        problems = [
            rc.problems_with(w_protected, refused),
            rc.problems_with(w_public, public),
            rc.problems_with(a_protected, refused),
            rc.problems_with(rescued, rescue, rc.OWNER),
        ]
        ok = api == hostile.code and not any(problems)
        rows.append(
            [
                f"`{hostile.id}`",
                hostile.note,
                hostile.code,
                api,
                seen(w_protected, problems[0]),
                seen(w_public, problems[1]),
                seen(a_protected, problems[2]),
                seen(rescued, problems[3]),
                tally.mark(ok, f"hostile {hostile.id}"),
            ]
        )
    emulator.reset()
    return table(
        [
            "token",
            "",
            "expected",
            "get_session",
            "WSGI protected",
            "WSGI public",
            "ASGI protected",
            "with the owner's refresh cookie",
            "",
        ],
        rows,
    )


# -- the soak -----------------------------------------------------------------------------


#: The security checks that run real routers, servers and Redis: each test file, what it holds.
SECURITY_FILES = {
    "tests/test_router_differential.py": "protected views are never reached without a session,"
    " judged by each framework's real router (Flask, Bottle, Django, Starlette, FastAPI, Quart),"
    " in process and through gunicorn, uvicorn and hypercorn, with mounts and root paths",
    "tests/test_paths.py": "every reading of a path (raw, decoded, dot-resolved) and mistyped"
    " patterns refused",
    "tests/test_logout_servers.py": "a logout ends every secret of the session on every worker"
    " (uvicorn, hypercorn-trio, gunicorn with Redis)",
    "tests/test_revocations.py": "a logged-out JWT is refused at once here and within a second"
    " in every process sharing Redis",
    "tests/test_limits.py": "floods of made-up refresh secrets cost at most 20 Crossmint calls"
    " per address and worker; refresh calls in flight are capped; junk cookies cannot grow memory",
    "tests/test_caches.py": "every cache bounded by bytes and entries",
}


def security_section(tally: Tally) -> str:
    """Run the security test files with pytest; one row a test, its outcome."""
    import subprocess
    import tempfile
    import xml.etree.ElementTree as ElementTree

    rows: list[list[object]] = []
    for path, what in SECURITY_FILES.items():
        with tempfile.TemporaryDirectory() as directory:
            report = Path(directory) / "report.xml"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    f"--junitxml={report}",
                    path,
                ],
                cwd=ROOT,
                capture_output=True,
                check=False,
            )
            cases = ElementTree.parse(report).getroot().iter("testcase")
            outcomes = [
                (
                    case.get("name", "?"),
                    not any(child.tag in ("failure", "error") for child in case),
                )
                for case in cases
            ]
        passed = sum(ok for _, ok in outcomes)
        failed = [name for name, ok in outcomes if not ok]
        mark = tally.mark(bool(outcomes) and not failed, path)
        for name in failed:
            tally.failed.append(f"{path}::{name}")
        rows.append([f"`{path}`", what, f"{passed} of {len(outcomes)}", mark])
    return table(["tests", "what they hold", "passed", ""], rows)


def soak_section(results: list[soak.ServerResult]) -> str:
    def caches(result: soak.ServerResult) -> str:
        # Per cache, over the processes: the most entries and bytes one held, its
        # budget, and the evictions of all of them.
        by_name: dict[str, list[dict[str, Any]]] = {}
        for cache in result.caches:
            by_name.setdefault(cache["type"], []).append(cache)
        parts = []
        for name, found in sorted(by_name.items()):
            entries = max(cache["entries"] for cache in found)
            budget = max(cache["budget"] for cache in found)
            if not budget:  # Crossmint's keys: a handful, no byte budget
                parts.append(f"{name} {entries}")
                continue
            kib = max(cache["bytes"] for cache in found) // 1024
            evictions = sum(cache["evictions"] for cache in found)
            parts.append(f"{name} {entries}, {kib}/{budget // 1024} KiB, {evictions} evicted")
        return "; ".join(parts)

    def rss(result: soak.ServerResult) -> str:
        warm = sum(result.rss_warm_kb.values()) // 1024
        end = sum(result.rss_end_kb.values()) // 1024
        processes = len(result.rss_warm_kb)
        return (
            f"{warm} → {end} MiB over {processes} process(es);"
            f" largest growth {result.rss_growth:+.1%}"
        )

    def describe(result: soak.ServerResult) -> str:
        return (
            "Flask example, gunicorn, 4 workers, Redis coordinator"
            if result.name == "gunicorn"
            else "raw ASGI example, uvicorn, 1 process"
        )

    figures: list[tuple[str, Callable[[soak.ServerResult], object]]] = [
        ("server", describe),
        ("users at once", lambda r: r.users),
        ("seconds", lambda r: f"{r.seconds:.0f}"),
        ("requests", lambda r: r.requests),
        (
            "throughput vs anonymous baseline",
            lambda r: (
                f"{r.throughput:.0f}/s vs {r.baseline:.0f}/s = {r.throughput / r.baseline:.2f}"
            ),
        ),
        ("latency p50 / p99", lambda r: f"{r.p50_ms:.0f} ms / {r.p99_ms:.0f} ms"),
        ("answers OK", lambda r: r.ok),
        (
            "503 from the injected faults",
            lambda r: f"{r.injected} (from {soak.INJECTED} failed refresh calls)",
        ),
        ("unexpected errors", lambda r: f"{sum(r.errors.values())} {r.errors or ''}"),
        ("transport retries (keep-alive race)", lambda r: r.transport_retries),
        ("cross-talk", lambda r: f"{r.cross_talk} in {r.cookies_checked} new JWT cookies checked"),
        ("logins through /refresh", lambda r: r.logins),
        ("Crossmint calls", lambda r: ", ".join(f"{k} {v}" for k, v in r.crossmint_calls.items())),
        ("RSS after warm-up → end", rss),
        ("caches: largest entries, KiB / budget, evictions", caches),
        (
            "Redis",
            lambda r: (
                f"{r.redis['keys']} keys, {r.redis['used_memory'] // 1024} KiB"
                if r.redis
                else "not used"
            ),
        ),
        (
            "verdict",
            lambda r: (
                PASS if not r.unexpected_errors and r.rss_growth < 0.10 and r.requests else FAIL
            ),
        ),
    ]
    header = ["figure", *(result.name for result in results)]
    return table(header, [[name, *(value(r) for r in results)] for name, value in figures])


# -- the document -------------------------------------------------------------------------

REGRESSIONS = """\
Defects these matrices caught while they were written, each fixed in the library and
kept as a case above:

- A path without its leading slash (`GET protected HTTP/1.1`, which werkzeug's dev server
  and hypercorn pass on as is, and which werkzeug's router serves as `/protected`) dodged
  `protect` (`method-protected-without-leading-slash`).
- A request cancelled during the key-set fetch left the fetch counted as under way for
  good: from then on every token with an unknown `kid` refetched the key set, the rate
  limit gone (cancelled key-set fetch, above).
- A token with a new `kid` checked while another request was installing the freshly
  fetched keys was `INVALID_TOKEN` (new-kid race, above).
- The key set fetched at start-up spent the kid-miss refetch budget: tokens signed with a
  key rotated in during the next 30 s were `INVALID_TOKEN` (key rotation rows).
- Crossmint answering 408 or 429 to a refresh logged the user out (`refresh-rate-limited-429`,
  `refresh-timeout-408`).
- A refresh answer with a `jwt` that is not a JWT was cached as good material for the grace
  window (503 for that user for 30 s), and through the refresh route it set a bogus JWT
  cookie and a bogus refresh secret (`refresh-answer-a-non-jwt`,
  `refresh-route-answer-a-non-jwt`).
"""


class Budget(NamedTuple):
    """How an auth shares its ``cache_budget`` out, and the budget the soak sets."""

    shares: dict[str, Fraction]
    soak: int


def budget(emulator: CrossmintEmulator) -> Budget:
    """The library's split of the cache budget, read from a real auth."""
    probe = 2**20
    with rc.make_auth(emulator.crossmint(), cache_budget=probe) as auth:
        core = auth.core
        shares = {
            "sessions": Fraction(core.session_budget, probe),
            "tokens": Fraction(core.token_budget, probe),
            "refreshes": Fraction(core.refresh_budget, probe),
        }
    return Budget(shares, cache_budget(emulator.crossmint(), soak.CACHE_BOUND))


def document(
    sections: dict[str, str],
    tally: Tally,
    soak_text: str | None,
    budget: Budget,
    args: Any,
) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    total = tally.passed + len(tally.failed)
    lines = [
        "# Reliability and security: what was tried, what happened",
        "",
        "Generated by `bench/reliability_report.py` (do not edit by hand: run it again)."
        f" Last run {now}, Python {platform.python_version()}, {platform.system()}"
        f" {platform.machine()}, {os.cpu_count()} CPUs.",
        "",
        f"**{tally.passed} of {total} checks passed**"
        + (f"; failed: {', '.join(tally.failed)}." if tally.failed else "."),
        "",
        "Every case runs the real middlewares in front of a probe app that raises if it is ever"
        " handed a half-decided session (a session and an error at once, a session whose user is"
        " not its JWT's `sub`) or reached on a protected path without a session; Crossmint is the"
        " emulator on loopback with its fault controls. Each reply is also held to what holds for"
        " all: never a 5xx other than 503, never a traceback, a 503 always with `Retry-After` and"
        " without touching the auth cookies, every middleware answer JSON with a known error code,"
        " the app's own cookies kept. The tests assert the same tables"
        " (`tests/test_faults.py`, `tests/test_bad_input.py`, `tests/test_hostile_tokens.py`;"
        " `tests/test_no_secrets_in_logs.py` checks that no secret reaches a log line).",
        "",
        f"Outcomes read `status code`; *cleared* / *new cookies* say what happened to the auth"
        f" cookies (nothing said: untouched); times are shown where the request had to finish"
        f" within the auth timeout ({rc.TIMEOUT:g} s) plus {rc.MARGIN:g} s, far below the"
        f" injected latency ({rc.SLOW:g} s).",
        "",
        "## Faults of Crossmint's",
        "",
        sections["faults"],
        "",
        "## Concurrency, key rotation, the key-set cache",
        "",
        sections["concurrency"],
        "",
        "## Hostile tokens",
        "",
        "Each token as the `crossmint-jwt` cookie. Alone it must earn its code and the cookies"
        " that carried it are cleared. With the genuine refresh cookie of another user"
        f" (`{rc.OWNER}`) alongside, the JWT is simply replaced: the request gets that owner's"
        " refreshed session and new cookies, never the user the hostile token names. That is the"
        " correct behaviour: the refresh secret is the credential, the JWT a cache of it.",
        "",
        sections["hostile"],
        "",
        "## Bad input",
        "",
        "Requests handed to the middlewares with exactly these bytes (a WSGI environ, an ASGI"
        " scope): no HTTP client in between normalizes them. The tests add hypothesis properties"
        " over arbitrary Cookie bytes, bodies, methods and raw paths.",
        "",
        sections["bad input"],
        "",
        "## Security round 2",
        "",
        "The checks of the second security review, run from their test files (real routers,"
        " real servers, a real redis-server); each row counts that file's test cases.",
        "",
        sections["security"],
        "",
        "## Load and soak",
        "",
    ]
    shares = budget.shares
    if soak_text is None:
        lines.append("Not run this time (`--no-soak`).")
    else:
        lines += [
            f"`bench/soak.py` for {args.soak_seconds:g} s per server (the full run is"
            " `python bench/soak.py`, 60 s per server), on this machine, load generator"
            f" included: {args.soak_users} distinct users at once, each with its own session;"
            " the emulator in its own process with JWTs living 4 s and single-use refresh tokens;"
            " one key rotation midway; 5 refresh calls failing with 503 at 70 %. Every answer's"
            " new JWT cookie is decoded and its `sub` compared with the user whose request it"
            " answers, and every `/api/me` answer's user id likewise. The caches' bounds are"
            " lowered through the auth's public settings so that they fill up during the run:"
            f" `token_cache_size={soak.CACHE_BOUND}` and"
            f" `cache_budget={budget.soak}` ({budget.soak / 2**20:.1f} MiB, sized so that its"
            f" shares hold {soak.CACHE_BOUND} sessions and {soak.CACHE_BOUND} tokens; the default"
            f" is {DEFAULT_BUDGET // 2**20} MiB), which the auth shares out as by default:"
            f" {shares['sessions']} to the middleware's recent sessions (two entries a session:"
            " its exact `Cookie` header and the digest of its auth cookies),"
            f" {shares['tokens']} to verified tokens, {shares['refreshes']} to refresh results"
            " (the budgets in the caches row); under gunicorn the Redis coordinator's per-process"
            f" refresh results are bounded to {soak.CACHE_BOUND} entries (`max_entries`)."
            " The cache figures are each cache's largest entries and bytes in one process, its"
            " budget, and its evictions summed over the processes. RSS is sampled after a"
            " quarter of the run (warm-up) and at the end. Throughput is the ratio against"
            " anonymous requests to the same server in the same run; absolute figures depend on"
            " the machine, which also runs the load generator and the emulator.",
            "",
            soak_text,
        ]
    lines += ["", "## Regressions guarded", "", REGRESSIONS]
    return "\n".join(lines)


#: The section ``bench/continuity.py --write`` keeps up to date: this report keeps it as it was.
CONTINUITY = ("<!-- continuity:start -->", "<!-- continuity:end -->")


def keep_continuity(old: str, new: str) -> str:
    """``new`` with the continuity section of ``old`` (if any) put back before its first ``##``."""
    start, end = CONTINUITY
    if start not in old or end not in old.split(start, 1)[1]:
        return new
    section = start + old.split(start, 1)[1].split(end, 1)[0] + end
    at = new.find("\n## ")
    at = len(new) if at < 0 else at + 1
    return new[:at] + section + "\n\n" + new[at:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--soak-seconds", type=float, default=20.0)
    parser.add_argument("--soak-users", type=int, default=200)
    parser.add_argument("--no-soak", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "RELIABILITY.md")
    args = parser.parse_args(argv)
    # The faults make the library log warnings by design; the tables say what happened.
    logging.getLogger().addHandler(logging.NullHandler())
    tally = Tally()
    sections = {}
    with CrossmintEmulator() as emulator:
        for name, build in (
            ("faults", fault_section),
            ("concurrency", concurrency_section),
            ("hostile", hostile_section),
            ("bad input", bad_input_section),
        ):
            print(f"running: {name}", flush=True)
            sections[name] = build(emulator, tally)
        split = budget(emulator)
    print("running: security", flush=True)
    sections["security"] = security_section(tally)
    soak_text = None
    soak_failed = False
    if not args.no_soak:
        results = soak.soak(seconds=args.soak_seconds, users=args.soak_users)
        for result in results:
            print(soak.report(result))
        soak_text = soak_section(results)
        soak_failed = any(r.unexpected_errors or not r.rss_growth < 0.10 for r in results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    text = document(sections, tally, soak_text, split, args) + "\n"
    if args.output.exists():
        text = keep_continuity(args.output.read_text(), text)
    args.output.write_text(text)
    print(f"{tally.passed} passed, {len(tally.failed)} failed; wrote {args.output}")
    for failure in tally.failed:
        print(f"  FAILED {failure}")
    return 1 if tally.failed or soak_failed else 0


if __name__ == "__main__":
    sys.exit(main())
