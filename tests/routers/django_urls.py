"""The Django URLconf of the differential router test (``ROOT_URLCONF``)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from routers.apps import ran
from routers.cookie_apps import django_view


def _view(name: str) -> Any:
    def view(request: HttpRequest, **params: str) -> HttpResponse:
        return HttpResponse(ran(name), content_type="text/plain")

    return view


urlpatterns: list[URLPattern] = [
    path("", _view("home")),
    path("account", _view("account_root")),
    path("account/<path:p>", _view("account")),
    path("users/<str:name>", _view("users")),
    path("public/<path:p>", _view("public")),
    path("whoami", django_view),
]
