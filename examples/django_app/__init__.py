"""A minimal Django project behind Crossmint: ``crossmint_wsgi.contrib.django``.

Serve it under WSGI or ASGI, from the ``examples`` directory::

    gunicorn --chdir examples django_app.wsgi
    uvicorn --app-dir examples django_app.asgi:application

on 127.0.0.1:8000 (``-b 127.0.0.1:$PORT`` / ``--port $PORT`` for another
port). Crossmint comes from :func:`crossmint_wsgi.testing.demo.demo_crossmint`
(see :mod:`django_app.crossmint`). Open ``/protected`` to sign in.
"""
