"""A local Crossmint: a real HTTP server speaking Crossmint's auth API, for tests and demos.

The public face, :class:`CrossmintEmulator`, puts together what the emulator
knows (``_state``), its routes (``_app``), the thread that serves them
(``_server``) and its keys (``_keys``); :func:`connect_emulator` (``_connect``)
reaches one in another process.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from ..config import Crossmint, build_crossmint
from ..models import AuthMaterial, RefreshToken, User, parse_timestamp
from ._app import EmulatorApp, make_handler
from ._connect import EmulatorConfig, connect_emulator
from ._keys import KeyRing, mint_api_key, parse_unverified
from ._server import EmulatorServer
from ._state import EmulatorState, Profile, Settings

__all__ = ["CrossmintEmulator", "EmulatorConfig", "connect_emulator"]


def _material(answer: Mapping[str, Any]) -> AuthMaterial:
    refresh = answer["refresh"]
    return AuthMaterial(
        jwt=answer["jwt"],
        refresh_token=RefreshToken(refresh["secret"], parse_timestamp(refresh["expiresAt"])),
        user=User.from_json(answer["user"]),
    )


class CrossmintEmulator:
    """A Crossmint auth API on a loopback port, in a background thread.

    It serves Crossmint's refresh, logout, get-user and JWK Set endpoints
    with the same paths and JSON, signs JWTs with its own keys, and can be
    told to fail, slow down or drop connections. Control it from Python
    with its methods, or from other processes with the HTTP routes under
    ``/_emulator/``.

    .. code-block:: python

        with CrossmintEmulator() as emulator:
            crossmint = emulator.crossmint()
            session = emulator.create_session("user-1", email="a@example.com")

    It is a test tool: it keeps everything in memory, and its control routes
    (which hand out the API key and mint sessions) have no authentication.

    :param api_key: the API key to accept in ``x-api-key``. Any well-formed
        key works, real ones included; its signature is not checked, and its
        project id becomes the JWT audience. Without one, the emulator mints
        its own development key, signed by an Ed25519 key it generates (see
        :attr:`signing_key`).
    :param project_id: the project id of the minted key; a random UUID when
        not given. Not allowed together with ``api_key``.
    :param jwt_ttl: seconds a new JWT is valid.
    :param refresh_ttl: seconds a new refresh token (or one-time secret) is valid.
    :param reuse_window: seconds a refresh token keeps working after its
        first use; ``0`` makes refresh tokens single use.
    :param algorithm: ``"RS256"`` (RSA 2048) or ``"ES256"`` (P-256).
    :param port: the port to listen on; ``0`` picks a free one.
    :param host: the address to listen on.
    :raises ValueError: an unknown algorithm, a bad project id, negative lifetimes.
    :raises CrossmintConfigError: ``api_key`` is malformed.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        project_id: str | None = None,
        jwt_ttl: int = 900,
        refresh_ttl: float = 7 * 24 * 3600,
        reuse_window: float = 0,
        algorithm: str = "RS256",
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        if api_key is not None and project_id is not None:
            raise ValueError("give api_key or project_id, not both: the key names its project")
        self._key = mint_api_key(project_id) if api_key is None else parse_unverified(api_key)
        self._server = EmulatorServer(host, port)
        self._state = EmulatorState(
            KeyRing(algorithm),
            self._key.project_id,
            Settings(jwt_ttl=int(jwt_ttl), refresh_ttl=refresh_ttl, reuse_window=reuse_window),
        )

    def __repr__(self) -> str:
        where = self._server.url or "not started"
        return f"<CrossmintEmulator {where} project_id={self.project_id!r}>"

    # -- lifecycle

    def start(self) -> CrossmintEmulator:
        """Listen and serve in a daemon thread. Does nothing when already started.

        :raises OSError: the address is unusable (for example the port is taken).
        """
        server = self._server
        app = EmulatorApp(self._state, self._key.api_key, self.config, server.stopping)
        server.start(app, make_handler(self._state))
        return self

    def stop(self) -> None:
        """Stop serving, join the thread and close the socket. Safe to call twice.

        The state (sessions, keys, settings) is kept; :meth:`start` serves it
        again, on a new port when ``port`` was ``0``.
        """
        self._server.stop()

    def __enter__(self) -> CrossmintEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- identity

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, without a trailing slash.

        :raises RuntimeError: the emulator was never started.
        """
        if self._server.url is None:
            raise RuntimeError("the emulator has no URL before start()")
        return self._server.url

    @property
    def api_key(self) -> str:
        """The API key the emulator accepts."""
        return self._key.api_key

    @property
    def project_id(self) -> str:
        """The project id, sent as the JWT's ``aud``."""
        return self._key.project_id

    @property
    def signing_key(self) -> str | None:
        """The base58 Ed25519 public key that signed :attr:`api_key`.

        ``None`` when the key was given, not minted: then only Crossmint's
        own key can vouch for it.
        """
        return self._key.signing_key

    @property
    def key_set(self) -> dict[str, Any]:
        """The public JWK Set served at ``/.well-known/jwks.json``."""
        return self._state.key_set()

    @property
    def kid(self) -> str:
        """The ``kid`` of the key that signs new JWTs."""
        return self._state.kid

    def config(self) -> EmulatorConfig:
        """What another process needs to talk to this emulator (see :func:`connect_emulator`)."""
        return {
            "url": self.url,
            "api_key": self.api_key,
            "project_id": self.project_id,
            "signing_key": self.signing_key,
        }

    def crossmint(self, *, app_id: str | None = None) -> Crossmint:
        """A :class:`~crossmint_wsgi.Crossmint` configuration pointing at this emulator.

        The key is validated as a real one is, against :attr:`signing_key`
        instead of Crossmint's key.

        :param app_id: sent as ``x-app-identifier``.
        :raises RuntimeError: the emulator was never started.
        """
        return build_crossmint(
            self.api_key, base_url=self.url, app_id=app_id, signing_key=self.signing_key
        )

    # -- settings

    def configure(
        self,
        *,
        jwt_ttl: int | None = None,
        refresh_ttl: float | None = None,
        reuse_window: float | None = None,
    ) -> dict[str, float]:
        """Change lifetimes for tokens issued (and refresh tokens used) from now on.

        Arguments left ``None`` keep their value. :meth:`reset` restores the
        constructor's values.

        :return: the settings now in force.
        :raises ValueError: a negative ``refresh_ttl`` or ``reuse_window``.
        """
        settings = self._state.configure(jwt_ttl, refresh_ttl, reuse_window)
        return settings.to_json()

    def reset(self) -> None:
        """Forget sessions, users, counters, faults, latency and downtime.

        Settings go back to the constructor's values; the server, its URL,
        the API key and the signing keys stay.
        """
        self._state.reset()

    # -- sessions and tokens

    def create_session(
        self,
        user_id: str,
        *,
        email: str | None = None,
        phone_number: str | None = None,
        user_fields: Mapping[str, Any] | None = None,
        jwt_ttl: int | None = None,
    ) -> AuthMaterial:
        """Log a user in: a JWT, a fresh refresh token and the user.

        The user is remembered (for the get-user endpoint and refresh answers);
        given fields update what was known.

        :param user_id: the JWT's ``sub``.
        :param email: the user's ``email``.
        :param phone_number: the user's ``phoneNumber``.
        :param user_fields: more user JSON fields, for example ``twitter``.
        :param jwt_ttl: this JWT's lifetime instead of the setting; negative
            values give an already expired JWT.
        """
        profile = Profile(email, phone_number, user_fields)
        return _material(self._state.create_session(user_id, profile, jwt_ttl))

    def one_time_secret(
        self,
        user_id: str,
        *,
        email: str | None = None,
        phone_number: str | None = None,
        user_fields: Mapping[str, Any] | None = None,
    ) -> str:
        """The secret the browser SDK holds right after a login.

        The refresh endpoint trades it, once, for a JWT and a refresh token;
        the reuse window never applies to it.
        """
        return self._state.one_time_secret(user_id, Profile(email, phone_number, user_fields))

    def issue_jwt(
        self,
        user_id: str,
        *,
        ttl: int | None = None,
        claims: Mapping[str, Any] | None = None,
        header: Mapping[str, Any] | None = None,
    ) -> str:
        """Sign a JWT with the current key, to craft tokens in tests.

        :param user_id: the ``sub`` claim.
        :param ttl: seconds until ``exp`` instead of the setting; negative
            values give an expired token.
        :param claims: claims to add or override (``aud``, ``iss``...); a
            ``None`` value removes the claim.
        :param header: header entries to add or override (``kid``, ``typ``...);
            a ``None`` value removes the entry. ``alg`` cannot change: the
            keys are bound to the emulator's algorithm.
        """
        return self._state.issue_jwt(user_id, ttl=ttl, claims=claims, header=header)

    def rotate_keys(self, *, keep_old: bool = True) -> str:
        """Sign from now on with a new key, and return its ``kid``.

        :param keep_old: keep the previous keys in the JWK Set, so tokens
            they signed still verify; ``False`` publishes only the new key.
        """
        return self._state.rotate_keys(keep_old=keep_old)

    # -- faults

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 503,
        body: object = None,
        endpoint: str | None = None,
    ) -> None:
        """Answer the next ``n`` API requests with ``status`` and ``body``.

        Faults queue up in the order they were added; each request uses the
        first one that matches it. Control routes are never affected.

        :param n: how many requests fail.
        :param status: the HTTP status, ``200`` included.
        :param body: ``bytes`` are sent as they are (truncated JSON, HTML...),
            ``None`` sends ``{"message": ...}``, anything else is sent as JSON.
            The content type is always ``application/json``.
        :param endpoint: only fail requests to this endpoint: ``"jwks"``,
            ``"refresh"``, ``"logout"`` or ``"user"``.
        :raises ValueError: an unknown endpoint, a status outside 100-599.
        """
        self._state.add_fault(n, status, body, endpoint)

    def set_latency(self, seconds: float) -> None:
        """Make every API answer (injected failures included) wait ``seconds`` first."""
        self._state.latency = seconds

    def set_down(self, down: bool = True) -> None:
        """Take Crossmint down, or bring it back.

        While down, every request whose path is not under ``/_emulator/`` is
        read (its body too, up to 64 KiB) and then answered with a TCP reset:
        the server closes the connection with ``SO_LINGER`` 0, without a byte
        of answer. Clients see a connection reset (``httpx.ReadError``) while
        reading the answer. The listening
        socket stays open and the control routes keep working. Requests to
        Crossmint endpoints are still counted in :attr:`requests`.
        """
        self._state.down = down

    @property
    def requests(self) -> dict[str, int]:
        """How many requests each endpoint received, failed and injected ones included.

        A snapshot: ``{"jwks": 0, "refresh": 0, "logout": 0, "user": 0}``.
        """
        return self._state.counters()
