"""The example's pages: ``/`` public, ``/protected``, ``/login``, ``/api/me``."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.home),
    path("protected", views.protected),
    path("login", views.login),
    path("demo/one-time-secret", views.one_time_secret),
    path("api/me", views.me),
]
