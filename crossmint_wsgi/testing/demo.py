"""What the examples share: where their Crossmint comes from, their pages, and the demo sign-in.

An example app asks :func:`demo_crossmint` for its configuration:

1. ``CROSSMINT_EMULATOR_URL`` set: the emulator running there (tests and
   multi-worker servers start one emulator and point every worker at it);
2. ``SERVER_CROSSMINT_API_KEY`` set: the real Crossmint (with
   ``CROSSMINT_BASE_URL`` as an optional override);
3. neither: an emulator embedded in this process, started on a free port.

With an emulator, the sign-in page mints a one-time secret for a demo user
and posts it to the refresh route, exactly as Crossmint's browser SDK does
after a real login.

The examples' pages (:func:`home_page`, :func:`protected_page`), the JSON of
their ``/api/me`` (:func:`me_payload`) and the user emails they show
(:class:`UserEmails`) are here too, so each example is left with its
framework's wiring.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
from typing import TYPE_CHECKING

import httpx

from ..config import Crossmint, create_crossmint
from ..errors import CrossmintAuthError
from ..models import Session
from .emulator import CrossmintEmulator, connect_emulator

if TYPE_CHECKING:
    from ..auth import AsyncCrossmintAuth, CrossmintAuth

__all__ = [
    "DemoCrossmint",
    "UserEmails",
    "demo_crossmint",
    "home_page",
    "local_path",
    "login_page",
    "me_payload",
    "page",
    "protected_page",
]

DEMO_USER_ID = "demo-user"
DEMO_EMAIL = "demo@example.com"


@dataclasses.dataclass
class DemoCrossmint:
    """The configuration an example runs with, and the emulator behind it, if any.

    :param crossmint: the :class:`~crossmint_wsgi.Crossmint` config.
    :param emulator_url: the emulator's URL, or ``None`` on the real Crossmint.
    :param emulator: the embedded emulator, when this process runs one.
    """

    crossmint: Crossmint
    emulator_url: str | None
    emulator: CrossmintEmulator | None = None
    #: The process that runs ``emulator``: a forked worker holds a dead copy of it.
    emulator_pid: int = dataclasses.field(default_factory=os.getpid)

    def one_time_secret(self, user_id: str = DEMO_USER_ID, email: str = DEMO_EMAIL) -> str:
        """A login's one-time secret for a demo user, minted by the emulator.

        :raises RuntimeError: on the real Crossmint, where only a real login mints one.
        """
        if self.emulator is not None and self.emulator_pid == os.getpid():
            return self.emulator.one_time_secret(user_id, email=email)
        if self.emulator_url is None:
            raise RuntimeError("demo sign-in needs the Crossmint emulator")
        answer = httpx.post(
            f"{self.emulator_url}/_emulator/one-time-secrets",
            json={"user_id": user_id, "email": email},
            timeout=10,
        )
        answer.raise_for_status()
        return str(answer.json()["secret"])

    def describe(self) -> str:
        """Which Crossmint this is, for an example's start-up line; never the API key."""
        project = self.crossmint.project_id
        if self.emulator is not None:
            return f"embedded Crossmint emulator at {self.emulator_url} (project {project})"
        if self.emulator_url is not None:
            return f"Crossmint emulator at {self.emulator_url} (project {project})"
        where = f"{self.crossmint.environment.value} at {self.crossmint.base_url}"
        return f"Crossmint {where} (project {project})"


def demo_crossmint(*, jwt_ttl: int | None = None) -> DemoCrossmint:
    """The Crossmint an example uses, chosen from the environment (see the module doc).

    :param jwt_ttl: the embedded emulator's JWT lifetime; defaults to
        ``CROSSMINT_DEMO_JWT_TTL`` or 900 seconds.
    """
    url = os.environ.get("CROSSMINT_EMULATOR_URL")
    if url:
        return DemoCrossmint(connect_emulator(url), url.rstrip("/"))
    api_key = os.environ.get("SERVER_CROSSMINT_API_KEY")
    if api_key:
        crossmint = create_crossmint(api_key, base_url=os.environ.get("CROSSMINT_BASE_URL"))
        return DemoCrossmint(crossmint, None)
    ttl = jwt_ttl or int(os.environ.get("CROSSMINT_DEMO_JWT_TTL", "900"))
    emulator = CrossmintEmulator(jwt_ttl=ttl).start()
    return DemoCrossmint(emulator.crossmint(), emulator.url, emulator)


def page(title: str, body_html: str) -> str:
    """A small HTML page around ``body_html`` (already escaped by the caller)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.5rem 1rem}} code{{background:#eee;padding:0 .2rem}}</style>
</head><body><h1>{html.escape(title)}</h1>
{body_html}
<script>
async function crossmintLogout() {{
  await fetch("/logout", {{method: "POST", credentials: "same-origin"}});
  location.href = "/";
}}
</script>
</body></html>"""


def home_page(title: str, user_id: str | None) -> str:
    """The public page: who is signed in (``None``: nobody), and links to the rest."""
    if user_id is None:
        status = '<p>Not signed in. <a href="/login?next=/protected">Sign in</a></p>'
    else:
        status = f"<p>Signed in as <code>{html.escape(user_id)}</code></p>"
    links = '<p><a href="/protected">Protected page</a> · <a href="/api/me">/api/me</a></p>'
    return page(title, status + links)


def protected_page(user_id: str, email: str | None) -> str:
    """The protected page: who is signed in, and a logout button."""
    body = f"<p>Signed in as <code id='user-id'>{html.escape(user_id)}</code></p>"
    if email:
        body += f"<p>Email: <code id='email'>{html.escape(email)}</code></p>"
    body += '<button id="logout" onclick="crossmintLogout()">Log out</button>'
    return page("Protected", body)


def me_payload(user_id: str, email: str | None) -> dict[str, str | None]:
    """The JSON body of an example's ``/api/me``."""
    return {"user_id": user_id, "email": email}


class UserEmails:
    """Users' emails by user id, asked of Crossmint once per user.

    The JWT carries only the user id; the user record has the rest. When
    Crossmint cannot be reached the email is ``None`` (the page shows
    without it) and is asked for again next time.
    """

    def __init__(self) -> None:
        self._emails: dict[str, str | None] = {}

    def _known(self, session: Session) -> bool:
        if session.user is not None:
            self._emails[session.user_id] = session.user.email
        return session.user_id in self._emails

    def of(self, session: Session, auth: CrossmintAuth) -> str | None:
        """The email of ``session``'s user, when Crossmint knows one."""
        if not self._known(session):
            try:
                self._emails[session.user_id] = auth.get_user(session.user_id).email
            except CrossmintAuthError:
                return None
        return self._emails[session.user_id]

    async def of_async(self, session: Session, auth: AsyncCrossmintAuth) -> str | None:
        """:meth:`of` for the async client."""
        if not self._known(session):
            try:
                self._emails[session.user_id] = (await auth.get_user(session.user_id)).email
            except CrossmintAuthError:
                return None
        return self._emails[session.user_id]


def _js(text: str) -> str:
    """A JS string literal that is safe inside a <script> element."""
    return json.dumps(text).replace("<", "\\u003c").replace(">", "\\u003e")


# What a browser's URL parser drops before reading a URL: C0 controls and
# spaces at either end, and tab, CR and LF anywhere (WHATWG URL, "basic URL parser").
_URL_EDGES = "".join(map(chr, range(0x21)))
_URL_DROPPED = str.maketrans("", "", "\t\n\r")


def local_path(target: str, default: str = "/") -> str:
    """``target`` as a browser reads it, if that is a path on this origin, else ``default``.

    A browser strips tab, CR and LF from a URL and reads ``\\`` as ``/``, so
    ``"/\\t/evil.com"`` and ``"/\\evil.com"`` both mean ``//evil.com``: another
    host. The check is made on that reading, and the reading is what is
    returned, so the browser goes exactly where the check looked.
    """
    read = target.strip(_URL_EDGES).translate(_URL_DROPPED)
    # "\\" is a "/" up to the query or fragment, and kept as itself after.
    path = read.partition("?")[0].partition("#")[0]
    read = path.replace("\\", "/") + read[len(path) :]
    # A path-absolute URL: one "/" then no second; "//" would name a host.
    if not read.startswith("/") or read.startswith("//"):
        return default
    return read


def login_page(
    next_path: str = "/",
    *,
    secret_url: str = "/demo/one-time-secret",  # noqa: S107 - a path, not a secret
) -> str:
    """The demo sign-in page.

    Its button fetches a one-time secret from ``secret_url`` (an app route
    that calls :meth:`DemoCrossmint.one_time_secret`), posts it to
    ``/refresh`` as the browser SDK does after a login, then goes to
    ``next_path`` (only a path on this origin, as the browser reads it: see
    :func:`local_path`; anything else goes to ``/``).
    """
    next_path = local_path(next_path)
    script = f"""<p>This demo signs you in as <code>{DEMO_EMAIL}</code> through the local
Crossmint emulator, by the same path a real login takes.</p>
<button id="demo-sign-in" onclick="signIn()">Sign in as a demo user</button>
<p id="status" role="status"></p>
<script>
async function signIn() {{
  const status = document.getElementById("status");
  status.textContent = "Signing in...";
  const minted = await fetch({_js(secret_url)}, {{method: "POST"}});
  const {{secret}} = await minted.json();
  const answer = await fetch("/refresh", {{
    method: "POST", credentials: "same-origin",
    headers: {{"Content-Type": "application/json"}},
    body: JSON.stringify({{refresh: secret}}),
  }});
  const data = await answer.json();
  if (!answer.ok) {{ status.textContent = "Sign-in failed: " + data.message; return; }}
  location.href = {_js(next_path)};
}}
</script>"""
    return page("Sign in", script)
