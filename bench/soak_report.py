"""The soak's figures of one server, as printed, and the verdict."""

from __future__ import annotations

from soak_servers import INJECTED, ServerResult


def report(result: ServerResult) -> str:
    """The figures of one server, as printed."""
    growth = result.rss_growth
    lines = [
        f"== {result.name}: {result.users} users, {result.seconds:.0f} s",
        f"requests            {result.requests}  ({result.throughput:.0f}/s,"
        f" {result.throughput / result.baseline:.2f} x the anonymous baseline"
        f" of {result.baseline:.0f}/s)",
        f"latency             p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms",
        f"answers OK          {result.ok}",
        f"injected 503s seen  {result.injected}  (from {INJECTED} failed refresh calls)",
        f"unexpected errors   {sum(result.errors.values())}  {result.errors or ''}",
        f"cross-talk          {result.cross_talk}  ({result.cookies_checked} new JWT cookies"
        " checked against their request's user)",
        f"logins through /refresh  {result.logins}",
        f"transport retries   {result.transport_retries}  (kept-alive connection closed on reuse)",
        *(f"  e.g. {sample}" for sample in result.error_samples[:5]),
        f"RSS growth          {growth:+.1%} (largest process, end vs after warm-up;"
        f" target < 10 %): "
        + ", ".join(
            f"{pid}: {result.rss_warm_kb[pid] // 1024}->{result.rss_end_kb.get(pid, 0) // 1024} MiB"
            for pid in result.rss_warm_kb
        ),
        "caches (entries, KiB/budget, evictions)  "
        + "; ".join(
            f"{cache['type']}@{cache['pid']} {cache['entries']}"
            # Crossmint's keys have no byte budget: their entries say it all.
            + (
                f", {cache['bytes'] // 1024}/{cache['budget'] // 1024}, {cache['evictions']}"
                if cache["budget"]
                else ""
            )
            for cache in result.caches
        ),
        f"Crossmint calls     {result.crossmint_calls}",
    ]
    if result.redis is not None:
        lines.append(
            f"redis               {result.redis['keys']} keys, "
            f"{result.redis['used_memory'] // 1024} KiB"
        )
    return "\n".join(lines)


def failed(results: list[ServerResult]) -> list[str]:
    """The servers whose run failed: an unexpected error, RSS growth of 10 % or more, no load."""
    return [
        r.name for r in results if r.unexpected_errors or not r.rss_growth < 0.10 or r.requests == 0
    ]
