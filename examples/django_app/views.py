"""Sync and async views reading ``request.crossmint_session``."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from crossmint_wsgi import Session
from crossmint_wsgi.contrib.django import get_session, require_session
from crossmint_wsgi.testing.demo import home_page, login_page, me_payload, protected_page

from .crossmint import auth, demo, emails


def home(request: HttpRequest) -> HttpResponse:
    session = get_session(request)  # or request.crossmint_session
    return HttpResponse(home_page("Django", session.user_id if session else None))


@require_session
def protected(request: HttpRequest, session: Session) -> HttpResponse:
    # The middleware already protects this path; the decorator states it here too.
    return HttpResponse(protected_page(session.user_id, emails.of(session, auth)))


def login(request: HttpRequest) -> HttpResponse:
    return HttpResponse(login_page(request.GET.get("next", "/")))


@csrf_exempt  # the demo sign-in page posts here without a CSRF token
@require_POST
def one_time_secret(request: HttpRequest) -> HttpResponse:
    try:
        secret = demo.one_time_secret()
    except RuntimeError as problem:
        return JsonResponse({"error": "NOT_FOUND", "message": str(problem)}, status=404)
    return JsonResponse({"secret": secret})


@require_session
async def me(request: HttpRequest, session: Session) -> HttpResponse:
    # An async view. Under WSGI Django gives each async view an event loop of
    # its own, so the user lookup uses the blocking client, in a thread.
    email = await sync_to_async(emails.of, thread_sensitive=False)(session, auth)
    return JsonResponse(me_payload(session.user_id, email))
