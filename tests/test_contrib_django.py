"""crossmint_wsgi.contrib.django in process, against the real emulator, through Django's own
test ``Client`` (the middleware runs sync) and ``AsyncClient`` (it runs async).

Django's async support is asyncio only, so the async tests run on asyncio. This module is
its own URLconf. The example project under gunicorn and uvicorn is in
``test_examples_frameworks.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import django
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View
from test_asgi import EMAIL, USER, cookies_for
from test_readme import _snippet as snippet

from crossmint_wsgi import AsyncCrossmintAuth, CrossmintAuth, Session
from crossmint_wsgi.contrib.django import get_session, require_session
from crossmint_wsgi.testing import CrossmintEmulator

#: What these tests need, whichever test module configured Django first.
DJANGO_SETTINGS = {
    "ALLOWED_HOSTS": ["testserver"],
    "MIDDLEWARE": ["crossmint_wsgi.contrib.django.CrossmintMiddleware"],
    "ROOT_URLCONF": __name__,
}

if not settings.configured:
    settings.configure(
        INSTALLED_APPS=[],
        # Leave logging and warnings as pytest set them up.
        LOGGING_CONFIG=None,
        SECRET_KEY="django-insecure-tests-only",
        USE_TZ=True,
        **DJANGO_SETTINGS,
    )
    django.setup()

JWT, REFRESH = "crossmint-jwt", "crossmint-refresh-token"
BAD_KEY = "sk_production_5dKnot-a-real-key"

# -- the URLconf ----------------------------------------------------------------------------------


def payload(session: Session, **extra: Any) -> dict[str, Any]:
    return {"user_id": session.user_id, "refreshed": session.refreshed, **extra}


@require_session
def me_sync(request: HttpRequest, session: Session) -> HttpResponse:
    return JsonResponse(payload(session, view="sync"))


@require_session
async def me_async(request: HttpRequest, session: Session) -> HttpResponse:
    return JsonResponse(payload(session, view="async"))


@require_session
def me_plain(request: HttpRequest, name: str) -> HttpResponse:
    # No `session` parameter: the view reads it itself; URL arguments pass through.
    return JsonResponse({"name": name, "user_id": request.crossmint_session.user_id})  # type: ignore[attr-defined]


class MeView(View):
    @method_decorator(require_session)
    def get(self, request: HttpRequest, session: Session) -> HttpResponse:
        return JsonResponse(payload(session, view="class"))


def maybe(request: HttpRequest) -> HttpResponse:
    session = get_session(request)
    error = request.crossmint_error  # type: ignore[attr-defined]
    return JsonResponse(
        {"user_id": session.user_id if session else None, "error": error.code if error else None}
    )


def guarded(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"reached": True})


def with_own_cookie(request: HttpRequest) -> HttpResponse:
    response = JsonResponse({"user_id": get_session(request).user_id})  # type: ignore[union-attr]
    response.set_cookie("app-cookie", "kept")
    return response


def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body)


urlpatterns = [
    path("me/sync", me_sync),
    path("me/async", me_async),
    path("me/plain/<str:name>", me_plain),
    path("me/class", MeView.as_view()),
    path("maybe", maybe),
    path("guarded", guarded),
    path("own-cookie", with_own_cookie),
    path("echo", echo),
]
ME_VIEWS = ["/me/sync", "/me/async", "/me/class"]

# -- settings and helpers -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def django_settings() -> Iterator[None]:
    with override_settings(**DJANGO_SETTINGS):
        yield


@pytest.fixture
def crossmint_settings(auth: CrossmintAuth) -> Iterator[None]:
    with override_settings(CROSSMINT_AUTH=auth, CROSSMINT_PROTECT=["/guarded"]):
        yield


@pytest.fixture
def async_settings(async_auth: AsyncCrossmintAuth) -> Iterator[None]:
    with override_settings(CROSSMINT_ASYNC_AUTH=async_auth, CROSSMINT_PROTECT=["/guarded"]):
        yield


def cookie(cookies: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}


def auth_cookies_set(response: HttpResponse) -> str:
    """What the answer did to the auth cookies: "none", "session" or "cleared"."""
    sent = {
        name: morsel for name, morsel in response.cookies.items() if name.startswith("crossmint-")
    }
    if not sent:
        return "none"
    assert set(sent) == {JWT, REFRESH}, sent
    if all(morsel.value == "" for morsel in sent.values()):
        assert all("1970" in morsel.OutputString() for morsel in sent.values())
        return "cleared"
    assert all(morsel.value for morsel in sent.values())
    return "session"


def raw_set_cookies(response: HttpResponse) -> list[str]:
    """The Set-Cookie values as Django's handlers send them."""
    return [morsel.output(header="").strip() for morsel in response.cookies.values()]


# -- sessions in views ----------------------------------------------------------------------------

# kind of visitor, user id seen, refreshed, what happens to the cookies
SESSIONS = [
    pytest.param("valid", USER, False, "none", id="valid"),
    pytest.param("expired+good-refresh", USER, True, "session", id="refreshed"),
]


@pytest.mark.usefixtures("crossmint_settings")
@pytest.mark.parametrize("view", ME_VIEWS)
@pytest.mark.parametrize(("kind", "user_id", "refreshed", "cookies"), SESSIONS)
def test_sync_client_views_get_the_session(
    crossmint_emulator: CrossmintEmulator,
    view: str,
    kind: str,
    user_id: str,
    refreshed: bool,
    cookies: str,
) -> None:
    response = Client().get(view, headers=cookie(cookies_for(kind, crossmint_emulator)))
    assert response.status_code == 200
    assert response.json() == {"user_id": user_id, "refreshed": refreshed, "view": view[4:]}
    assert auth_cookies_set(response) == cookies


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.usefixtures("async_settings")
@pytest.mark.parametrize("view", ME_VIEWS)
@pytest.mark.parametrize(("kind", "user_id", "refreshed", "cookies"), SESSIONS)
async def test_async_client_views_get_the_session(
    crossmint_emulator: CrossmintEmulator,
    view: str,
    kind: str,
    user_id: str,
    refreshed: bool,
    cookies: str,
) -> None:
    response = await AsyncClient().get(view, headers=cookie(cookies_for(kind, crossmint_emulator)))
    assert response.status_code == 200
    assert response.json() == {"user_id": user_id, "refreshed": refreshed, "view": view[4:]}
    assert auth_cookies_set(response) == cookies


@pytest.mark.usefixtures("crossmint_settings")
def test_url_arguments_pass_through_the_decorator(crossmint_emulator: CrossmintEmulator) -> None:
    response = Client().get(
        "/me/plain/ada", headers=cookie(cookies_for("valid", crossmint_emulator))
    )
    assert response.json() == {"name": "ada", "user_id": USER}


# kind of visitor, taken down first, status, error, what happens to the cookies
REFUSALS = [
    pytest.param("none", False, 401, "MISSING_SESSION", "none", id="anonymous"),
    pytest.param(
        "expired+rejected-refresh", False, 401, "SESSION_EXPIRED", "cleared", id="expired"
    ),
    pytest.param("bad-signature", False, 401, "INVALID_TOKEN", "cleared", id="invalid"),
    pytest.param("expired+good-refresh", True, 503, "UPSTREAM_UNAVAILABLE", "none", id="down"),
]


def assert_same_refusal(
    ours: HttpResponse, reference: HttpResponse, status: int, error: str, cookies: str
) -> None:
    assert ours.status_code == reference.status_code == status
    assert json.loads(ours.content) == json.loads(reference.content)
    assert json.loads(ours.content)["error"] == error
    for name in ("Content-Type", "Cache-Control", "Retry-After"):
        assert ours.get(name) == reference.get(name), name
    assert ours.has_header("Retry-After") is (status == 503)
    assert auth_cookies_set(ours) == auth_cookies_set(reference) == cookies


@pytest.mark.usefixtures("crossmint_settings")
@pytest.mark.parametrize("view", [*ME_VIEWS, "/me/plain/ada"])
@pytest.mark.parametrize(("kind", "down", "status", "error", "cookies"), REFUSALS)
def test_sync_decorator_refuses_as_the_middleware_does(
    crossmint_emulator: CrossmintEmulator,
    view: str,
    kind: str,
    down: bool,
    status: int,
    error: str,
    cookies: str,
) -> None:
    headers = cookie(cookies_for(kind, crossmint_emulator))
    crossmint_emulator.set_down(down)
    client = Client()
    assert_same_refusal(
        client.get(view, headers=headers),
        client.get("/guarded", headers=headers),
        status,
        error,
        cookies,
    )


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.usefixtures("async_settings")
@pytest.mark.parametrize("view", ME_VIEWS)
@pytest.mark.parametrize(("kind", "down", "status", "error", "cookies"), REFUSALS)
async def test_async_decorator_refuses_as_the_middleware_does(
    crossmint_emulator: CrossmintEmulator,
    view: str,
    kind: str,
    down: bool,
    status: int,
    error: str,
    cookies: str,
) -> None:
    headers = cookie(cookies_for(kind, crossmint_emulator))
    crossmint_emulator.set_down(down)
    client = AsyncClient()
    ours = await client.get(view, headers=headers)
    reference = await client.get("/guarded", headers=headers)
    assert_same_refusal(ours, reference, status, error, cookies)


@pytest.mark.usefixtures("crossmint_settings")
@pytest.mark.parametrize(
    ("kind", "user_id", "error"),
    [
        pytest.param("none", None, None, id="anonymous"),
        pytest.param("valid", USER, None, id="valid"),
        pytest.param("expired+rejected-refresh", None, "SESSION_EXPIRED", id="expired"),
    ],
)
def test_request_carries_the_session_and_the_error(
    crossmint_emulator: CrossmintEmulator, kind: str, user_id: str | None, error: str | None
) -> None:
    response = Client().get("/maybe", headers=cookie(cookies_for(kind, crossmint_emulator)))
    assert response.json() == {"user_id": user_id, "error": error}


@pytest.mark.usefixtures("crossmint_settings")
def test_refreshed_cookies_join_the_views_own(crossmint_emulator: CrossmintEmulator) -> None:
    headers = cookie(cookies_for("expired+good-refresh", crossmint_emulator))
    response = Client().get("/own-cookie", headers=headers)
    assert response.json() == {"user_id": USER}
    assert response.cookies["app-cookie"].value == "kept"
    assert auth_cookies_set(response) == "session"
    # Sent exactly as the library wrote them, attributes included.
    jwt_header = next(c for c in raw_set_cookies(response) if c.startswith(f"{JWT}="))
    assert jwt_header.startswith(f"{JWT}={response.cookies[JWT].value}; Expires=")
    assert jwt_header.endswith("; Path=/; SameSite=Lax")


@pytest.mark.usefixtures("crossmint_settings")
def test_bodies_of_other_posts_reach_the_view() -> None:
    response = Client().post("/echo", data=b'{"a": 1}', content_type="application/json")
    assert response.content == b'{"a": 1}'


# -- protection, the login redirect, a mount ------------------------------------------------------


@pytest.mark.parametrize(
    ("script_name", "accept", "status", "location"),
    [
        pytest.param("", "text/html", 302, "/login?next=/guarded", id="browser"),
        pytest.param("/app", "text/html", 302, "/login?next=/app/guarded", id="browser-mounted"),
        pytest.param("/app", "application/json", 401, None, id="api-mounted"),
    ],
)
def test_protected_path_without_session(
    auth: CrossmintAuth, script_name: str, accept: str, status: int, location: str | None
) -> None:
    with override_settings(
        CROSSMINT_AUTH=auth, CROSSMINT_PROTECT=["/guarded"], CROSSMINT_LOGIN_URL="/login"
    ):
        response = Client().get("/guarded", headers={"Accept": accept}, SCRIPT_NAME=script_name)
    assert response.status_code == status
    assert response.get("Location") == location


# -- the two routes -------------------------------------------------------------------------------


@pytest.mark.usefixtures("crossmint_settings")
def test_sign_in_refresh_and_logout_with_the_test_clients_cookie_jar(
    crossmint_emulator: CrossmintEmulator,
) -> None:
    client = Client()
    secret = crossmint_emulator.one_time_secret(USER, email=EMAIL)
    signed_in = client.post("/refresh", {"refresh": secret}, content_type="application/json")
    assert signed_in.status_code == 200
    assert signed_in.json()["user"]["id"] == USER
    assert client.cookies[JWT].value == signed_in.json()["jwt"]
    # The jar now holds the session: the next requests are signed in.
    assert client.get("/me/sync").json()["user_id"] == USER
    logged_out = client.post("/logout")
    assert logged_out.status_code == 200
    assert logged_out.json() == {"ok": True}
    assert auth_cookies_set(logged_out) == "cleared"
    assert crossmint_emulator.requests["logout"] == 1
    assert client.get("/me/sync").status_code == 401


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.usefixtures("async_settings")
async def test_routes_under_the_async_client(crossmint_emulator: CrossmintEmulator) -> None:
    client = AsyncClient()
    secret = crossmint_emulator.one_time_secret(USER, email=EMAIL)
    signed_in = await client.post("/refresh", {"refresh": secret}, content_type="application/json")
    assert signed_in.status_code == 200
    assert auth_cookies_set(signed_in) == "session"
    assert (await client.get("/me/async")).json()["user_id"] == USER
    assert (await client.post("/logout")).json() == {"ok": True}
    assert crossmint_emulator.requests["logout"] == 1


# body, headers, status, error
ROUTE_CASES = [
    pytest.param(b"{oops", {}, 400, "INVALID_REQUEST", id="bad-json"),
    pytest.param(b"x" * (64 * 1024 + 1), {}, 400, "INVALID_REQUEST", id="too-large"),
    pytest.param(b'{"refresh": "nope"}', {}, 401, "SESSION_EXPIRED", id="rejected"),
    pytest.param(b"{}", {}, 401, "MISSING_SESSION", id="nothing-to-refresh"),
    pytest.param(
        b"{}", {"Origin": "https://evil.example"}, 403, "FORBIDDEN_ORIGIN", id="cross-site"
    ),
]


@pytest.mark.usefixtures("crossmint_settings")
@pytest.mark.parametrize(("body", "headers", "status", "error"), ROUTE_CASES)
def test_refresh_route_refusals(
    body: bytes, headers: dict[str, str], status: int, error: str
) -> None:
    response = Client().post("/refresh", body, content_type="application/json", headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == error


@pytest.mark.usefixtures("crossmint_settings")
def test_cross_site_logout_is_refused(crossmint_emulator: CrossmintEmulator) -> None:
    headers = {**cookie(cookies_for("valid", crossmint_emulator)), "Sec-Fetch-Site": "cross-site"}
    response = Client().post("/logout", headers=headers)
    assert response.status_code == 403
    assert auth_cookies_set(response) == "none"
    assert crossmint_emulator.requests["logout"] == 0


def test_routes_follow_the_settings(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    with override_settings(CROSSMINT_AUTH=auth, CROSSMINT_REFRESH_PATH="/auth/refresh"):
        client = Client()
        secret = crossmint_emulator.one_time_secret(USER)
        moved = client.post("/auth/refresh", {"refresh": secret}, content_type="application/json")
        old = client.post("/refresh", {}, content_type="application/json")
    assert moved.status_code == 200
    # No route there any more: Django's own 404.
    assert old.status_code == 404


# -- configuration --------------------------------------------------------------------------------

#: Named by dotted path in a test below.
dotted_auth: CrossmintAuth | None = None


def test_auth_by_dotted_path(auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator) -> None:
    global dotted_auth
    dotted_auth = auth
    try:
        with override_settings(CROSSMINT_AUTH=f"{__name__}.dotted_auth"):
            response = Client().get(
                "/me/sync", headers=cookie(cookies_for("valid", crossmint_emulator))
            )
    finally:
        dotted_auth = None
    assert response.json()["user_id"] == USER


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_async_mode_drives_a_blocking_auth_in_a_thread(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    headers = cookie(cookies_for("expired+good-refresh", crossmint_emulator))
    with override_settings(CROSSMINT_AUTH=auth):
        response = await AsyncClient().get("/me/async", headers=headers)
    assert response.json() == {"user_id": USER, "refreshed": True, "view": "async"}
    assert auth_cookies_set(response) == "session"


# settings ("async-auth": an AsyncCrossmintAuth), what the error says
SETTING_ERRORS = [
    pytest.param({}, "needs CROSSMINT_API_KEY, or CROSSMINT_AUTH", id="nothing"),
    pytest.param(
        {"CROSSMINT_AUTH": "async-auth"}, "goes in CROSSMINT_ASYNC_AUTH", id="async-auth-for-sync"
    ),
    pytest.param({"CROSSMINT_ASYNC_AUTH": "async-auth"}, "synchronously", id="async-auth-only"),
    pytest.param(
        {"CROSSMINT_AUTH": 42},
        "must be a CrossmintAuth (or its dotted path), not int",
        id="not-auth",
    ),
    pytest.param({"CROSSMINT_AUTH": "nowhere.auth"}, "CROSSMINT_AUTH: No module", id="bad-path"),
    pytest.param(
        {"CROSSMINT_API_KEY": BAD_KEY}, "CROSSMINT_API_KEY: ", id="bad-key-named-not-shown"
    ),
]


@pytest.mark.parametrize(("overrides", "message"), SETTING_ERRORS)
def test_missing_and_wrong_settings_are_named(
    crossmint_emulator: CrossmintEmulator, overrides: dict[str, Any], message: str
) -> None:
    # It opens no connection (no request reaches it), so it needs no closing.
    async_auth = AsyncCrossmintAuth(crossmint_emulator.crossmint())
    overrides = {k: async_auth if v == "async-auth" else v for k, v in overrides.items()}
    with override_settings(**overrides), pytest.raises(ImproperlyConfigured) as refused:
        Client().get("/maybe")
    assert message in str(refused.value)
    assert BAD_KEY not in str(refused.value)


def test_a_wrong_auth_option_is_named(
    crossmint_emulator: CrossmintEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "crossmint_wsgi.contrib.django_conf.create_crossmint",
        lambda *_, **__: crossmint_emulator.crossmint(),
    )
    options = {"CROSSMINT_API_KEY": "a key", "CROSSMINT_AUTH_OPTIONS": {"leway": 5}}
    with override_settings(**options), pytest.raises(ImproperlyConfigured) as refused:
        Client().get("/maybe")
    assert str(refused.value).startswith("CROSSMINT_AUTH_OPTIONS: ")
    assert "leway" in str(refused.value)


def test_decorator_without_the_middleware_says_so() -> None:
    with override_settings(MIDDLEWARE=[]), pytest.raises(RuntimeError, match="CrossmintMiddleware"):
        Client().get("/me/sync")


# -- the README's snippets ------------------------------------------------------------------------


def test_readme_snippets(
    crossmint_emulator: CrossmintEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settings (with an API key) and the async view, as written, under the test Client."""
    built: list[CrossmintAuth] = []

    class RecordedAuth(CrossmintAuth):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    # The emulator stands in for Crossmint: its key is not one create_crossmint accepts.
    monkeypatch.setenv("SERVER_CROSSMINT_API_KEY", crossmint_emulator.api_key)
    monkeypatch.setattr(
        "crossmint_wsgi.contrib.django_conf.create_crossmint",
        lambda *_, **__: crossmint_emulator.crossmint(),
    )
    monkeypatch.setattr("crossmint_wsgi.contrib.django_conf.CrossmintAuth", RecordedAuth)
    settings_code = {"__name__": "readme_settings"}
    exec(compile(snippet("# settings.py"), "README.md", "exec"), settings_code)
    views = {"__name__": "readme_views"}
    exec(compile(snippet("contrib.django import require_session"), "README.md", "exec"), views)
    urls = ModuleType("readme_urls")
    urls.urlpatterns = [path("api/me", views["me"]), path("account", guarded)]  # type: ignore[attr-defined]
    overrides = {k: v for k, v in settings_code.items() if k.isupper()}
    jwt = crossmint_emulator.create_session(USER).jwt
    try:
        with override_settings(ROOT_URLCONF=urls, **overrides):
            client = Client()
            anonymous = client.get("/api/me")
            signed_in = client.get("/api/me", headers=cookie({JWT: jwt}))
            account = client.get("/account")
    finally:
        for auth in built:
            auth.close()
    assert anonymous.status_code == 401
    assert signed_in.json() == {"user_id": USER}
    assert account.status_code == 401
    assert len(built) == 1
