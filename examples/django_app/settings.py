"""Django settings: only what the example needs, and the Crossmint settings."""

from __future__ import annotations

import os
import secrets

# Nothing is signed with it here (no sessions, no messages); set your own in a real project.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(40)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = []
USE_TZ = True
TIME_ZONE = "UTC"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before CSRF: it answers POST /refresh and /logout itself, checking their origin.
    "crossmint_wsgi.contrib.django.CrossmintMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "django_app.urls"
WSGI_APPLICATION = "django_app.wsgi.application"

# On the real Crossmint this one line would do: CROSSMINT_API_KEY = os.environ[...]
CROSSMINT_AUTH = "django_app.crossmint.auth"
CROSSMINT_ASYNC_AUTH = "django_app.crossmint.async_auth"
CROSSMINT_PROTECT = ["/protected/:path*"]
CROSSMINT_LOGIN_URL = "/login"
